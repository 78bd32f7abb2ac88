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
    /// The EAL's memory (mempools, rings) on hugepages (`--hugepages`), else on 4 KiB pages
    /// (`--no-huge`).
    pub hugepages: bool,
    /// What a cache miss costs here, measured on the first worker's core (see `latency.rs`).
    pub load_latency: Vec<crate::latency::LoadLatency>,
}

impl Machine {
    /// Reads the machine's description, the EAL on `hugepages` or not. The TSC rate is
    /// measured against the wall clock, the load latency on `core` (the first worker's; with
    /// `quick`, not at 2 GiB).
    pub fn detect(hugepages: bool, core: usize, quick: bool) -> Machine {
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
            hugepages,
            load_latency: std::thread::spawn(move || {
                core_affinity::set_for_current(core_affinity::CoreId { id: core });
                crate::latency::measure(quick)
            })
            .join()
            .unwrap_or_default(),
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

/// The hugepages the EAL can take, from `/proc/meminfo` and `/proc/mounts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hugepages {
    /// Free pages of the default size.
    pub free: u64,
    pub total: u64,
    pub page_kib: u64,
}

impl Hugepages {
    pub fn free_mib(&self) -> u64 {
        self.free * self.page_kib / 1024
    }
}

/// Why `--hugepages` cannot run here, with what to run instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HugepageError {
    /// No hugetlbfs in `/proc/mounts`: the EAL would find no place to map pages from.
    NotMounted,
    /// Fewer free pages than the run needs.
    TooFew { pages: Hugepages, needed_mib: u64 },
}

impl std::fmt::Display for HugepageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HugepageError::NotMounted => write!(
                f,
                "--hugepages: no hugetlbfs is mounted (none in /proc/mounts); as root run \
                 `mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages`, or leave \
                 out --hugepages"
            ),
            HugepageError::TooFew { pages, needed_mib } => {
                let missing_kib = (needed_mib * 1024).saturating_sub(pages.free * pages.page_kib);
                let total = pages.total + missing_kib.div_ceil(pages.page_kib.max(1));
                write!(
                    f,
                    "--hugepages: the run needs {needed_mib} MiB of hugepages, but {} of {} \
                     pages of {} KiB are free ({} MiB, /proc/meminfo); as root run \
                     `echo {total} > /proc/sys/vm/nr_hugepages`, or leave out --hugepages",
                    pages.free,
                    pages.total,
                    pages.page_kib,
                    pages.free_mib()
                )
            }
        }
    }
}

impl std::error::Error for HugepageError {}

/// The hugepages `meminfo` (the text of `/proc/meminfo`) reports, if it reports them.
pub fn hugepages_in(meminfo: &str) -> Option<Hugepages> {
    let field = |name: &str| -> Option<u64> {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Hugepages {
        free: field("HugePages_Free")?,
        total: field("HugePages_Total")?,
        page_kib: field("Hugepagesize")?,
    })
}

/// Whether `mounts` (the text of `/proc/mounts`) has a hugetlbfs.
pub fn hugetlbfs_in(mounts: &str) -> bool {
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
}

/// Checks that `needed_mib` of hugepages are free and mounted, and returns them.
pub fn check_hugepages(needed_mib: u64) -> Result<Hugepages, HugepageError> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if !hugetlbfs_in(&mounts) {
        return Err(HugepageError::NotMounted);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let pages = hugepages_in(&meminfo).unwrap_or(Hugepages {
        free: 0,
        total: 0,
        page_kib: 2048,
    });
    if pages.free_mib() < needed_mib {
        return Err(HugepageError::TooFew { pages, needed_mib });
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:        8000000 kB\nHugePages_Total:     600\n\
                           HugePages_Free:      500\nHugePages_Rsvd:        0\n\
                           Hugepagesize:       2048 kB\n";

    #[test]
    fn free_hugepages_are_read_from_meminfo() {
        let pages = hugepages_in(MEMINFO).unwrap();
        assert_eq!(
            pages,
            Hugepages {
                free: 500,
                total: 600,
                page_kib: 2048
            }
        );
        // 500 pages of 2 MiB.
        assert_eq!(pages.free_mib(), 1000);
    }

    #[test]
    fn hugetlbfs_is_found_by_its_type_not_its_path() {
        assert!(hugetlbfs_in(
            "proc /proc proc rw 0 0\nnodev /mnt/huge hugetlbfs rw,pagesize=2M 0 0\n"
        ));
        assert!(!hugetlbfs_in(
            "tmpfs /dev/hugepages tmpfs rw 0 0\nproc /proc proc rw 0 0\n"
        ));
    }

    #[test]
    fn too_few_pages_says_how_many_to_ask_for() {
        let e = HugepageError::TooFew {
            pages: hugepages_in(MEMINFO).unwrap(),
            needed_mib: 1200,
        };
        // 1,200 MiB needed, 1,000 free: 100 more pages of 2 MiB on top of the 600.
        assert!(
            e.to_string()
                .contains("echo 700 > /proc/sys/vm/nr_hugepages"),
            "{e}"
        );
    }
}
