//! What the benchmark ran on, recorded with every result.

use serde::Serialize;
use std::process::Command;

/// The machine and software a result belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub tsc_hz: u64,
    pub dpdk_version: String,
    pub git_revision: String,
    pub date_utc: String,
}

impl Machine {
    /// Reads the machine's description. The TSC rate is measured against the wall clock.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            tsc_hz: measure_tsc_hz(),
            dpdk_version: sheetcake_dataplane::dpdk::DPDK_VERSION.to_owned(),
            git_revision: run("git", &["rev-parse", "--short", "HEAD"])
                .unwrap_or_else(|| "unknown".into()),
            date_utc: run("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]).unwrap_or_default(),
        }
    }
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn measure_tsc_hz() -> u64 {
    let t0 = std::time::Instant::now();
    let c0 = sheetcake_dataplane::dpdk::tsc();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let c1 = sheetcake_dataplane::dpdk::tsc();
    ((c1 - c0) as f64 / t0.elapsed().as_secs_f64()) as u64
}

/// `YYYYmmddTHHMMSSZ`, for dated result files.
pub fn utc_stamp() -> String {
    run("date", &["-u", "+%Y%m%dT%H%M%SZ"]).unwrap_or_else(|| "undated".into())
}
