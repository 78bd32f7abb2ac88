//! The control thread's side of the API: each [`Route`] read or changed against the live
//! shaping state, and answered.
//!
//! A change is validated whole (every record on its own, then against the others and the
//! current state in the [`Registry`](crate::registry::Registry)); nothing is applied unless
//! all of it is good. Once sent, the answer waits (up to [`APPLY_WAIT`]) until every worker
//! involved has applied it, so a 200 means "in force", not "queued".

use crate::api::{ApplyBody, Reply, Route, SubscriberPatch};
use crate::config::ConfigError;
use crate::json_source::{NodeJson, SubscriberJson};
use crate::live::{LiveShaping, Sent, Waiter};
use crate::metrics::Snapshot;
use crate::records::{Checker, Records};
use crate::registry::{Change, Refusal};
use crate::subscribers::{Defaults, Node, Subscriber, SubscriberSet};
use crossbeam_channel::Sender;
use serde_json::{json, Value as Json};
use sheetcake_cake::config::format_rate;
use sheetcake_dataplane::classify::Prefix;
use sheetcake_dataplane::shaping::{DirectionReport, SubscriberReport};
use std::time::{Duration, Instant};

/// How long an answer waits for the workers to apply a change before saying "accepted" (202)
/// instead of "applied" (200). Workers apply commands every loop, in microseconds; only a
/// change of many thousands of subscribers takes longer.
pub const APPLY_WAIT: Duration = Duration::from_millis(100);

/// How long a statistics request waits for the owner worker.
pub const STATS_WAIT: Duration = Duration::from_secs(1);

/// Who waits for a subscriber's statistics.
pub enum Asker {
    /// An API request, answered as JSON or tc-like text.
    Api {
        reply: Sender<Reply>,
        text: bool,
        deadline: Instant,
    },
    /// The metrics refresh.
    Metrics,
}

/// Where the errors of an API body are said to be.
const BODY: &str = "request body";

/// The busiest subscribers over the last metrics refresh, for `/v1/top`.
#[derive(Debug, Clone, Default)]
pub struct TopEntry {
    pub id: String,
    /// Bytes per second that arrived (download, upload).
    pub rates: [f64; 2],
    /// Bytes queued (download, upload), when last sampled.
    pub backlog: [u64; 2],
}

/// What a handler may use.
pub struct Context<'a> {
    pub live: Option<&'a mut LiveShaping<Asker>>,
    pub snapshot: &'a Snapshot,
    pub top: &'a [TopEntry],
}

/// The result of a change, once sent.
pub struct Outcome {
    pub sent: Sent,
    /// 201 for a subscriber or node created, else 200.
    pub created: bool,
}

/// A rate as the API writes it: tc's notation, exact, so it reads back the same.
fn rate_text(bandwidth: Option<u64>) -> String {
    bandwidth.map_or_else(|| "unlimited".into(), format_rate)
}

/// A subscriber as the API shows it.
pub fn subscriber_json(s: &Subscriber, worker: u16) -> Json {
    json!({
        "id": s.id,
        "addresses": s.prefixes.iter().map(Prefix::to_string).collect::<Vec<_>>(),
        "download": rate_text(s.download.bandwidth),
        "upload": rate_text(s.upload.bandwidth),
        "node": s.node,
        "worker": worker,
        "download_cake": s.download.to_string(),
        "upload_cake": s.upload.to_string(),
    })
}

fn node_json(n: &Node) -> Json {
    json!({
        "id": n.id,
        "download": rate_text(Some(n.download)),
        "upload": rate_text(Some(n.upload)),
    })
}

fn summary_json(sent: &Sent, applied: bool) -> Json {
    let s = sent.summary;
    json!({
        "applied": applied,
        "added": s.added, "removed": s.removed, "changed": s.changed, "unchanged": s.unchanged,
        "applied_in_ms": applied.then(|| sent.started.elapsed().as_secs_f64() * 1e3),
    })
}

/// The answer to a change refused whole.
pub fn refusal(r: Refusal) -> Reply {
    match r {
        Refusal::Invalid(e) => {
            Reply::error(422, "the change is not valid; nothing was applied", &e)
        }
        Refusal::Conflict(e) => Reply::error(
            409,
            "the change conflicts with the current state; nothing was applied",
            &e,
        ),
        Refusal::NotFound(m) => Reply::message(404, &m),
        Refusal::Full(m) => Reply::message(507, &m),
    }
}

fn direction_json(d: &DirectionReport) -> Json {
    let tins: Vec<Json> = crate::report::tin_names(d.config.tin_mode)
        .into_iter()
        .zip(&d.tins)
        .map(|(name, t)| {
            json!({
                "name": name,
                "threshold_bits_per_second": t.rate.map(|r| r * 8),
                "target_us": t.target / 1000, "interval_us": t.interval / 1000,
                "peak_delay_us": t.stats.peak_delay / 1000,
                "average_delay_us": t.stats.avg_delay / 1000,
                "base_delay_us": t.stats.sparse_delay / 1000,
                "sent_bytes": t.stats.bytes, "sent_packets": t.stats.packets,
                "dropped_packets": t.stats.drops, "ecn_marked_packets": t.stats.ecn_marks,
                "ack_dropped_packets": t.stats.ack_drops,
                "backlog_bytes": t.backlog_bytes, "backlog_packets": t.backlog_packets,
                "sparse_flows": t.sparse_flows, "bulk_flows": t.bulk_flows,
                "unresponsive_flows": t.unresponsive_flows,
                "max_packet_bytes": t.stats.max_packet_len,
                "way_indirect_hits": t.stats.way_indirect_hits,
                "way_misses": t.stats.way_misses, "way_collisions": t.stats.way_collisions,
            })
        })
        .collect();
    let s = &d.stats;
    json!({
        "cake": d.config.to_string(),
        "sent_bytes": s.sent_bytes, "sent_packets": s.sent_packets,
        "dropped_packets": s.drops, "overlimits": s.overlimits,
        "ecn_marked_packets": s.ecn_marks, "ack_dropped_packets": s.ack_drops,
        "backlog_bytes": d.backlog_bytes, "backlog_packets": d.backlog_packets,
        "memory_used_bytes": d.memory.0, "memory_limit_bytes": d.memory.2,
        "tins": tins,
    })
}

/// The answer to a statistics request, once the owner has reported.
pub fn stats_reply(id: &str, worker: Option<u16>, r: &SubscriberReport, text: bool) -> Reply {
    if text {
        return Reply::text(200, crate::report::format(id, r));
    }
    Reply::json(
        200,
        &json!({
            "id": id, "worker": worker,
            "download": direction_json(&r.directions[0]),
            "upload": direction_json(&r.directions[1]),
        }),
    )
}

/// The path names the record; its body may repeat the ID, not contradict it.
fn same_id(given: &Option<String>, id: &str) -> Result<(), Reply> {
    match given {
        Some(given) if given.trim() != id => Err(Reply::error(
            422,
            "the body's id is not the path's",
            &[ConfigError {
                file: BODY.into(),
                line: None,
                key: "id".into(),
                message: format!("{given:?} differs from {id:?} in the path; leave it out"),
            }],
        )),
        _ => Ok(()),
    }
}

/// The body's subscriber, named after the path, through the checks every source goes
/// through.
fn checked_subscriber(
    live: &LiveShaping<Asker>,
    id: &str,
    body: &SubscriberJson,
    defaults: &Defaults,
) -> Result<Subscriber, Reply> {
    same_id(&body.id, id)?;
    let record = SubscriberJson {
        id: Some(id.to_owned()),
        ..body.clone()
    }
    .record("subscriber".into(), None);
    let mut check = Checker::new(BODY);
    let registry = live.registry();
    let s = check.subscriber(
        &record,
        defaults,
        |n| registry.node(n).is_some(),
        || registry.nodes().map(|n| n.id.clone()).collect(),
    );
    match s {
        Some(s) if check.errors.is_empty() => Ok(s),
        _ => Err(Reply::error(
            422,
            "the subscriber is not valid; nothing was applied",
            &check.errors,
        )),
    }
}

fn checked_node(id: &str, body: &NodeJson) -> Result<Node, Reply> {
    same_id(&body.id, id)?;
    let record = NodeJson {
        id: Some(id.to_owned()),
        ..body.clone()
    }
    .record("node".into(), None);
    let mut check = Checker::new(BODY);
    match check.node(&record) {
        Some(n) => Ok(n),
        None => Err(Reply::error(
            422,
            "the node is not valid; nothing was applied",
            &check.errors,
        )),
    }
}

/// The subscriber `old` with `patch` applied, through the same checks as a PUT. The fields not
/// given are written back as they are in force: addresses, the exact rate, and for a direction
/// whose options are not given, its whole CAKE configuration as the starting point (its
/// printed words parse back to the same configuration), so the box defaults do not creep in.
fn patched(
    live: &LiveShaping<Asker>,
    old: &Subscriber,
    patch: &SubscriberPatch,
) -> Result<Subscriber, Reply> {
    let kept = |given: &Option<String>, now: String| given.clone().unwrap_or(now);
    let body = SubscriberJson {
        id: None,
        addresses: patch
            .addresses
            .clone()
            .unwrap_or_else(|| old.prefixes.iter().map(Prefix::to_string).collect()),
        download: kept(&patch.download, rate_text(old.download.bandwidth)),
        upload: kept(&patch.upload, rate_text(old.upload.bandwidth)),
        download_options: patch.download_options.clone(),
        upload_options: patch.upload_options.clone(),
        node: patch.node.clone().unwrap_or_else(|| old.node.clone()),
    };
    let box_defaults = live.defaults();
    let start = Defaults {
        download: match patch.download_options {
            Some(_) => box_defaults.download.clone(),
            None => old.download.to_string(),
        },
        upload: match patch.upload_options {
            Some(_) => box_defaults.upload.clone(),
            None => old.upload.to_string(),
        },
    };
    checked_subscriber(live, &old.id, &body, &start)
}

/// A bulk apply's changes, every record checked; all errors at once.
fn apply_changes(live: &LiveShaping<Asker>, body: &ApplyBody) -> Result<Vec<Change>, Reply> {
    let mut check = Checker::new(BODY);
    let mut changes = Vec::new();
    let body_nodes: Vec<String> = body
        .nodes
        .iter()
        .filter_map(|n| n.id.as_deref().map(|i| i.trim().to_owned()))
        .collect();
    for (i, n) in body.nodes.iter().enumerate() {
        if let Some(node) = check.node(&n.record(format!("nodes[{i}]"), None)) {
            changes.push(Change::Node(node));
        }
    }
    let registry = live.registry();
    let mut ids = std::collections::HashSet::new();
    for (i, s) in body.subscribers.iter().enumerate() {
        let record = s.record(format!("subscribers[{i}]"), None);
        if let Some(id) = &s.id {
            if !ids.insert(id.trim().to_owned()) {
                check.error(
                    format!("subscribers[{i}] ({id})"),
                    &record.id,
                    "the ID appears twice in this change",
                );
            }
        }
        if let Some(s) = check.subscriber(
            &record,
            live.defaults(),
            |n| registry.node(n).is_some() || body_nodes.iter().any(|b| b == n),
            || registry.nodes().map(|n| n.id.clone()).collect(),
        ) {
            changes.push(Change::Subscriber(s));
        }
    }
    if !check.errors.is_empty() {
        return Err(Reply::error(
            422,
            "the change is not valid; nothing was applied",
            &check.errors,
        ));
    }
    changes.extend(body.remove.iter().cloned().map(Change::RemoveSubscriber));
    changes.extend(body.remove_nodes.iter().cloned().map(Change::RemoveNode));
    Ok(changes)
}

fn workers_json(s: &Snapshot) -> Json {
    let workers: Vec<Json> = s
        .workers
        .iter()
        .map(|w| {
            let c = &w.counters;
            let drops: serde_json::Map<String, Json> = sheetcake_dataplane::worker::DropReason::ALL
                .iter()
                .map(|r| (r.name().to_owned(), json!(c.dropped(*r))))
                .collect();
            json!({
                "worker": w.worker, "core": w.core, "busy_ratio": w.busy_ratio,
                "received_packets": c.rx_packets, "sent_packets": c.tx_packets,
                "shaped_packets": c.shaped_packets, "unshaped_packets": c.unshaped_packets,
                "handed_off_packets": c.handed_off, "taken_over_packets": c.taken_over,
                "queued_packets": c.queued, "queued_limit_packets": w.queued_limit,
                "tx_waiting_packets": c.tx_waiting,
                "handoff_ring_packets": w.handoff_waiting,
                "handoff_ring_capacity_packets": w.handoff_capacity,
                "mbufs_in_use": w.mbufs_in_use(), "flows": c.flows_in_use,
                "subscribers": w.subscribers, "command_queue_depth": w.command_queue_depth,
                "dropped_packets": drops,
            })
        })
        .collect();
    json!({ "workers": workers })
}

fn ports_json(s: &Snapshot) -> Json {
    let ports: Vec<Json> = s
        .ports
        .iter()
        .map(|p| {
            let t = &p.stats;
            json!({
                "pair": p.pair, "side": p.side, "device": p.device, "driver": p.driver,
                "received_packets": t.rx_packets, "received_bytes": t.rx_bytes,
                "sent_packets": t.tx_packets, "sent_bytes": t.tx_bytes,
                "missed_packets": t.rx_missed, "receive_errors": t.rx_errors,
                "send_errors": t.tx_errors, "no_mbuf": t.rx_no_mbuf,
            })
        })
        .collect();
    json!({ "ports": ports })
}

/// What became of a call.
pub enum Handled {
    /// Answered now.
    Reply(Reply),
    /// A change was sent; answer once applied (or after [`APPLY_WAIT`]).
    Sent(Outcome),
    /// The answer comes with the worker's report.
    Waiting,
    /// A reload: the control loop re-reads the configuration file and the subscriber source
    /// (it holds the running configuration) and answers.
    Reload,
}

/// Handles one call. Changes come back as [`Handled::Sent`] for the caller to wait on (and to
/// re-share parent nodes).
pub fn handle(route: Route, reply: &Sender<Reply>, cx: &mut Context<'_>) -> Handled {
    use Handled::Reply as R;
    match cx.live.as_deref_mut() {
        Some(live) => shaping(route, reply, live, cx.snapshot, cx.top),
        // Without shaping only the box's own counters exist.
        None => match route {
            Route::Workers => R(Reply::json(200, &workers_json(cx.snapshot))),
            Route::Ports => R(Reply::json(200, &ports_json(cx.snapshot))),
            // The configuration can be reloaded without shaping.
            Route::Reload => Handled::Reload,
            _ => R(Reply::message(
                503,
                "this box bridges without shaping: set [shaping] subscribers in the \
                 configuration (the file may list no subscriber) to shape and manage subscribers",
            )),
        },
    }
}

/// Every route, with shaping on.
fn shaping(
    route: Route,
    reply: &Sender<Reply>,
    live: &mut LiveShaping<Asker>,
    snapshot: &Snapshot,
    top: &[TopEntry],
) -> Handled {
    use Handled::Reply as R;
    let sent = |result: Result<Sent, Refusal>, created: bool| match result {
        Ok(sent) => Handled::Sent(Outcome { sent, created }),
        Err(r) => R(refusal(r)),
    };
    match route {
        Route::Workers => R(Reply::json(200, &workers_json(snapshot))),
        Route::Ports => R(Reply::json(200, &ports_json(snapshot))),
        Route::ListSubscribers { offset, limit } => {
            let registry = live.registry();
            let page: Vec<Json> = registry
                .entries()
                .skip(offset)
                .take(limit)
                .map(|e| subscriber_json(&e.subscriber, e.owner.worker))
                .collect();
            R(Reply::json(
                200,
                &json!({ "total": registry.len(), "offset": offset, "subscribers": page }),
            ))
        }
        Route::GetSubscriber(id) => match live.registry().get(&id) {
            Some(e) => R(Reply::json(
                200,
                &subscriber_json(&e.subscriber, e.owner.worker),
            )),
            None => R(Reply::message(
                404,
                &format!("no subscriber has the ID {id:?}"),
            )),
        },
        Route::PutSubscriber(id, body) => {
            match checked_subscriber(live, &id, &body, live.defaults()) {
                Ok(s) => {
                    let created = live.registry().get(&id).is_none();
                    sent(live.merge(vec![Change::Subscriber(s)], BODY), created)
                }
                Err(reply) => R(reply),
            }
        }
        Route::PatchSubscriber(id, patch) => {
            let Some(old) = live.registry().get(&id).map(|e| e.subscriber.clone()) else {
                return R(Reply::message(
                    404,
                    &format!("no subscriber has the ID {id:?}"),
                ));
            };
            match patched(live, &old, &patch) {
                Ok(s) => sent(live.merge(vec![Change::Subscriber(s)], BODY), false),
                Err(reply) => R(reply),
            }
        }
        Route::DeleteSubscriber(id) => {
            sent(live.merge(vec![Change::RemoveSubscriber(id)], BODY), false)
        }
        Route::SubscriberStats { id, text } => {
            let asker = Asker::Api {
                reply: reply.clone(),
                text,
                deadline: Instant::now() + STATS_WAIT,
            };
            if live.registry().get(&id).is_none() {
                R(Reply::message(
                    404,
                    &format!("no subscriber has the ID {id:?}"),
                ))
            } else if live.request_report(&id, Waiter::Caller(id.clone(), asker)) {
                Handled::Waiting
            } else {
                R(Reply::message(
                    503,
                    "the owner worker's command queue is full (a large change is being \
                     applied); try again in a moment",
                ))
            }
        }
        Route::Top { count } => {
            let gauges = live.gauges();
            let list: Vec<Json> = top
                .iter()
                .take(count)
                .map(|t| {
                    let backlog = live.registry().get(&t.id).map_or(t.backlog, |e| {
                        let g = &gauges[e.owner.worker as usize];
                        let i = 2 * e.owner.local as usize;
                        [g[i].backlog_bytes(), g[i + 1].backlog_bytes()]
                    });
                    json!({
                        "id": t.id,
                        "download_bytes_per_second": t.rates[0],
                        "upload_bytes_per_second": t.rates[1],
                        "download_backlog_bytes": backlog[0],
                        "upload_backlog_bytes": backlog[1],
                    })
                })
                .collect();
            R(Reply::json(200, &json!({ "subscribers": list })))
        }
        Route::Apply(body) if body.replace => {
            if !body.remove.is_empty() || !body.remove_nodes.is_empty() {
                return R(Reply::message(
                    422,
                    "with \"replace\": true the lists are the whole new state; leave \"remove\" \
                     and \"remove_nodes\" empty",
                ));
            }
            let records = Records {
                subscribers: body
                    .subscribers
                    .iter()
                    .enumerate()
                    .map(|(i, s)| s.record(format!("subscribers[{i}]"), None))
                    .collect(),
                nodes: body
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| n.record(format!("nodes[{i}]"), None))
                    .collect(),
            };
            match SubscriberSet::from_records(&records, BODY, live.defaults()) {
                Ok(set) => sent(live.replace(set), false),
                Err(e) => R(Reply::error(
                    422,
                    "the change is not valid; nothing was applied",
                    &e.0,
                )),
            }
        }
        Route::Apply(body) => match apply_changes(live, &body) {
            Ok(changes) => sent(live.merge(changes, BODY), false),
            Err(reply) => R(reply),
        },
        Route::Reload => Handled::Reload,
        Route::ListNodes => {
            let nodes: Vec<Json> = live.registry().nodes().map(node_json).collect();
            R(Reply::json(200, &json!({ "nodes": nodes })))
        }
        Route::GetNode(id) => match live.registry().node(&id) {
            Some(n) => R(Reply::json(200, &node_json(n))),
            None => R(Reply::message(404, &format!("no node has the ID {id:?}"))),
        },
        Route::PutNode(id, body) => match checked_node(&id, &body) {
            Ok(n) => {
                let created = live.registry().node(&id).is_none();
                sent(live.merge(vec![Change::Node(n)], BODY), created)
            }
            Err(reply) => R(reply),
        },
        Route::PatchNode(id, patch) => {
            let Some(old) = live.registry().node(&id).cloned() else {
                return R(Reply::message(404, &format!("no node has the ID {id:?}")));
            };
            let body = NodeJson {
                id: None,
                download: patch
                    .download
                    .unwrap_or_else(|| rate_text(Some(old.download))),
                upload: patch.upload.unwrap_or_else(|| rate_text(Some(old.upload))),
            };
            match checked_node(&id, &body) {
                Ok(n) => sent(live.merge(vec![Change::Node(n)], BODY), false),
                Err(reply) => R(reply),
            }
        }
        Route::DeleteNode(id) => sent(live.merge(vec![Change::RemoveNode(id)], BODY), false),
    }
}

/// The answer to a change, once applied or after [`APPLY_WAIT`].
pub fn change_reply(outcome: &Outcome, applied: bool) -> Reply {
    let status = match (applied, outcome.created) {
        (false, _) => 202,
        (true, true) => 201,
        (true, false) => 200,
    };
    Reply::json(status, &summary_json(&outcome.sent, applied))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::NodePatch;
    use crate::registry::Registry;
    use sheetcake_dataplane::shaping::{instance_gauges, Command, ControlChannel};

    /// Shaping state with one worker that never runs: commands just queue.
    fn live() -> LiveShaping<Asker> {
        LiveShaping::new(
            None,
            crate::subscribers::test_defaults(),
            Registry::new(1, 16),
            vec![ControlChannel::new(64)],
            vec![instance_gauges(16)],
        )
    }

    fn call(live: &mut LiveShaping<Asker>, route: Route) -> (u16, Json) {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let snapshot = Snapshot::default();
        let mut cx = Context {
            live: Some(live),
            snapshot: &snapshot,
            top: &[],
        };
        match handle(route, &tx, &mut cx) {
            Handled::Reply(r) => (r.status, serde_json::from_str(&r.body).unwrap()),
            Handled::Sent(o) => {
                let r = change_reply(&o, true);
                (r.status, serde_json::from_str(&r.body).unwrap())
            }
            Handled::Waiting => panic!("no statistics asked for"),
            Handled::Reload => panic!("no reload asked for"),
        }
    }

    fn body(json: &str) -> SubscriberJson {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let mut live = live();
        let (status, v) = call(
            &mut live,
            Route::PutSubscriber(
                "alice".into(),
                body(
                    r#"{"addresses": ["100.64.0.7"], "download": "20mbit", "upload": "5mbit",
                        "download_options": "diffserv3 nat memlimit 4mb"}"#,
                ),
            ),
        );
        assert_eq!((status, v["added"].as_u64()), (201, Some(1)), "{v}");
        let before = live.registry().get("alice").unwrap().subscriber.clone();

        // A new rate keeps the options the subscriber was given, not the box defaults.
        let patch = SubscriberPatch {
            download: Some("50mbit".into()),
            ..SubscriberPatch::default()
        };
        let (status, v) = call(&mut live, Route::PatchSubscriber("alice".into(), patch));
        assert_eq!((status, v["changed"].as_u64()), (200, Some(1)), "{v}");
        let after = live.registry().get("alice").unwrap().subscriber.clone();
        let mut expected = before.download;
        expected.bandwidth = Some(50_000_000 / 8);
        assert_eq!(after.download, expected);
        assert_eq!(after.upload, before.upload);
        assert_eq!(after.prefixes, before.prefixes);

        // New options start from the defaults again, and keep the rate.
        let patch = SubscriberPatch {
            download_options: Some("besteffort".into()),
            ..SubscriberPatch::default()
        };
        call(&mut live, Route::PatchSubscriber("alice".into(), patch));
        let d = live.registry().get("alice").unwrap().subscriber.download;
        let mut want =
            sheetcake_cake::CakeConfig::parse("diffserv4 triple-isolate besteffort").unwrap();
        want.bandwidth = Some(50_000_000 / 8);
        assert_eq!(d, want);

        // A bad field refuses the whole patch.
        let patch = SubscriberPatch {
            upload: Some("2mbit".into()),
            addresses: Some(vec!["100.64.0.0/33".into()]),
            ..SubscriberPatch::default()
        };
        let (status, v) = call(&mut live, Route::PatchSubscriber("alice".into(), patch));
        assert_eq!(status, 422, "{v}");
        assert_eq!(v["errors"][0]["key"], "subscriber (alice).addresses", "{v}");
        assert_eq!(
            live.registry().get("alice").unwrap().subscriber.upload,
            before.upload
        );
    }

    /// The kinds of the commands queued for the (never running) worker, taking them.
    fn drain(live: &LiveShaping<Asker>) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        while let Some(c) = live.channels()[0].commands.pop() {
            kinds.push(match c {
                Command::Configure { .. } => "configure",
                Command::Upsert { .. } => "upsert",
                Command::Tables(_) => "tables",
                Command::Remove { .. } => "remove",
                _ => "other",
            });
        }
        kinds
    }

    /// A subscriber on the defaults' tins is configured in place in its slot's idle instances
    /// (nothing built); one with other tins gets instances built; after its removal the slot
    /// holds idle ones again.
    #[test]
    fn changes_that_keep_the_tins_build_no_instance() {
        let mut live = live();
        let put = |options: &str| {
            Route::PutSubscriber(
                "alice".into(),
                body(&format!(
                    r#"{{"addresses": ["100.64.0.7"], "download": "20mbit", "upload": "5mbit"{options}}}"#
                )),
            )
        };
        assert_eq!(call(&mut live, put("")).0, 201);
        assert_eq!(drain(&live), ["configure", "tables"]);
        // Other tins: built. Back to the defaults' tins: built again (the slot holds diffserv8).
        assert_eq!(
            call(&mut live, put(r#", "download_options": "diffserv8""#)).0,
            200
        );
        assert_eq!(drain(&live), ["upsert"]);
        assert_eq!(
            call(&mut live, put(r#", "download_options": "diffserv8 nat""#)).0,
            200
        );
        assert_eq!(drain(&live), ["configure"]);
        assert_eq!(call(&mut live, put("")).0, 200);
        assert_eq!(drain(&live), ["upsert"]);
        assert_eq!(
            call(&mut live, Route::DeleteSubscriber("alice".into())).0,
            200
        );
        assert_eq!(drain(&live), ["tables", "remove"]);
        assert_eq!(call(&mut live, put("")).0, 201);
        assert_eq!(drain(&live), ["configure", "tables"]);
    }

    /// Every node route with good and bad input, as docs/api.md promises: 201 then 200, the
    /// rate in tc's notation, 422 for a bad rate or an unknown node, 409 for deleting a node
    /// that still has members, 404 for a node that does not exist.
    #[test]
    fn nodes_are_created_read_changed_and_removed_once_empty() {
        let mut live = live();
        let node = |down: &str| NodeJson {
            id: None,
            download: down.into(),
            upload: "1gbit".into(),
        };
        let (status, v) = call(&mut live, Route::PutNode("sg-1".into(), node("30mbit")));
        assert_eq!(status, 201, "{v}");
        let (status, v) = call(&mut live, Route::GetNode("sg-1".into()));
        assert_eq!(
            (status, v["download"].as_str()),
            (200, Some("30Mbit")),
            "{v}"
        );
        let (status, v) = call(&mut live, Route::ListNodes);
        assert_eq!(
            (status, v["nodes"].as_array().map(Vec::len)),
            (200, Some(1))
        );

        // Rates out of range name the field; nothing changes.
        let (status, v) = call(&mut live, Route::PutNode("sg-1".into(), node("100kbit")));
        assert_eq!(status, 422, "{v}");
        assert!(v["errors"][0]["key"]
            .as_str()
            .is_some_and(|k| k.ends_with(".download")));
        let patch = NodePatch {
            download: Some("40mbit".into()),
            upload: None,
        };
        let (status, v) = call(&mut live, Route::PatchNode("sg-1".into(), patch));
        assert_eq!(status, 200, "{v}");
        let (_, v) = call(&mut live, Route::GetNode("sg-1".into()));
        assert_eq!(
            (v["download"].as_str(), v["upload"].as_str()),
            (Some("40Mbit"), Some("1Gbit"))
        );

        // Members must name a node that exists.
        let member = |node: &str| {
            body(&format!(
                r#"{{"addresses": ["100.64.0.7"], "download": "20mbit", "upload": "5mbit", "node": "{node}"}}"#
            ))
        };
        let (status, v) = call(
            &mut live,
            Route::PutSubscriber("alice".into(), member("sg-9")),
        );
        assert_eq!(status, 422, "{v}");
        let (status, v) = call(
            &mut live,
            Route::PutSubscriber("alice".into(), member("sg-1")),
        );
        assert_eq!(status, 201, "{v}");

        // A node with members stays; once empty it goes.
        let (status, v) = call(&mut live, Route::DeleteNode("sg-1".into()));
        assert_eq!(status, 409, "{v}");
        assert!(live.registry().node("sg-1").is_some());
        assert_eq!(
            call(&mut live, Route::DeleteSubscriber("alice".into())).0,
            200
        );
        let (status, v) = call(&mut live, Route::DeleteNode("sg-1".into()));
        assert_eq!(status, 200, "{v}");
        for route in [
            Route::GetNode("sg-1".into()),
            Route::DeleteNode("sg-1".into()),
            Route::PatchNode("sg-1".into(), NodePatch::default()),
        ] {
            assert_eq!(call(&mut live, route).0, 404);
        }
    }

    #[test]
    fn the_body_may_repeat_the_path_id_but_not_contradict_it() {
        let mut live = live();
        let put = |id: &str| {
            Route::PutSubscriber(
                "alice".into(),
                body(&format!(
                    r#"{{"id": "{id}", "addresses": ["100.64.0.7"], "download": "1mbit", "upload": "1mbit"}}"#
                )),
            )
        };
        assert_eq!(call(&mut live, put("alice")).0, 201);
        let (status, v) = call(&mut live, put("bob"));
        assert_eq!(status, 422, "{v}");
        assert!(v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("differs from"));
        let node = NodeJson {
            id: Some("sg-2".into()),
            download: "1gbit".into(),
            upload: "1gbit".into(),
        };
        assert_eq!(call(&mut live, Route::PutNode("sg-1".into(), node)).0, 422);
    }
}
