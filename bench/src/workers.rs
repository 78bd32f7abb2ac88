//! How many sheetcake workers the shaping cases run, on which cores, which subscribers each
//! owns, and which worker's RX queue the generator puts a subscriber's frames on.
//!
//! The generator keeps core 0; worker `w` runs on `cores[w]`. Subscribers are sharded over
//! the workers by the appliance's own rule (`sheetcake_dataplane::shaping::owner_worker`), so
//! a case with N workers shapes the same subscribers with the same split the appliance would.
//! This module only checks and describes the plan: it never starts a thread or touches DPDK.

use std::fmt;

/// The core the benchmark's own thread (the generator, and the EAL's main lcore) runs on.
pub const GENERATOR_CORE: usize = 0;

/// Which worker's RX queue the generator puts a frame on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Steering {
    /// The queue of the worker that owns the frame's subscriber, as a NIC does whose flow
    /// steering is programmed with the owners: no frame is handed off.
    Owner,
    /// A queue picked from the subscriber's address alone (subscriber index modulo the
    /// workers), as plain RSS does: it agrees with the owner for one frame in N, the rest
    /// go through a handoff ring. What the appliance gets today, whose RSS hash knows
    /// nothing of owners.
    Address,
}

/// The workers of the shaping cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerPlan {
    /// `cores[w]` runs worker `w`.
    pub cores: Vec<usize>,
    /// Some worker shares its core with another worker or with the generator: the figures
    /// then measure the kernel's scheduler as much as the workers.
    pub shared_cores: bool,
    pub steering: Steering,
}

impl WorkerPlan {
    /// Checks `--workers`, `--worker-cores` (`listed`, `None` for the default 1..=N) against
    /// the cores this process may run on.
    pub fn new(
        workers: usize,
        listed: Option<&[usize]>,
        steering: Steering,
        available: &[usize],
    ) -> Result<WorkerPlan, PlanError> {
        if workers == 0 {
            return Err(PlanError::NoWorkers);
        }
        if !available.contains(&GENERATOR_CORE) {
            return Err(PlanError::GeneratorCoreUnavailable {
                available: available.to_vec(),
            });
        }
        let cores: Vec<usize> = match listed {
            Some(cores) if cores.len() != workers => {
                return Err(PlanError::CoresForWorkers {
                    listed: cores.to_vec(),
                    workers,
                })
            }
            Some(cores) => cores.to_vec(),
            None => {
                let cores: Vec<usize> = (1..=workers).collect();
                if cores.iter().any(|c| !available.contains(c)) {
                    return Err(PlanError::TooFewCores {
                        workers,
                        available: available.to_vec(),
                    });
                }
                cores
            }
        };
        if let Some(&core) = cores.iter().find(|c| !available.contains(c)) {
            return Err(PlanError::CoreUnavailable {
                core,
                available: available.to_vec(),
            });
        }
        let mut seen = cores.clone();
        seen.sort_unstable();
        seen.dedup();
        let shared_cores = seen.len() < cores.len() || seen.contains(&GENERATOR_CORE);
        Ok(WorkerPlan {
            cores,
            shared_cores,
            steering,
        })
    }

    pub fn workers(&self) -> usize {
        self.cores.len()
    }

    /// The single core of the cases that run one loop whatever `--workers` says (the
    /// references and the control plane): the first worker's.
    pub fn single_core(&self) -> usize {
        self.cores[0]
    }

    /// The RX queue (worker) the generator puts subscriber `s`'s frames on, `owner` being
    /// the worker that owns it.
    pub fn queue_of(&self, s: u32, owner: u16) -> u16 {
        match self.steering {
            Steering::Owner => owner,
            Steering::Address => (s as usize % self.workers()) as u16,
        }
    }
}

/// Why the asked workers cannot run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    NoWorkers,
    CoresForWorkers {
        listed: Vec<usize>,
        workers: usize,
    },
    TooFewCores {
        workers: usize,
        available: Vec<usize>,
    },
    CoreUnavailable {
        core: usize,
        available: Vec<usize>,
    },
    GeneratorCoreUnavailable {
        available: Vec<usize>,
    },
}

fn list(cores: &[usize]) -> String {
    cores
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NoWorkers => write!(f, "--workers 0: at least one worker is needed"),
            PlanError::CoresForWorkers { listed, workers } => write!(
                f,
                "--worker-cores {} lists {} core(s) for --workers {workers}: list one core per \
                 worker, for example --worker-cores {}",
                list(listed),
                listed.len(),
                list(&(1..=*workers).collect::<Vec<_>>())
            ),
            PlanError::TooFewCores { workers, available } => write!(
                f,
                "--workers {workers} needs {} cores (core {GENERATOR_CORE} for the generator, \
                 cores 1 to {workers} for the workers), but this machine lets the benchmark \
                 run on {} (cores {}): pass --workers {} at most, or name the cores with \
                 --worker-cores (for example --worker-cores {} runs every worker on core 1, a \
                 smoke test whose figures mean nothing)",
                workers + 1,
                available.len(),
                list(available),
                available.len().saturating_sub(1).max(1),
                list(&vec![1; *workers])
            ),
            PlanError::CoreUnavailable { core, available } => write!(
                f,
                "--worker-cores names core {core}, but this machine lets the benchmark run on \
                 cores {} only: name cores from that list",
                list(available)
            ),
            PlanError::GeneratorCoreUnavailable { available } => write!(
                f,
                "the generator runs on core {GENERATOR_CORE}, but this process may run on \
                 cores {} only: start it with core {GENERATOR_CORE} in its affinity \
                 (taskset -c 0-N)",
                list(available)
            ),
        }
    }
}

impl std::error::Error for PlanError {}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_CORES: [usize; 2] = [0, 1];

    #[test]
    fn one_worker_by_default_takes_the_core_after_the_generator() {
        let plan = WorkerPlan::new(1, None, Steering::Owner, &TWO_CORES).unwrap();
        assert_eq!(plan.cores, vec![1]);
        assert!(!plan.shared_cores);
    }

    #[test]
    fn more_workers_than_free_cores_is_refused_with_the_count() {
        let e = WorkerPlan::new(2, None, Steering::Owner, &TWO_CORES).unwrap_err();
        assert_eq!(
            e,
            PlanError::TooFewCores {
                workers: 2,
                available: TWO_CORES.to_vec()
            }
        );
        let message = e.to_string();
        assert!(message.contains("needs 3 cores"), "{message}");
        assert!(message.contains("--worker-cores 1,1"), "{message}");
    }

    #[test]
    fn workers_sharing_a_core_are_allowed_and_marked() {
        let plan = WorkerPlan::new(2, Some(&[1, 1]), Steering::Address, &TWO_CORES).unwrap();
        assert_eq!(plan.cores, vec![1, 1]);
        assert!(plan.shared_cores);
    }

    #[test]
    fn a_worker_on_the_generator_core_shares_it() {
        let plan = WorkerPlan::new(1, Some(&[0]), Steering::Owner, &TWO_CORES).unwrap();
        assert!(plan.shared_cores);
    }

    #[test]
    fn core_list_must_match_the_worker_count() {
        assert_eq!(
            WorkerPlan::new(2, Some(&[1]), Steering::Owner, &TWO_CORES),
            Err(PlanError::CoresForWorkers {
                listed: vec![1],
                workers: 2
            })
        );
    }

    #[test]
    fn a_core_outside_the_affinity_is_refused() {
        assert_eq!(
            WorkerPlan::new(1, Some(&[7]), Steering::Owner, &TWO_CORES),
            Err(PlanError::CoreUnavailable {
                core: 7,
                available: TWO_CORES.to_vec()
            })
        );
    }

    #[test]
    fn zero_workers_is_refused() {
        assert_eq!(
            WorkerPlan::new(0, None, Steering::Owner, &TWO_CORES),
            Err(PlanError::NoWorkers)
        );
    }

    #[test]
    fn address_steering_ignores_the_owner_and_owner_steering_follows_it() {
        let plan = WorkerPlan::new(2, Some(&[1, 1]), Steering::Address, &TWO_CORES).unwrap();
        assert_eq!((plan.queue_of(4, 1), plan.queue_of(5, 0)), (0, 1));
        let plan = WorkerPlan {
            steering: Steering::Owner,
            ..plan
        };
        assert_eq!((plan.queue_of(4, 1), plan.queue_of(5, 0)), (1, 0));
    }

    #[test]
    fn the_bench_subscribers_split_about_evenly() {
        use sheetcake_dataplane::shaping::owner_worker;
        let on_0 = (0..10_000)
            .filter(|s| owner_worker(&format!("bench-{s}"), 2) == 0)
            .count();
        assert!(
            (4_500..=5_500).contains(&on_0),
            "{on_0} of 10,000 on worker 0"
        );
    }
}
