//! The HTTP side of the API: a few threads that accept requests, check the token and the body
//! size, parse paths and JSON bodies, and pass typed [`Call`]s to the control thread, which
//! alone touches the shaping state (`handlers.rs`). `/metrics` and `/health` are answered here
//! from the last [`Snapshot`], so a scrape never waits for the control thread, let alone a
//! worker. A slow or failing client holds one API thread, never the control thread: bodies are
//! read here, with a size limit, before anything is asked of it.
//!
//! See `docs/api.md` and `docs/openapi.yaml` for the routes.

use crate::config::Api;
use crate::json_source::{NodeJson, SubscriberJson};
use crate::metrics::{encode, Snapshot};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use serde::Deserialize;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// API threads: requests served at once. Four lets a scrape and a CLI `watch` through while a
/// large bulk body is being uploaded.
const THREADS: usize = 4;

/// How long an API thread waits for the control thread's answer (a bulk apply of a million
/// subscribers takes seconds).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(120);

/// A PATCH of a subscriber: only the fields given change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberPatch {
    pub addresses: Option<Vec<String>>,
    pub download: Option<String>,
    pub upload: Option<String>,
    pub download_options: Option<String>,
    pub upload_options: Option<String>,
    /// `null` removes the subscriber from its node.
    #[serde(default, deserialize_with = "present")]
    pub node: Option<Option<String>>,
}

/// A PATCH of a node.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodePatch {
    pub download: Option<String>,
    pub upload: Option<String>,
}

/// A field that may be absent (outer `None`) or `null` (inner `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A bulk apply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyBody {
    #[serde(default)]
    pub subscribers: Vec<SubscriberJson>,
    #[serde(default)]
    pub nodes: Vec<NodeJson>,
    #[serde(default)]
    pub remove: Vec<String>,
    #[serde(default)]
    pub remove_nodes: Vec<String>,
    /// The lists are the whole new state.
    #[serde(default)]
    pub replace: bool,
}

/// What the control thread is asked to do.
#[derive(Debug)]
pub enum Route {
    ListSubscribers { offset: usize, limit: usize },
    GetSubscriber(String),
    PutSubscriber(String, SubscriberJson),
    PatchSubscriber(String, SubscriberPatch),
    DeleteSubscriber(String),
    SubscriberStats { id: String, text: bool },
    Top { count: usize },
    Apply(ApplyBody),
    Reload,
    ListNodes,
    GetNode(String),
    PutNode(String, NodeJson),
    PatchNode(String, NodePatch),
    DeleteNode(String),
    Workers,
    Ports,
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: format!("{value:#}\n"),
        }
    }

    /// A plain-text answer.
    pub fn text(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }

    /// An error answer: a summary and the errors, each with file, line, key and message.
    pub fn error(status: u16, summary: &str, errors: &[crate::config::ConfigError]) -> Reply {
        let errors: Vec<serde_json::Value> = errors
            .iter()
            .map(|e| {
                serde_json::json!({
                    "file": e.file, "line": e.line, "key": e.key, "message": e.message
                })
            })
            .collect();
        Reply::json(
            status,
            &serde_json::json!({ "error": summary, "errors": errors }),
        )
    }

    /// An error with one message and no record.
    pub fn message(status: u16, summary: &str) -> Reply {
        Reply::error(status, summary, &[])
    }
}

/// A request for the control thread, with where the answer goes.
pub struct Call {
    pub route: Route,
    pub reply: Sender<Reply>,
}

/// What the API threads share with the control thread.
pub struct Shared {
    /// The last snapshot, for `/metrics` and `/health`.
    pub snapshot: Mutex<Arc<Snapshot>>,
    /// Who may call and how much they may send: read for every request, so a reload that
    /// rotates the token or changes the body limit applies to the next request.
    pub access: Mutex<Access>,
}

/// The request checks the configuration sets (`[api] token` and `max_body_bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The bearer token every request but `GET /health` must carry.
    pub token: Option<String>,
    /// Largest body, bytes.
    pub max_body_bytes: u64,
}

impl Access {
    /// The checks `api` asks for.
    pub fn of(api: &Api) -> Access {
        Access {
            token: api.token.clone(),
            max_body_bytes: api.max_body_bytes,
        }
    }
}

/// The running API: its threads stop when the process does (they block in `accept`).
pub struct ApiServer {
    /// Where it listens (the port is known even when 0 was asked for).
    pub address: std::net::SocketAddr,
    server: Arc<tiny_http::Server>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// Starts listening; calls for the control thread arrive on the returned receiver.
pub fn start(
    listen: std::net::SocketAddr,
    shared: Arc<Shared>,
) -> Result<(ApiServer, Receiver<Call>), String> {
    let server = tiny_http::Server::http(listen)
        .map_err(|e| format!("the API cannot listen on {listen}: {e} (see [api] listen)"))?;
    let address = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("the API listens on {listen}, which is not an IP address"))?;
    let server = Arc::new(server);
    let (calls, receiver) = crossbeam_channel::bounded(64);
    for i in 0..THREADS {
        let server = Arc::clone(&server);
        let shared = Arc::clone(&shared);
        let calls: Sender<Call> = calls.clone();
        std::thread::Builder::new()
            .name(format!("api{i}"))
            .spawn(move || {
                while let Ok(request) = server.recv() {
                    serve(request, &shared, &calls);
                }
            })
            .map_err(|e| format!("cannot start an API thread: {e}"))?;
    }
    Ok((ApiServer { address, server }, receiver))
}

fn respond(request: tiny_http::Request, reply: Reply) {
    let header = tiny_http::Header::from_bytes("Content-Type", reply.content_type)
        .expect("a static header is valid");
    let response = tiny_http::Response::from_string(reply.body)
        .with_status_code(reply.status)
        .with_header(header);
    // A client that went away is not our problem.
    let _ = request.respond(response);
}

/// `%XX` escapes decoded; `None` if the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The call a request asks for (its body parsed), or why it cannot be one. `path` is the
/// request's path as written, for messages; `segments` its decoded parts.
fn route(
    method: &tiny_http::Method,
    path: &str,
    segments: &[&str],
    query: &str,
    body: &[u8],
) -> Result<Route, Reply> {
    use tiny_http::Method::{Delete, Get, Patch, Post, Put};
    let query: Vec<(String, String)> = query
        .split('&')
        .filter(|q| !q.is_empty())
        .map(|q| {
            let (k, v) = q.split_once('=').unwrap_or((q, ""));
            (
                percent_decode(k).unwrap_or_default(),
                percent_decode(&v.replace('+', " ")).unwrap_or_default(),
            )
        })
        .collect();
    let number = |name: &str, default: usize, max: usize| -> Result<usize, Reply> {
        match query.iter().find(|(k, _)| k == name) {
            None => Ok(default),
            Some((_, v)) => match v.parse::<usize>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(Reply::message(
                    400,
                    &format!("query parameter {name}={v:?}: expected a whole number up to {max}"),
                )),
            },
        }
    };

    fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Reply> {
        serde_json::from_slice(body).map_err(|e| {
            Reply::error(
                400,
                "the body is not the JSON expected",
                &[crate::json_source::syntax_error(
                    "request body",
                    "(body)",
                    1,
                    &e,
                )],
            )
        })
    }

    Ok(match (method, segments) {
        (Get, ["v1", "subscribers"]) => Route::ListSubscribers {
            offset: number("offset", 0, usize::MAX)?,
            limit: number("limit", 1000, 100_000)?,
        },
        (Get, ["v1", "subscribers", id]) => Route::GetSubscriber((*id).into()),
        (Put, ["v1", "subscribers", id]) => Route::PutSubscriber((*id).into(), parse(body)?),
        (Patch, ["v1", "subscribers", id]) => Route::PatchSubscriber((*id).into(), parse(body)?),
        (Delete, ["v1", "subscribers", id]) => Route::DeleteSubscriber((*id).into()),
        (Get, ["v1", "subscribers", id, "stats"]) => Route::SubscriberStats {
            id: (*id).into(),
            text: query.iter().any(|(k, v)| k == "format" && v == "text"),
        },
        (Get, ["v1", "top"]) => Route::Top {
            count: number("count", 20, 1000)?,
        },
        (Post, ["v1", "apply"]) => Route::Apply(parse(body)?),
        (Post, ["v1", "reload"]) => Route::Reload,
        (Get, ["v1", "nodes"]) => Route::ListNodes,
        (Get, ["v1", "nodes", id]) => Route::GetNode((*id).into()),
        (Put, ["v1", "nodes", id]) => Route::PutNode((*id).into(), parse(body)?),
        (Patch, ["v1", "nodes", id]) => Route::PatchNode((*id).into(), parse(body)?),
        (Delete, ["v1", "nodes", id]) => Route::DeleteNode((*id).into()),
        (Get, ["v1", "workers"]) => Route::Workers,
        (Get, ["v1", "ports"]) => Route::Ports,
        (_, ["health" | "metrics"])
        | (
            _,
            ["v1", "subscribers" | "nodes" | "top" | "apply" | "reload" | "workers" | "ports", ..],
        ) => {
            return Err(Reply::message(
                405,
                &format!("{method} is not allowed on {path}"),
            ))
        }
        _ => {
            return Err(Reply::message(
                404,
                &format!("no route {path}; see docs/api.md"),
            ))
        }
    })
}

/// Compares a secret in time that depends on its length only, so the time an answer takes
/// does not tell a guesser how many leading characters were right.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

fn serve(mut request: tiny_http::Request, shared: &Shared, calls: &Sender<Call>) {
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let method = request.method().clone();
    let Some(segments) = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect::<Option<Vec<String>>>()
    else {
        return respond(request, Reply::message(400, "the path is not valid UTF-8"));
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    use tiny_http::Method::Get;

    if matches!((&method, segments.as_slice()), (Get, ["health"])) {
        let s = shared.snapshot.lock().clone();
        // Before the first refresh the snapshot knows no workers: starting too.
        let ready = !s.workers.is_empty() && s.workers_running == s.workers.len();
        let body = serde_json::json!({
            "status": if ready { "ok" } else { "starting" }, "version": s.version,
            "uptime_seconds": s.uptime_seconds, "shaping": s.shaping,
            "subscribers": s.subscribers, "workers": s.workers.len(),
            "workers_running": s.workers_running, "changes_in_flight": s.changes_in_flight,
        });
        return respond(request, Reply::json(200, &body));
    }
    let access = shared.access.lock().clone();
    if let Some(token) = &access.token {
        let expected = format!("Bearer {token}");
        let given = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .map(|h| h.value.as_str().to_owned());
        if !given.is_some_and(|g| same_secret(g.as_bytes(), expected.as_bytes())) {
            return respond(
                request,
                Reply::message(
                    401,
                    "this API needs the header Authorization: Bearer <token>",
                ),
            );
        }
    }
    if matches!((&method, segments.as_slice()), (Get, ["metrics"])) {
        let s = shared.snapshot.lock().clone();
        return respond(
            request,
            Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: encode(&s),
            },
        );
    }

    // The body, read here with a limit, so the control thread only ever sees whole requests.
    let mut body = Vec::new();
    let limit = access.max_body_bytes;
    if request.body_length().is_some_and(|n| n as u64 > limit) {
        return respond(
            request,
            Reply::message(
                413,
                &format!("the body is larger than api.max_body_bytes ({limit} bytes)"),
            ),
        );
    }
    let read = request.as_reader().take(limit + 1).read_to_end(&mut body);
    if let Err(e) = read {
        return respond(
            request,
            Reply::message(400, &format!("cannot read the body: {e}")),
        );
    }
    if body.len() as u64 > limit {
        return respond(
            request,
            Reply::message(
                413,
                &format!("the body is larger than api.max_body_bytes ({limit} bytes)"),
            ),
        );
    }
    let route = match route(&method, path, &segments, query, &body) {
        Ok(r) => r,
        Err(reply) => return respond(request, reply),
    };
    let (reply, answer) = crossbeam_channel::bounded(1);
    if calls.send(Call { route, reply }).is_err() {
        return respond(request, Reply::message(503, "sheetcake is stopping"));
    }
    let reply = answer
        .recv_timeout(CONTROL_TIMEOUT)
        .unwrap_or_else(|_| Reply::message(503, "the control thread did not answer in time"));
    respond(request, reply);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(method, path)` of every operation `docs/openapi.yaml` describes.
    fn documented_operations() -> Vec<(String, String)> {
        let doc = include_str!("../../docs/openapi.yaml");
        let mut ops = Vec::new();
        let mut path = None;
        for line in doc.lines() {
            if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
                path = Some(format!("/{p}"));
            } else if !line.starts_with("  ") {
                path = None;
            } else if let (Some(p), Some(m)) = (&path, line.strip_prefix("    ")) {
                if let Some(m) = m
                    .strip_suffix(':')
                    .filter(|m| ["get", "put", "patch", "post", "delete"].contains(m))
                {
                    ops.push((m.to_ascii_uppercase(), p.clone()));
                }
            }
        }
        ops
    }

    fn routed(method: &str, path: &str, body: &[u8]) -> Result<Route, Reply> {
        let method: tiny_http::Method = method.parse().unwrap();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        route(&method, path, &segments, "", body)
    }

    #[test]
    fn every_documented_operation_is_routed_and_nothing_else_is() {
        let ops = documented_operations();
        // One per `Route` (16), and /health and /metrics, which are answered before routing.
        assert_eq!(ops.len(), 18, "{ops:?}");
        let bodies: [&[u8]; 3] = [
            br#"{"addresses": ["10.0.0.1"], "download": "1mbit", "upload": "1mbit"}"#,
            br#"{"download": "1gbit", "upload": "1gbit"}"#,
            b"{}",
        ];
        for (method, path) in &ops {
            if path == "/health" || path == "/metrics" {
                continue;
            }
            let path = path.replace("{id}", "x");
            // Some body of the documented shape is accepted.
            let ok = bodies.iter().any(|b| routed(method, &path, b).is_ok());
            assert!(ok, "{method} {path} is documented but not routed");
        }
        // Node bodies: unknown fields and wrong types are refused before any handling.
        for body in [
            &br#"{"download": "1gbit", "upload": "1gbit", "capacity": 1}"#[..],
            br#"{"download": 1000, "upload": "1gbit"}"#,
            b"not json",
        ] {
            for method in ["PUT", "PATCH"] {
                let err = routed(method, "/v1/nodes/x", body).expect_err(method);
                assert_eq!(
                    err.status,
                    400,
                    "{method} {}",
                    String::from_utf8_lossy(body)
                );
            }
        }
        for (method, path, status) in [
            ("POST", "/v1/subscribers/x", 405),
            ("PUT", "/v1/workers", 405),
            ("GET", "/v1/subscriber", 404),
            ("GET", "/v2/subscribers", 404),
        ] {
            let documented = ops.iter().any(|(m, p)| m == method && p == path);
            assert!(!documented);
            let err = routed(method, path, b"").expect_err(path);
            assert_eq!(err.status, status, "{method} {path}");
        }
    }

    #[test]
    fn secrets_match_only_whole() {
        assert!(same_secret(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcdeX", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcde", b"0123456789abcdef"));
    }

    #[test]
    fn paths_are_percent_decoded() {
        assert_eq!(
            percent_decode("cmts-1%2Fsg-3").as_deref(),
            Some("cmts-1/sg-3")
        );
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn a_patch_tells_null_from_absent() {
        let p: SubscriberPatch = serde_json::from_str(r#"{"node": null}"#).unwrap();
        assert_eq!(p.node, Some(None));
        let p: SubscriberPatch = serde_json::from_str(r#"{"download": "5mbit"}"#).unwrap();
        assert_eq!(p.node, None);
        assert!(serde_json::from_str::<SubscriberPatch>(r#"{"plan": 1}"#).is_err());
    }
}
