//! Raw bindings to the system DPDK, generated at build time (see `build.rs`).
//!
//! Nothing here is safe to call without reading DPDK's documentation; the safe layer is
//! `sheetcake-dataplane`'s `dpdk` module, the only code in the project that uses this crate.
//!
//! Functions that DPDK defines `static inline` in its headers (the whole fast path) are reached
//! through generated C wrappers; bindgen gives them their usual names.

#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
#![allow(clippy::all)]
#![allow(unsafe_op_in_unsafe_fn)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// The DPDK version these bindings were generated against (from pkg-config).
pub const DPDK_VERSION: &str = env!("DPDK_VERSION");

// RSS hash types. DPDK 22.11 defines them as `RTE_BIT64(n)`, a function-like macro bindgen does
// not evaluate, so they are missing from the generated bindings. Bit numbers from rte_ethdev.h
// (DPDK 22.11), "RSS offload types" and the `_SRC_ONLY`/`_DST_ONLY` selectors.
/// Hash IPv4 packets on their addresses.
pub const RTE_ETH_RSS_IPV4: u64 = 1 << 2;
/// Hash IPv4 fragments on their addresses.
pub const RTE_ETH_RSS_FRAG_IPV4: u64 = 1 << 3;
/// Hash IPv4 packets that are neither TCP, UDP nor SCTP.
pub const RTE_ETH_RSS_NONFRAG_IPV4_OTHER: u64 = 1 << 7;
/// Hash IPv6 packets on their addresses.
pub const RTE_ETH_RSS_IPV6: u64 = 1 << 8;
/// Hash IPv6 fragments on their addresses.
pub const RTE_ETH_RSS_FRAG_IPV6: u64 = 1 << 9;
/// Hash IPv6 packets that are neither TCP, UDP nor SCTP.
pub const RTE_ETH_RSS_NONFRAG_IPV6_OTHER: u64 = 1 << 13;
/// Hash IPv6 packets with extension headers.
pub const RTE_ETH_RSS_IPV6_EX: u64 = 1 << 15;
/// `RTE_ETH_RSS_IP`: every IP packet hashed on its addresses only.
pub const RTE_ETH_RSS_IP: u64 = RTE_ETH_RSS_IPV4
    | RTE_ETH_RSS_FRAG_IPV4
    | RTE_ETH_RSS_NONFRAG_IPV4_OTHER
    | RTE_ETH_RSS_IPV6
    | RTE_ETH_RSS_FRAG_IPV6
    | RTE_ETH_RSS_NONFRAG_IPV6_OTHER
    | RTE_ETH_RSS_IPV6_EX;
/// Hash only the source address of the L3 header (bit 63).
pub const RTE_ETH_RSS_L3_SRC_ONLY: u64 = 1 << 63;
/// Hash only the destination address of the L3 header (bit 62).
pub const RTE_ETH_RSS_L3_DST_ONLY: u64 = 1 << 62;
/// Hash only the source port of the L4 header (bit 61).
pub const RTE_ETH_RSS_L4_SRC_ONLY: u64 = 1 << 61;
/// Hash only the destination port of the L4 header (bit 60).
pub const RTE_ETH_RSS_L4_DST_ONLY: u64 = 1 << 60;

extern "C" {
    /// The calling thread's `rte_errno` (a thread-local macro in C; see `helpers.c`).
    pub fn sheetcake_rte_errno() -> ::std::os::raw::c_int;
}
