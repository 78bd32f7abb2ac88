//! CAKE (Common Applications Kept Enhanced) in pure Rust: one instance per subscriber per
//! direction.
//!
//! # What it is for
//! A home's internet connection should stay responsive while it is busy: a video call next to
//! a download, a game next to a backup. CAKE does that in one piece: a shaper that keeps the
//! queue in the box instead of in the head-end or the modem, flow isolation (DRR++) so a sparse
//! flow never waits behind bulk ones, per-host fairness so one device with many connections
//! cannot crowd out another, DiffServ tins, and COBALT (CoDel plus BLUE) so the queues that
//! remain stay short. This crate is the algorithm of Linux's `sch_cake`, as specified in the
//! project's `spec/cake.md`, made to run a hundred thousand times over on one core.
//!
//! # Principles
//! - No clock reads: every call takes `now` in nanoseconds, so the whole algorithm runs on a
//!   virtual clock in tests.
//! - No allocation on the packet path: flow state comes from a per-worker [`flows::FlowPool`],
//!   held only while a flow is active; packets are owned handles moved in and out, queued in
//!   the packet type's own (intrusive, in production) queues.
//! - Small when idle: an instance is its tins and counters; flow state is pooled.
//! - Safe Rust only, and nothing from DPDK or the rest of the dataplane: the packet boundary
//!   is the [`packet::CakePacket`] trait and the [`packet::PacketMeta`] the dataplane's parser
//!   fills.
//!
//! # Non-goals
//! Complete generality of configuration is not a goal, as in the kernel: the options are
//! tc-cake's. GSO splitting and NAT lookups do not exist on a bump in the wire (the words are
//! accepted and documented as having no effect).
//!
//! # Choices where the spec leaves one
//! - COBALT's first signal waits one interval (RFC 8289), see [`cobalt`].
//! - Flow queues per tin are an instance parameter (default 1024, 8-way); idle flows forget
//!   their tags, see [`flows`].
//! - Flow state is held only while a flow is active. Empty flows are retired by dequeue as in
//!   the kernel; an idle instance is never visited, so [`Cake::release_rested_flows`] lets the
//!   worker give back the flows of an instance idle for a while: flows whose AQM is at rest
//!   (count 0, BLUE off; their next-drop time is never read again) are freed, congested ones
//!   once their state, brought forward as if watched all along, has decayed (BLUE relaxes
//!   1/4096 per `target` while idle; the kernel relaxes it only at visits).
//! - Overflow victims come from a max-heap of flow backlogs kept in the flows themselves and
//!   maintained only while overflows are happening, as in the kernel; the victim is the
//!   same: the largest byte backlog in the instance.
//! - When the worker's flow pool is exhausted, the packet that needed a new flow is handed
//!   back as an overflow drop.
//! - A tin-mode change re-files queued packets into the new tins by their stamped
//!   classification (DSCP before any wash, mark, ports); other changes keep every flow.
//! - The ACK filter treats a first SACK block starting below the cumulative ACK as a D-SACK
//!   (RFC 2883) and filters nothing for a trigger with malformed options.
//!
//! # Sizes
//! An idle instance is its struct and its tins: 560 bytes (besteffort) to 2,016 bytes
//! (diffserv8); the `an_idle_instance_is_small` test holds it to 2 KiB. An active flow costs
//! one pool entry ([`FlowPool::bytes_per_flow`]: the flow, two host entries and its share of
//! the slot map: 224 bytes with the test packet's 32-byte queue head).

#![forbid(unsafe_code)]

pub mod ack_filter;
pub mod autorate;
pub mod cobalt;
pub mod config;
pub mod flows;
pub mod instance;
pub mod overhead;
pub mod packet;
pub mod sim;
pub mod tins;

pub use config::CakeConfig;
pub use flows::FlowPool;
pub use flows::FlowState;
pub use instance::{
    Cake, Dequeued, FlowReport, InstanceSetup, InstanceStats, Placing, TinReport, TinStats,
};
pub use packet::{CakePacket, DropReason, NetworkKind, PacketMeta, PacketQueue, PacketStamp};
