//! Everything a sheetcake worker runs: the safe DPDK layer and the run-to-completion loop.
//!
//! Workers never block, never allocate on the packet path, never parse text and never do I/O;
//! they move frames and publish counters. See `DESIGN.md` in the shared documents.

pub mod classify;
pub mod dpdk;
pub mod packet;
pub mod prefetch;
pub mod pressure;
pub mod sched;
pub mod shaping;
pub mod worker;
