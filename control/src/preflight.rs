//! Checks of the machine before the EAL starts: the two things a new box usually lacks, in
//! words an operator can act on. DPDK's own failure for either is a page of EAL lines that
//! ends in "Cannot init memory" or a port that is simply not there.
//!
//! - Hugepages (unless `[eal] args` has `--no-huge`): some free 2 MiB or 1 GiB pages, and a
//!   hugetlbfs mount to map them from (not needed with `--in-memory`, which maps them without
//!   one).
//! - Every PCI port bound to a driver DPDK can drive from user space.
//!
//! Everything is read below a root directory (`/` on a real box, a fake tree in the tests), so
//! no test needs hugepages or a NIC. Reads only; changes nothing on the machine.

use crate::config::{Device, Settings};
use std::fmt;
use std::path::{Path, PathBuf};

/// Kernel drivers that hand a NIC to a user-space driver, DPDK's for it.
const USER_SPACE_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];

/// Kernel drivers DPDK works alongside: NVIDIA/Mellanox NICs stay bound to their kernel
/// driver, and DPDK's mlx4/mlx5 drivers share the device with it ("bifurcated").
const BIFURCATED_DRIVERS: [&str; 2] = ["mlx4_core", "mlx5_core"];

/// One size of hugepage as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugepagePool {
    /// Page size, KiB (2048, 1048576).
    pub size_kib: u64,
    /// Pages reserved (`nr_hugepages`) and of them free (`free_hugepages`).
    pub total: u64,
    pub free: u64,
}

/// Something about the machine that stops sheetcake from starting, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineProblem {
    /// No hugepage is free (the pools the kernel has, possibly none).
    NoFreeHugepages { pools: Vec<HugepagePool> },
    /// Hugepages exist but no hugetlbfs is mounted to map them.
    NoHugetlbfs,
    /// No PCI device has this address.
    PortMissing { address: String },
    /// The device is bound to a driver DPDK cannot use (`None`: to no driver).
    PortNotBound {
        address: String,
        driver: Option<String>,
    },
}

impl fmt::Display for MachineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MachineProblem::NoFreeHugepages { pools } => {
                let found = if pools.is_empty() {
                    "the kernel offers none".to_owned()
                } else {
                    pools
                        .iter()
                        .map(|p| format!("{} of {} {} pages free", p.free, p.total, size(p)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                write!(
                    f,
                    "no free hugepages ({found}); reserve some with `echo 1024 > \
                     /proc/sys/vm/nr_hugepages` (2 MiB pages, 2 GiB) or, better, 1 GiB pages on \
                     the kernel command line (default_hugepagesz=1G hugepagesz=1G hugepages=4); \
                     a test box can add \"--no-huge\" to [eal] args instead"
                )
            }
            MachineProblem::NoHugetlbfs => write!(
                f,
                "no hugetlbfs is mounted to map the hugepages from; run `mkdir -p /dev/hugepages \
                 && mount -t hugetlbfs nodev /dev/hugepages` (systemd's dev-hugepages.mount does \
                 this at boot), or add \"--in-memory\" to [eal] args"
            ),
            MachineProblem::PortMissing { address } => write!(
                f,
                "port {address}: this machine has no PCI device at that address; \
                 `dpdk-devbind.py --status` lists the network devices and their addresses"
            ),
            MachineProblem::PortNotBound { address, driver } => {
                match driver {
                    Some(d) => write!(f, "port {address} is bound to {d}, not to a DPDK driver")?,
                    None => write!(f, "port {address} is bound to no driver")?,
                }
                write!(
                    f,
                    "; run `modprobe vfio-pci && dpdk-devbind.py --bind=vfio-pci {address}` (the \
                     port leaves the kernel: manage the box through another interface)"
                )
            }
        }
    }
}

impl std::error::Error for MachineProblem {}

fn size(p: &HugepagePool) -> String {
    if p.size_kib >= 1 << 20 {
        format!("{} GiB", p.size_kib >> 20)
    } else {
        format!("{} MiB", p.size_kib >> 10)
    }
}

/// Every problem the machine under `root` has for `settings`; none means DPDK can start.
pub fn check(settings: &Settings, root: &Path) -> Vec<MachineProblem> {
    let has = |arg: &str| settings.eal_extra_args.iter().any(|a| a == arg);
    let mut problems = Vec::new();
    if !has("--no-huge") {
        problems.extend(hugepages(root, !has("--in-memory")));
    }
    for device in settings.pairs.iter().flat_map(|p| &p.ports) {
        if let Device::Pci { address } = device {
            problems.extend(pci_port(root, address).err());
        }
    }
    problems
}

/// The hugepage pools under `root/sys/kernel/mm/hugepages`, smallest pages first.
pub fn hugepage_pools(root: &Path) -> Vec<HugepagePool> {
    let dir = root.join("sys/kernel/mm/hugepages");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let number = |path: PathBuf| -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut pools: Vec<HugepagePool> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            // hugepages-2048kB, hugepages-1048576kB
            let name = e.file_name().into_string().ok()?;
            let size_kib = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(HugepagePool {
                size_kib,
                total: number(e.path().join("nr_hugepages")),
                free: number(e.path().join("free_hugepages")),
            })
        })
        .collect();
    pools.sort_by_key(|p| p.size_kib);
    pools
}

/// Whether `root/proc/mounts` lists a hugetlbfs.
fn hugetlbfs_mounted(root: &Path) -> bool {
    std::fs::read_to_string(root.join("proc/mounts")).is_ok_and(|mounts| {
        mounts
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
    })
}

/// The hugepage problems under `root`: no free page, or (when `need_mount`) no hugetlbfs.
fn hugepages(root: &Path, need_mount: bool) -> Vec<MachineProblem> {
    let pools = hugepage_pools(root);
    let mut problems = Vec::new();
    if pools.iter().all(|p| p.free == 0) {
        problems.push(MachineProblem::NoFreeHugepages { pools });
    }
    if need_mount && !hugetlbfs_mounted(root) {
        problems.push(MachineProblem::NoHugetlbfs);
    }
    problems
}

/// Checks that the PCI device at `address` (normalised, `0000:03:00.0`) exists under `root`
/// and is bound to a driver DPDK can use; returns that driver.
pub fn pci_port(root: &Path, address: &str) -> Result<String, MachineProblem> {
    let device = root.join("sys/bus/pci/devices").join(address);
    if !device.exists() {
        return Err(MachineProblem::PortMissing {
            address: address.to_owned(),
        });
    }
    // `driver` is a symbolic link to /sys/bus/pci/drivers/<name>; absent when unbound.
    let driver = std::fs::read_link(device.join("driver"))
        .ok()
        .and_then(|target| Some(target.file_name()?.to_string_lossy().into_owned()));
    match driver {
        Some(d) if USER_SPACE_DRIVERS.contains(&d.as_str()) => Ok(d),
        Some(d) if BIFURCATED_DRIVERS.contains(&d.as_str()) => Ok(d),
        driver => Err(MachineProblem::PortNotBound {
            address: address.to_owned(),
            driver,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake root: an empty directory of its own under the system's temporary directory.
    fn fake_root(name: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("sheetcake-preflight-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("temp dir is writable");
        root
    }

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn pool(root: &Path, size_kib: u64, total: u64, free: u64) {
        let dir = format!("sys/kernel/mm/hugepages/hugepages-{size_kib}kB");
        write(root, &format!("{dir}/nr_hugepages"), &format!("{total}\n"));
        write(root, &format!("{dir}/free_hugepages"), &format!("{free}\n"));
    }

    /// A PCI device at `address`, bound to `driver` (or to none).
    fn device(root: &Path, address: &str, driver: Option<&str>) {
        let dir = root.join("sys/bus/pci/devices").join(address);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(d) = driver {
            let target = root.join("sys/bus/pci/drivers").join(d);
            std::fs::create_dir_all(&target).unwrap();
            std::os::unix::fs::symlink(&target, dir.join("driver")).unwrap();
        }
    }

    const MOUNTS: &str =
        "sysfs /sys sysfs rw 0 0\nhugetlbfs /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n";

    /// A configuration with one PCI pair, and `args` as `[eal] args`.
    fn settings(args: &str) -> Settings {
        let text = format!(
            "[eal]\nargs = {args}\n[workers]\ncores = [1]\n[[pairs]]\nname = \"p\"\n\
             core = \"03:00.0\"\naccess = \"0000:03:00.1\"\n"
        );
        Settings::parse(&text, "pci.toml").expect("valid")
    }

    #[test]
    fn free_hugepages_and_a_mount_pass() {
        let root = fake_root("ok");
        pool(&root, 2048, 1024, 1000);
        pool(&root, 1_048_576, 0, 0);
        write(&root, "proc/mounts", MOUNTS);
        assert_eq!(hugepages(&root, true), []);
        let pools = hugepage_pools(&root);
        assert_eq!(pools[0].size_kib, 2048, "smallest first");
        assert_eq!((pools[0].total, pools[0].free), (1024, 1000));
    }

    #[test]
    fn no_free_hugepage_says_how_to_reserve_some() {
        let root = fake_root("none-free");
        pool(&root, 2048, 16, 0);
        write(&root, "proc/mounts", MOUNTS);
        let problems = hugepages(&root, true);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let text = problems[0].to_string();
        assert!(text.contains("0 of 16 2 MiB pages free"), "{text}");
        assert!(
            text.contains("echo 1024 > /proc/sys/vm/nr_hugepages"),
            "{text}"
        );
        assert!(text.contains("--no-huge"), "{text}");
    }

    #[test]
    fn a_kernel_without_hugepages_and_no_mount_gets_both_problems() {
        let root = fake_root("bare");
        write(&root, "proc/mounts", "sysfs /sys sysfs rw 0 0\n");
        let problems = hugepages(&root, true);
        assert_eq!(
            problems,
            [
                MachineProblem::NoFreeHugepages { pools: vec![] },
                MachineProblem::NoHugetlbfs
            ]
        );
        assert!(problems[0].to_string().contains("the kernel offers none"));
        assert!(problems[1].to_string().contains("mount -t hugetlbfs"));
        // --in-memory maps hugepages without a mount.
        assert_eq!(hugepages(&root, false).len(), 1);
    }

    #[test]
    fn a_port_bound_to_vfio_or_uio_or_a_bifurcated_driver_passes() {
        let root = fake_root("bound");
        for (address, driver) in [
            ("0000:03:00.0", "vfio-pci"),
            ("0000:03:00.1", "uio_pci_generic"),
            ("0000:04:00.0", "igb_uio"),
            ("0000:05:00.0", "mlx5_core"),
        ] {
            device(&root, address, Some(driver));
            assert_eq!(pci_port(&root, address), Ok(driver.to_owned()));
        }
    }

    #[test]
    fn a_port_on_a_kernel_driver_or_none_says_the_devbind_command() {
        let root = fake_root("unbound");
        device(&root, "0000:03:00.0", Some("ixgbe"));
        device(&root, "0000:03:00.1", None);
        let kernel = pci_port(&root, "0000:03:00.0").unwrap_err().to_string();
        assert!(
            kernel.starts_with("port 0000:03:00.0 is bound to ixgbe, not to a DPDK driver"),
            "{kernel}"
        );
        assert!(
            kernel.contains("dpdk-devbind.py --bind=vfio-pci 0000:03:00.0"),
            "{kernel}"
        );
        let none = pci_port(&root, "0000:03:00.1").unwrap_err().to_string();
        assert!(
            none.starts_with("port 0000:03:00.1 is bound to no driver"),
            "{none}"
        );
        let missing = pci_port(&root, "0000:09:00.0").unwrap_err();
        assert_eq!(
            missing,
            MachineProblem::PortMissing {
                address: "0000:09:00.0".into()
            }
        );
    }

    #[test]
    fn the_checks_follow_the_configuration() {
        let root = fake_root("config");
        device(&root, "0000:03:00.0", Some("vfio-pci"));
        device(&root, "0000:03:00.1", Some("i40e"));
        // Hugepages are checked unless --no-huge; the ports always.
        let problems = check(&settings("[]"), &root);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(matches!(
            problems[0],
            MachineProblem::NoFreeHugepages { .. }
        ));
        assert_eq!(problems[1], MachineProblem::NoHugetlbfs);
        assert_eq!(
            problems[2],
            MachineProblem::PortNotBound {
                address: "0000:03:00.1".into(),
                driver: Some("i40e".into())
            }
        );
        let problems = check(&settings("[\"--no-huge\", \"-m\", \"1024\"]"), &root);
        assert_eq!(problems.len(), 1, "{problems:?}");
        // Virtual ports need neither.
        let demo = Settings::parse(crate::config::EMBEDDED_DEMO, "demo").unwrap();
        assert_eq!(check(&demo, &root), []);
    }
}
