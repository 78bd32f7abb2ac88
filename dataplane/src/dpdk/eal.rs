//! The Environment Abstraction Layer: started once per process, never torn down.

use super::DpdkError;
use std::ffi::{c_char, CString};
use std::sync::{Mutex, OnceLock};

/// Proof that the EAL is initialised. Everything else in this module needs one.
#[derive(Debug)]
pub struct Eal {
    args: Vec<String>,
}

static EAL: OnceLock<Eal> = OnceLock::new();
static EAL_INIT: Mutex<()> = Mutex::new(());

impl Eal {
    /// Initialises the EAL with `args` (as on a DPDK command line, without the program name).
    ///
    /// DPDK allows exactly one initialisation per process. A second call with the same
    /// arguments returns the running EAL (tests share one); different arguments are an error.
    pub fn init(args: &[String]) -> Result<&'static Eal, DpdkError> {
        let _serialised = EAL_INIT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(eal) = EAL.get() {
            if eal.args == args {
                return Ok(eal);
            }
            return Err(DpdkError {
                context: format!(
                    "the EAL is already running with [{}], cannot start it again with [{}]",
                    eal.args.join(" "),
                    args.join(" ")
                ),
                call: "rte_eal_init",
                errno: libc_eexist(),
            });
        }
        let mut owned: Vec<CString> = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("sheetcake").expect("literal has no NUL"));
        for arg in args {
            owned.push(CString::new(arg.as_str()).map_err(|_| DpdkError {
                context: format!("EAL argument {arg:?} contains a NUL byte"),
                call: "rte_eal_init",
                errno: 22,
            })?);
        }
        // rte_eal_init may permute argv; give it pointers it owns for the call's duration.
        let mut argv: Vec<*mut c_char> = owned.iter().map(|s| s.as_ptr() as *mut c_char).collect();
        let argc = argv.len() as i32;
        // SAFETY: argv holds argc valid NUL-terminated strings that outlive the call; the mutex
        // and the OnceLock guarantee this runs at most once per process.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(DpdkError::from_ret(
                "rte_eal_init",
                ret,
                format!("starting DPDK with [{}]", args.join(" ")),
            ));
        }
        Ok(EAL.get_or_init(|| Eal {
            args: args.to_vec(),
        }))
    }

    /// The running EAL, if [`Eal::init`] succeeded earlier in this process.
    pub fn get() -> Option<&'static Eal> {
        EAL.get()
    }

    /// Registers the calling (non-EAL) thread with DPDK so it gets an lcore id, and with it
    /// per-lcore mempool caches. Workers call this first thing; the registration ends when the
    /// returned guard is dropped.
    pub fn register_thread(&'static self) -> Result<LcoreRegistration, DpdkError> {
        // SAFETY: the EAL is initialised (we hold &Eal); registration is per thread.
        let ret = unsafe { dpdk_sys::rte_thread_register() };
        if ret < 0 {
            return Err(DpdkError::from_ret(
                "rte_thread_register",
                ret,
                "giving a worker thread an lcore id (are there more workers than RTE_MAX_LCORE?)",
            ));
        }
        Ok(LcoreRegistration {
            _not_send: std::marker::PhantomData,
        })
    }
}

fn libc_eexist() -> i32 {
    17
}

/// A thread's registration as a DPDK lcore; unregisters on drop. Not `Send`: it belongs to the
/// thread that registered.
#[derive(Debug)]
pub struct LcoreRegistration {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl LcoreRegistration {
    /// The lcore id DPDK gave this thread.
    pub fn lcore_id(&self) -> u32 {
        // SAFETY: reads a thread-local set by rte_thread_register.
        unsafe { dpdk_sys::rte_lcore_id() }
    }
}

impl Drop for LcoreRegistration {
    fn drop(&mut self) {
        // SAFETY: this thread registered itself and unregisters once.
        unsafe { dpdk_sys::rte_thread_unregister() }
    }
}

/// The time-stamp counter: what workers read once per loop. Inlined where the CPU has an
/// instruction for it (DPDK's own `rte_rdtsc` is a static inline, reachable from Rust only
/// through a generated wrapper, a call per read).
#[inline]
pub fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: RDTSC has no preconditions on x86_64.
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: reads the CPU's time counter; no preconditions.
    unsafe {
        dpdk_sys::rte_rdtsc()
    }
}

/// TSC ticks per second, as measured by the EAL at start-up.
pub fn tsc_hz(_eal: &Eal) -> u64 {
    // SAFETY: the EAL is initialised, so the TSC frequency has been measured.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}
