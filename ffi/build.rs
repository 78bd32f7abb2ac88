//! Generates the DPDK bindings from the headers of the DPDK installed on this machine.
//!
//! DPDK's fast-path API (`rte_eth_rx_burst`, `rte_pktmbuf_alloc`, the ring functions, ...) is made
//! of `static inline` functions that have no symbol in the shared libraries. bindgen's
//! `wrap_static_fns` writes a C file with one exported wrapper per such function; we compile it
//! with the same flags DPDK's pkg-config file gives, and link it in.

use std::env;
use std::path::PathBuf;

const INSTALL_HINT: &str = "\
sheetcake needs the DPDK development files (22.11 or newer) and libclang to build.
On Debian or Ubuntu:  apt-get install libdpdk-dev clang libclang-dev pkg-config
(or run `make deps` from the repository root, which installs everything the build needs).";

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=helpers.c");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let dpdk = match pkg_config::Config::new()
        .atleast_version("22.11")
        .cargo_metadata(true)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(err) => {
            eprintln!("\nerror: DPDK was not found by pkg-config ({err}).\n\n{INSTALL_HINT}\n");
            std::process::exit(1);
        }
    };
    // The ring PMD's constructor (`rte_eth_from_rings`, for ports whose other ends the tests and
    // the benchmark's generator hold) is a driver API: pkg-config lists only the libraries.
    println!("cargo:rustc-link-lib=rte_net_ring");
    let version = dpdk.version.clone();
    println!("cargo:rustc-env=DPDK_VERSION={version}");

    // DPDK's pkg-config cflags carry `-include rte_config.h` and `-march=...`: both are needed
    // for the headers to parse the way the libraries were built.
    let cflags_out = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("pkg-config ran a moment ago");
    let cflags: Vec<String> = String::from_utf8_lossy(&cflags_out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let wrappers = out.join("static_fns");

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&cflags)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("rte_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("RING_F_.*")
        // These structs are declared both packed and aligned, which Rust cannot express; nothing
        // here reads them, so they stay opaque blobs of the right size.
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .generate_comments(false)
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrappers)
        .generate()
        .unwrap_or_else(|err| {
            eprintln!(
                "\nerror: bindgen could not parse the DPDK headers: {err}\n\n{INSTALL_HINT}\n"
            );
            std::process::exit(1);
        });
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("OUT_DIR is writable");

    let mut build = cc::Build::new();
    build
        .file(wrappers.with_extension("c"))
        .file("helpers.c")
        .include(env::current_dir().expect("build scripts run in the crate directory"))
        .opt_level(3)
        .warnings(false);
    for flag in &cflags {
        build.flag(flag);
    }
    build.compile("dpdk_static_fns");
}
