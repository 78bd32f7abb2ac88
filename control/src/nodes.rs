//! Parent nodes: the busy subscribers behind a head-end share its capacity.
//!
//! A node (a CMTS service group, a DSLAM, an access point) has a capacity per direction that
//! can be smaller than the sum of its subscribers' plans. If sheetcake shaped every subscriber
//! to its plan regardless, the excess would queue inside the head-end, in the FIFO sheetcake
//! exists to keep empty. So when a node's busy subscribers together want more than it has,
//! each of them is shaped below its plan, and the node's line never holds a standing queue.
//!
//! Policy here, mechanism in the workers (DESIGN.md section 4): every [`BALANCE_INTERVAL`] the
//! control thread reads what each member's instance received and holds queued (the workers'
//! [`InstanceGauge`]s, plain stores with no locks), decides the rates, and sends the ones that
//! changed as [`Command::SetRate`], which the owner applies in place: queues, flows and AQM
//! state stay. Members of one node may sit on any workers; the balancer sees them all alike.
//!
//! # The sharing rule: weighted max-min, by plan rate
//! Each member `i` has a plan `p_i` and a demand `d_i`: its plan while it is *limited* (its
//! queue holds more than [`LIMITED_BACKLOG_BYTES`]; it would take more if given more), else
//! what it received lately. The node's capacity `C` is shared by finding the level `λ` with
//! `Σ min(d_i, λ p_i) = C` and shaping every member to `min(1, λ) · p_i`. Members that use
//! less than their share keep what they use; the rest is split in proportion to the plans, so
//! two 20 Mbit/s plans behind a 30 Mbit/s node get 15 each, and a 40 next to a 20 gets twice
//! as much. Proportional to the plan is what subscribers pay for; an equal split would give a
//! cheap plan the same as an expensive one under congestion.
//!
//! Why the node is never overfilled (in the steady state between two balancing steps): a
//! limited member sends at its rate `λ p_i`, any other sends `d_i < λ p_i`; the sum of what
//! they send is `Σ min(d_i, λ p_i) = C`. A member that wakes up between two steps may exceed
//! its share until the next step, one [`BALANCE_INTERVAL`] later.

use crate::subscribers::{Node, Subscriber};
use sheetcake_dataplane::shaping::{Command, ControlChannel, Direction, InstanceGauges, Owner};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the balancer re-shares every node: the delay before a subscriber that became busy
/// (or idle) moves the others' rates. A millisecond is a fraction of any TCP round trip, so
/// senders see a steady rate, and a few reads per member cost the control core little.
pub const BALANCE_INTERVAL: Duration = Duration::from_millis(1);

/// How long a member's arrivals are averaged over (the EWMA's time constant): long enough to
/// smooth packet-by-packet arrival at a few Mbit/s (a 1,514-byte frame per 0.6 ms at 20
/// Mbit/s), short enough to follow a transfer that starts or stops.
pub const DEMAND_WINDOW: Duration = Duration::from_millis(20);

/// A member whose queue holds more than this is limited by its rate: a member whose arrivals
/// fit under its rate has its frames leave as they come, with at most the frame being sent
/// and a short burst waiting. Three full-size Ethernet frames.
pub const LIMITED_BACKLOG_BYTES: u64 = 3 * 1514;

/// How long a member counts as limited after its queue was last seen above
/// [`LIMITED_BACKLOG_BYTES`]: a TCP sender's queue empties for a moment after each
/// congestion signal, and its demand has not dropped for that.
pub const LIMITED_HOLD: Duration = Duration::from_millis(50);

/// Rates that differ by less than this fraction are not sent again: keeps the command rings
/// quiet while the shares hold steady.
const RATE_STEP: f64 = 0.01;

/// The share of its plan every member of a node gets: `min(1, λ)` with
/// `Σ min(d_i, λ p_i) = capacity`, for members given as `(demand, plan)` in bytes per second.
/// Plans of zero are ignored.
pub fn fair_level(capacity: f64, members: &mut [(f64, f64)]) -> f64 {
    let wanted: f64 = members.iter().map(|&(d, p)| d.min(p)).sum();
    if wanted <= capacity {
        return 1.0;
    }
    // Members using the least of their plan are satisfied first; the level rises past them.
    members.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
    let mut left = capacity;
    let mut weight: f64 = members.iter().map(|&(_, p)| p).sum();
    for &(demand, plan) in members.iter() {
        if plan <= 0.0 {
            continue;
        }
        if demand.min(plan) / plan > left / weight {
            break;
        }
        left -= demand.min(plan);
        weight -= plan;
    }
    if weight <= 0.0 {
        return 1.0;
    }
    (left / weight).clamp(0.0, 1.0)
}

/// One member's instance in one direction.
#[derive(Debug)]
struct Member {
    worker: usize,
    instance: u32,
    /// The plan rate, bytes per second (`None`: unlimited, weighted as the whole node).
    plan: Option<u64>,
    /// The rate last sent to the worker, if any was (`None`: the worker has the plan from its
    /// subscriber file, or nothing is known yet: send).
    applied: Option<Option<u64>>,
    /// The arrival counter at the last step.
    arrived: u64,
    /// Arrival rate, bytes per second (EWMA over [`DEMAND_WINDOW`]).
    rate: f64,
    /// Until when it counts as limited by its rate.
    limited_until: Option<Instant>,
}

/// One node in one direction.
#[derive(Debug)]
struct Share {
    node: String,
    direction: Direction,
    capacity: u64,
    members: Vec<Member>,
    /// The last level, for the status line.
    level: f64,
    limited: usize,
}

/// What a node's share looked like at the last step, for status lines.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareStatus {
    pub node: String,
    pub direction: Direction,
    /// Capacity, bytes per second.
    pub capacity: u64,
    pub members: usize,
    /// Members limited by their rate.
    pub limited: usize,
    /// What the members received lately, bytes per second.
    pub arriving: f64,
    /// The share of its plan each member gets (1: everyone has their plan).
    pub level: f64,
}

/// The balancer of every node.
pub struct NodeBalancer {
    shares: Vec<Share>,
    gauges: Vec<InstanceGauges>,
    channels: Vec<Arc<ControlChannel>>,
    last_step: Option<Instant>,
    scratch: Vec<(f64, f64)>,
}

impl NodeBalancer {
    /// A balancer for `nodes` and the subscribers placed on the workers (whose gauges and
    /// channels are given by worker number).
    pub fn new<'a>(
        nodes: &[Node],
        placed: impl Iterator<Item = (&'a Subscriber, Owner)>,
        gauges: Vec<InstanceGauges>,
        channels: Vec<Arc<ControlChannel>>,
    ) -> NodeBalancer {
        let mut balancer = NodeBalancer {
            shares: Vec::new(),
            gauges,
            channels,
            last_step: None,
            scratch: Vec::new(),
        };
        balancer.rebuild(nodes, placed);
        balancer
    }

    /// Takes new nodes and members (after a reload). Every member's rate is sent again at the
    /// next step, since a reload may have given its instance its plan back.
    pub fn rebuild<'a>(
        &mut self,
        nodes: &[Node],
        placed: impl Iterator<Item = (&'a Subscriber, Owner)>,
    ) {
        self.shares = nodes
            .iter()
            .flat_map(|n| {
                [
                    (Direction::Download, n.download),
                    (Direction::Upload, n.upload),
                ]
                .map(|(direction, capacity)| Share {
                    node: n.id.clone(),
                    direction,
                    capacity,
                    members: Vec::new(),
                    level: 1.0,
                    limited: 0,
                })
            })
            .collect();
        for (s, owner) in placed {
            let Some(node) = &s.node else { continue };
            for share in self.shares.iter_mut().filter(|sh| &sh.node == node) {
                let instance = 2 * owner.local + share.direction as u32;
                let plan = match share.direction {
                    Direction::Download => s.download.bandwidth,
                    Direction::Upload => s.upload.bandwidth,
                };
                let gauge = &self.gauges[owner.worker as usize][instance as usize];
                share.members.push(Member {
                    worker: owner.worker as usize,
                    instance,
                    plan,
                    applied: None,
                    arrived: gauge.arrived_bytes(),
                    rate: 0.0,
                    limited_until: None,
                });
            }
        }
        self.shares.retain(|s| !s.members.is_empty());
    }

    /// True when no node has members: the control thread need not wake for it.
    pub fn is_idle(&self) -> bool {
        self.shares.is_empty()
    }

    /// Re-shares every node if [`BALANCE_INTERVAL`] has passed since the last step.
    pub fn step(&mut self, now: Instant) {
        let Some(last) = self.last_step else {
            self.last_step = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(last);
        if elapsed < BALANCE_INTERVAL {
            return;
        }
        self.last_step = Some(now);
        let dt = elapsed.as_secs_f64();
        let smoothing = (dt / DEMAND_WINDOW.as_secs_f64()).min(1.0);
        for share in &mut self.shares {
            let capacity = share.capacity as f64;
            self.scratch.clear();
            share.limited = 0;
            for m in &mut share.members {
                let gauge = &self.gauges[m.worker][m.instance as usize];
                let arrived = gauge.arrived_bytes();
                let sample = arrived.wrapping_sub(m.arrived) as f64 / dt;
                m.arrived = arrived;
                m.rate += (sample - m.rate) * smoothing;
                if gauge.backlog_bytes() > LIMITED_BACKLOG_BYTES {
                    m.limited_until = Some(now + LIMITED_HOLD);
                }
                let plan = m.plan.map_or(capacity, |p| p as f64);
                let limited = m.limited_until.is_some_and(|t| now < t);
                share.limited += usize::from(limited);
                self.scratch
                    .push((if limited { plan } else { m.rate.min(plan) }, plan));
            }
            let level = fair_level(capacity, &mut self.scratch);
            share.level = level;
            for m in &mut share.members {
                let target = if level >= 1.0 {
                    m.plan
                } else {
                    let plan = m.plan.map_or(capacity, |p| p as f64);
                    Some(((level * plan) as u64).max(1))
                };
                // Received anything in the last few demand windows (the average decays below
                // a byte per second some 15 windows after the last frame).
                let active = m.rate >= 1.0 || m.limited_until.is_some_and(|t| now < t);
                if !(active || target == m.plan) || !differs(m.applied, target, m.plan) {
                    continue;
                }
                let command = Command::SetRate {
                    instance: m.instance,
                    bandwidth: target,
                };
                // A full ring is retried at the next step: the worker is busy applying others.
                if self.channels[m.worker].push(command).is_ok() {
                    m.applied = Some(target);
                }
            }
        }
    }

    /// Each node's share at the last step.
    pub fn status(&self) -> Vec<ShareStatus> {
        self.shares
            .iter()
            .map(|s| ShareStatus {
                node: s.node.clone(),
                direction: s.direction,
                capacity: s.capacity,
                members: s.members.len(),
                limited: s.limited,
                arriving: s.members.iter().map(|m| m.rate).sum(),
                level: s.level,
            })
            .collect()
    }
}

/// True when `target` should be sent, given what the worker has (`applied`; `None` when not
/// known, in which case it has at most its plan).
fn differs(applied: Option<Option<u64>>, target: Option<u64>, plan: Option<u64>) -> bool {
    match (applied, target) {
        (None, t) => t != plan,
        (Some(a), t) if a == t => false,
        (Some(Some(a)), Some(t)) => (a as f64 - t as f64).abs() > RATE_STEP * a as f64,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscribers::{Defaults, SubscriberSet};
    use sheetcake_dataplane::shaping::instance_gauges;

    const MBIT: f64 = 1e6 / 8.0;

    /// The level for a node of `capacity` Mbit/s and members' (demand, plan) in Mbit/s.
    fn level(capacity: f64, members: &[(f64, f64)]) -> f64 {
        let mut members: Vec<(f64, f64)> =
            members.iter().map(|&(d, p)| (d * MBIT, p * MBIT)).collect();
        fair_level(capacity * MBIT, &mut members)
    }

    #[test]
    fn two_busy_plans_of_20_behind_30_get_15_each() {
        // 20 λ + 20 λ = 30.
        assert!((level(30.0, &[(20.0, 20.0), (20.0, 20.0)]) - 0.75).abs() < 1e-9);
    }

    #[test]
    fn a_node_with_room_leaves_every_plan_alone() {
        assert_eq!(level(30.0, &[(20.0, 20.0), (0.0, 20.0)]), 1.0);
        // 5 used + 20 wanted = 25 <= 30.
        assert_eq!(level(30.0, &[(5.0, 20.0), (20.0, 20.0)]), 1.0);
    }

    #[test]
    fn members_using_less_than_their_share_keep_it_and_the_rest_goes_by_plan() {
        // The 10 Mbit/s plan uses 2: the others share 28 by plan (20 λ + 20 λ = 28).
        let l = level(30.0, &[(20.0, 20.0), (2.0, 10.0), (20.0, 20.0)]);
        assert!((l - 0.7).abs() < 1e-9, "{l}");
        // A 40 next to a 20, both busy behind 30: 40 λ + 20 λ = 30, so 20 and 10.
        let l = level(30.0, &[(40.0, 40.0), (20.0, 20.0)]);
        assert!((l - 0.5).abs() < 1e-9, "{l}");
    }

    #[test]
    fn demand_above_the_plan_counts_as_the_plan() {
        assert_eq!(level(40.0, &[(35.0, 20.0), (20.0, 20.0)]), 1.0);
    }

    fn node_set() -> SubscriberSet {
        let text = r#"
[[node]]
id = "sg"
download = "30mbit"
upload = "30mbit"

[[subscriber]]
id = "a"
addresses = ["10.0.0.1"]
download = "20mbit"
upload = "20mbit"
node = "sg"

[[subscriber]]
id = "b"
addresses = ["10.0.0.2"]
download = "20mbit"
upload = "20mbit"
node = "sg"

[[subscriber]]
id = "outside"
addresses = ["10.0.0.3"]
download = "20mbit"
upload = "20mbit"
"#;
        let defaults = Defaults {
            download: String::new(),
            upload: String::new(),
        };
        SubscriberSet::parse(text, "nodes.toml", &defaults).unwrap()
    }

    /// The SetRate commands waiting on `channel`, as (instance, rate).
    fn rates_sent(channel: &ControlChannel) -> Vec<(u32, Option<u64>)> {
        std::iter::from_fn(|| channel.commands.pop())
            .map(|c| match c {
                Command::SetRate {
                    instance,
                    bandwidth,
                } => (instance, bandwidth),
                _ => panic!("the balancer sends rates only"),
            })
            .collect()
    }

    #[test]
    fn members_on_two_workers_share_the_node_and_get_their_plans_back_when_alone() {
        let set = node_set();
        // "a" on worker 0, "b" on worker 1, "outside" on worker 0.
        let owners = [
            Owner {
                worker: 0,
                local: 0,
            },
            Owner {
                worker: 1,
                local: 0,
            },
            Owner {
                worker: 0,
                local: 1,
            },
        ];
        let gauges = vec![instance_gauges(2), instance_gauges(2)];
        let channels = vec![ControlChannel::new(64), ControlChannel::new(64)];
        let mut balancer = NodeBalancer::new(
            &set.nodes,
            set.subscribers.iter().zip(owners),
            gauges.clone(),
            channels.clone(),
        );
        let download = |w: usize| &gauges[w][0];
        let start = Instant::now();
        balancer.step(start);
        // Both download at their plan, with standing queues: limited.
        let mut now = start;
        for _ in 0..100 {
            now += BALANCE_INTERVAL;
            for w in 0..2 {
                download(w).arrived((20.0 * MBIT * BALANCE_INTERVAL.as_secs_f64()) as u32);
                download(w).set_backlog(20_000);
            }
            balancer.step(now);
        }
        let fifteen = (15.0 * MBIT) as u64;
        for channel in &channels {
            let sent = rates_sent(channel);
            let last = sent.last().copied().expect("a rate was sent");
            assert_eq!(last.0, 0, "the download instance");
            let rate = last.1.expect("a finite rate");
            assert!(
                rate.abs_diff(fifteen) <= fifteen / 100,
                "{rate} vs {fifteen}"
            );
            // Not re-sent once steady: far fewer commands than steps.
            assert!(sent.len() < 10, "{sent:?}");
        }
        let status = balancer.status();
        let down = status
            .iter()
            .find(|s| s.direction == Direction::Download)
            .unwrap();
        assert_eq!((down.members, down.limited), (2, 2));
        assert!((down.level - 0.75).abs() < 0.01, "{down:?}");
        // Worker 1's member stops: after its hold, worker 0's gets its plan back.
        for _ in 0..200 {
            now += BALANCE_INTERVAL;
            download(0).arrived((15.0 * MBIT * BALANCE_INTERVAL.as_secs_f64()) as u32);
            download(1).set_backlog(0);
            balancer.step(now);
        }
        assert_eq!(
            rates_sent(&channels[0]).last(),
            Some(&(0, Some((20.0 * MBIT) as u64)))
        );
        // The idle member gets its plan back too, so it starts at its plan when it wakes.
        assert_eq!(
            rates_sent(&channels[1]).last(),
            Some(&(0, Some((20.0 * MBIT) as u64)))
        );
        // Uploads were idle all along: never touched; "outside" is in no node.
        assert!(status
            .iter()
            .all(|s| s.direction == Direction::Download || s.limited == 0));
    }
}
