//! Safe wrappers over DPDK: EAL, lcores and time, mempools, mbufs, ports and queues.
//!
//! This module and the `dpdk-sys` crate are the only places in sheetcake that contain `unsafe`.
//! Each wrapper states the rule that makes it sound, so the code above it can be ordinary Rust:
//! - an [`Mbuf`] is owned by exactly one value and is freed when dropped: leaks and double frees
//!   cannot be written in safe code;
//! - a queue ([`RxQueue`], [`TxQueue`]) is a unique, non-cloneable handle that borrows its
//!   [`Port`], so only one thread can poll it and the port cannot be stopped while it is in use;
//! - mempools live until the process exits, as in every DPDK application, so an mbuf can never
//!   outlive the memory it came from.

mod eal;
mod mbuf;
mod mempool;
mod port;
mod ring;
mod sched;

pub use eal::{tsc, tsc_hz, Eal, LcoreRegistration};
pub use mbuf::{Mbuf, MbufBuffer, MbufQueue, MBUF_PRIVATE_BYTES};
pub use mempool::{Mempool, MempoolConfig};
pub use port::{Port, PortConfig, PortStats, RxQueue, TxQueue};
pub use ring::{mbuf_ring, RingConsumer, RingGauge, RingPort, RingPortEnds, RingProducer};
pub use sched::{SchedConfig, SchedPort};

use std::ffi::CStr;
use std::fmt;

/// RSS hash types that spread IP traffic over queues by address (DPDK's `RTE_ETH_RSS_IP`).
pub const RSS_IP: u64 = dpdk_sys::RTE_ETH_RSS_IP;

/// RSS on the destination address only: on the core-facing port the destination is the
/// subscriber, so all of a subscriber's downloads land on one queue, ideally its owner's.
pub const RSS_DESTINATION_ONLY: u64 = RSS_IP | dpdk_sys::RTE_ETH_RSS_L3_DST_ONLY;

/// RSS on the source address only: the access-facing port's counterpart.
pub const RSS_SOURCE_ONLY: u64 = RSS_IP | dpdk_sys::RTE_ETH_RSS_L3_SRC_ONLY;

/// How a port spreads frames over its RX queues, as the driver accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RssSpread {
    /// One RX queue: nothing to spread.
    OneQueue,
    /// The driver offers no RSS for IP: every frame lands on queue 0 and the handoff rings
    /// carry what other workers own.
    Unsupported,
    /// Hashed on both addresses: a subscriber's frames spread over all queues.
    BothAddresses,
    /// Hashed on the source address only.
    SourceOnly,
    /// Hashed on the destination address only.
    DestinationOnly,
}

impl RssSpread {
    /// From the hash types a port was configured with.
    pub fn of(queues: u16, hash: u64) -> RssSpread {
        if queues <= 1 {
            RssSpread::OneQueue
        } else if hash & RSS_IP == 0 {
            RssSpread::Unsupported
        } else if hash & dpdk_sys::RTE_ETH_RSS_L3_DST_ONLY != 0 {
            RssSpread::DestinationOnly
        } else if hash & dpdk_sys::RTE_ETH_RSS_L3_SRC_ONLY != 0 {
            RssSpread::SourceOnly
        } else {
            RssSpread::BothAddresses
        }
    }
}

impl fmt::Display for RssSpread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RssSpread::OneQueue => "one queue",
            RssSpread::Unsupported => "no RSS in this driver: all frames on queue 0, handoff carries the rest",
            RssSpread::BothAddresses => "RSS on both addresses (the driver cannot hash one side only: handoff carries about 1 - 1/workers of the frames)",
            RssSpread::SourceOnly => "RSS on the source address (frames land on their subscriber's queue)",
            RssSpread::DestinationOnly => "RSS on the destination address (frames land on their subscriber's queue)",
        })
    }
}

/// The DPDK version sheetcake was built against.
pub const DPDK_VERSION: &str = dpdk_sys::DPDK_VERSION;

/// A DPDK call that failed, with what DPDK said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkError {
    /// What sheetcake was doing, e.g. "configuring port core (net_af_packet0)".
    pub context: String,
    /// The DPDK function that failed.
    pub call: &'static str,
    /// The (positive) errno value DPDK reported.
    pub errno: i32,
}

impl DpdkError {
    /// Builds an error from a DPDK return code, which is either `-errno` or `-1` with
    /// `rte_errno` set.
    pub(crate) fn from_ret(call: &'static str, ret: i32, context: impl Into<String>) -> Self {
        let errno = if ret < -1 {
            -ret
        } else {
            // SAFETY: reads this thread's rte_errno; no preconditions.
            unsafe { dpdk_sys::sheetcake_rte_errno() }
        };
        DpdkError {
            context: context.into(),
            call,
            errno,
        }
    }

    /// Builds an error from `rte_errno`, for calls that return a null pointer on failure.
    pub(crate) fn from_errno(call: &'static str, context: impl Into<String>) -> Self {
        Self::from_ret(call, -1, context)
    }

    /// DPDK's description of the error code.
    pub fn message(&self) -> String {
        // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
        unsafe {
            let msg = dpdk_sys::rte_strerror(self.errno);
            if msg.is_null() {
                format!("error {}", self.errno)
            } else {
                CStr::from_ptr(msg).to_string_lossy().into_owned()
            }
        }
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} failed: {} (errno {})",
            self.context,
            self.call,
            self.message(),
            self.errno
        )
    }
}

impl std::error::Error for DpdkError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_spread_says_which_address_a_port_hashes() {
        assert_eq!(RssSpread::of(1, RSS_DESTINATION_ONLY), RssSpread::OneQueue);
        assert_eq!(RssSpread::of(4, 0), RssSpread::Unsupported);
        assert_eq!(RssSpread::of(4, RSS_IP), RssSpread::BothAddresses);
        assert_eq!(
            RssSpread::of(4, RSS_DESTINATION_ONLY),
            RssSpread::DestinationOnly
        );
        assert_eq!(RssSpread::of(4, RSS_SOURCE_ONLY), RssSpread::SourceOnly);
        // The modifier alone, without hash types the driver offers, spreads nothing.
        assert_eq!(
            RssSpread::of(4, dpdk_sys::RTE_ETH_RSS_L3_DST_ONLY),
            RssSpread::Unsupported
        );
    }
}
