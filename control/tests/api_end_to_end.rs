//! The operator's API against a running sheetcake on `net_af_packet`, with real Linux TCP
//! through network namespaces: creating a subscriber starts shaping its traffic, changing its
//! rate changes its throughput without losing what is queued, deleting it returns its traffic
//! to pass-through; bad requests are refused whole with the reason; a real Prometheus scrapes
//! the box and a query returns the subscriber's byte counter; a bulk load of 100,000
//! subscribers from a LibreQoS `ShapedDevices.csv` succeeds, and one bad row applies nothing;
//! a bulk apply changes every record or none, and its replace form removes the rest; the node
//! routes take good input and refuse bad; the worker, port and busiest-subscriber counters
//! count real traffic; `sheetcake ctl` applies files, reloads, watches and completes; a watched
//! subscriber file applies by itself;
//! the hooks of `deploy/hooks` keep a client's subscriber in step with its leases (the Kea
//! script, run as Kea's run_script library runs it and in the real Kea for a real DHCP client)
//! and its sessions (the FreeRADIUS module and policy, in the real FreeRADIUS).

mod common;

use common::{assert_clean_shutdown, scratch, serial, Appliance, Host};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-0123456789abcdef";
const PLAN_MBIT: f64 = 20.0;

/// The test configuration with a subscriber file, a token-guarded API on a free port, and
/// `shaping` added to `[shaping]`.
fn config(name: &str, core: &str, access: &str, subscribers: &str, shaping: &str) -> String {
    let extra = format!(
        "[shaping]\nsubscribers = \"{subscribers}\"\n{shaping}\n[api]\nlisten = \
         \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\nmax_body_bytes = 1048576\n"
    );
    common::config(name, core, access, &extra)
}

/// The API's base URL, from the line sheetcake prints when it listens.
fn api_base(app: &Appliance) -> String {
    let line = app.wait_for("the API to listen", Duration::from_secs(10), |l| {
        l.starts_with("api: listening on ")
    });
    let url = line
        .trim_start_matches("api: listening on ")
        .split_whitespace()
        .next()
        .expect("an address");
    url.trim_end_matches('/').to_owned()
}

/// Sends a request; returns (status, body). Errors are statuses too.
fn call(method: &str, url: &str, body: Option<&str>, token: Option<&str>) -> (u16, String) {
    let mut request = ureq::request(method, url).timeout(Duration::from_secs(30));
    if let Some(t) = token {
        request = request.set("Authorization", &format!("Bearer {t}"));
    }
    let result = match body {
        Some(b) => request
            .set("Content-Type", "application/json")
            .send_string(b),
        None => request.call(),
    };
    match result {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

fn api(method: &str, url: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let (status, text) = call(method, url, body, Some(TOKEN));
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {url} -> {status}: not JSON ({e}):\n{text}"));
    (status, value)
}

/// A download of `seconds` through `sub` from `net`'s iperf3 server: bit/s received.
fn download(sub: &Host, net: &Host, seconds: u32) -> f64 {
    let mut srv = net
        .command("iperf3")
        .args(["-s", "-1", "-p", "5204"])
        .stdout(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(400));
    let out = sub
        .command("iperf3")
        .args(["-c", &net.address, "-p", "5204", "-R", "-J", "-P", "4"])
        .args(["-t", &seconds.to_string(), "-C", "cubic"])
        .output()
        .expect("iperf3 client");
    let _ = srv.wait();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 prints JSON");
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no goodput in {json}"))
}

/// Waits until `GET /health`, which needs no token, says "ok" (until every worker forwards,
/// and the first snapshot of their counters is taken, it says "starting"); returns its body.
fn forwarding(base: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = call("GET", &format!("{base}/health"), None, None);
        assert_eq!(status, 200, "{body}");
        if body.contains("\"status\": \"ok\"") || Instant::now() > deadline {
            break body;
        }
        assert!(body.contains("\"status\": \"starting\""), "{body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.contains("\"status\": \"ok\""), "{body}");
    body
}

/// sheetcake between `net` (on its core port) and `sub` (on its access port) on
/// `net_af_packet`, its subscribers from an empty TOML file in a new scratch directory
/// `scratch_name`: the box the traffic tests drive through the API. Returns the directory, the
/// running box and its API's base URL.
fn bridged_box(
    scratch_name: &str,
    name: &str,
    net: &Host,
    sub: &Host,
) -> (PathBuf, Appliance, String) {
    let dir = scratch(scratch_name);
    let subscribers = dir.join("subscribers.toml");
    std::fs::write(&subscribers, "# managed through the API\n").expect("write");
    let app = Appliance::start(
        &dir,
        &config(
            name,
            &net.vdev(0),
            &sub.vdev(1),
            &subscribers.display().to_string(),
            "",
        ),
    );
    let base = api_base(&app);
    (dir, app, base)
}

/// `sheetcake ctl` against the API at `base`, with the token: (success, stdout, stderr).
fn ctl(base: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sheetcake"))
        .args(["ctl", "--api", base, "--token", TOKEN])
        .args(args)
        .output()
        .expect("sheetcake ctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends each request (method, URL, body, or "" for none) with the token and asserts the
/// status of the answer and that it contains the text.
fn assert_answers<U: AsRef<str>>(cases: &[(&str, U, &str, u16, &str)]) {
    for (method, url, body, want, says) in cases {
        let url = url.as_ref();
        let body = (!body.is_empty()).then_some(*body);
        let (status, text) = call(method, url, body, Some(TOKEN));
        assert_eq!(status, *want, "{method} {url} {body:?}: {text}");
        assert!(text.contains(says), "{method} {url} {body:?}: {text}");
    }
}

/// Every subscriber (one page holds them all in these tests) and every node, as the API lists
/// them: what a refused change must leave as it was.
fn state(base: &str) -> (serde_json::Value, serde_json::Value) {
    let (status, subscribers) = api("GET", &format!("{base}/v1/subscribers"), None);
    assert_eq!(status, 200, "{subscribers}");
    let (status, nodes) = api("GET", &format!("{base}/v1/nodes"), None);
    assert_eq!(status, 200, "{nodes}");
    (subscribers, nodes)
}

fn worker_drops(base: &str, reason: &str) -> u64 {
    let (_, w) = api("GET", &format!("{base}/v1/workers"), None);
    w["workers"][0]["dropped_packets"][reason]
        .as_u64()
        .expect("a drop counter")
}

#[test]
fn the_api_shapes_changes_and_releases_a_subscriber_and_prometheus_scrapes_it() {
    let _serial = serial();
    let net = Host::new("scapin", "10.77.0.1/24");
    let sub = Host::new("scapsub", "10.77.0.2/24");
    let (dir, app, base) = bridged_box("api_e2e", "api", &net, &sub);

    // Health needs no token; everything else does.
    let body = forwarding(&base);
    assert!(body.contains("\"workers_running\": 1"), "{body}");
    let (status, _) = call("GET", &format!("{base}/v1/subscribers"), None, None);
    assert_eq!(status, 401);
    let (status, _) = call(
        "GET",
        &format!("{base}/v1/subscribers"),
        None,
        Some("wrong-token-123456"),
    );
    assert_eq!(status, 401);

    let unshaped = download(&sub, &net, 3);
    assert!(
        unshaped > 3.0 * PLAN_MBIT * 1e6,
        "without a subscriber the bridge should carry far more than the plan: {unshaped}"
    );

    // Create: shaped to the plan from the next frame.
    let alice = format!("{base}/v1/subscribers/alice");
    let body = format!(
        r#"{{"addresses": ["{}"], "download": "{PLAN_MBIT}mbit", "upload": "5mbit"}}"#,
        sub.address
    );
    let (status, v) = api("PUT", &alice, Some(&body));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["applied"], true, "{v}");
    assert_eq!(v["added"], 1, "{v}");
    let (status, v) = api("GET", &alice, None);
    assert_eq!(status, 200);
    assert_eq!(v["download"], "20Mbit", "{v}");
    assert!(
        v["download_cake"]
            .as_str()
            .unwrap()
            .contains("bandwidth 20Mbit"),
        "{v}"
    );
    let shaped = download(&sub, &net, 4);
    assert!(
        (0.80..1.02).contains(&(shaped / (PLAN_MBIT * 1e6))),
        "shaped download {shaped} bit/s against a {PLAN_MBIT} Mbit/s plan"
    );

    // Change the rate while a download runs: the queue is kept (no frame dropped as
    // "removed" or "flushed"), the counters continue, and the new rate holds.
    let (_, before) = api("GET", &format!("{alice}/stats"), None);
    let sent_before = before["download"]["sent_packets"].as_u64().unwrap();
    let removed_before = worker_drops(&base, "removed");
    let changer = {
        let alice = alice.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            api("PATCH", &alice, Some(r#"{"download": "10mbit"}"#))
        })
    };
    let during = download(&sub, &net, 6);
    let (status, v) = changer.join().expect("the PATCH thread");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["changed"], 1, "{v}");
    assert!(
        during < PLAN_MBIT * 1e6 && during > 8e6,
        "a download across the change from 20 to 10 Mbit/s averages between them: {during}"
    );
    assert_eq!(worker_drops(&base, "removed"), removed_before);
    let (_, after) = api("GET", &format!("{alice}/stats"), None);
    assert!(
        after["download"]["sent_packets"].as_u64().unwrap() > sent_before,
        "a rate change must not reset the subscriber's counters: {before} then {after}"
    );
    assert!(after["download"]["cake"]
        .as_str()
        .unwrap()
        .contains("bandwidth 10Mbit"));
    let slower = download(&sub, &net, 4);
    assert!(
        (0.80..1.02).contains(&(slower / 10e6)),
        "after the change: {slower} bit/s against 10 Mbit/s"
    );
    let (status, text) = call(
        "GET",
        &format!("{alice}/stats?format=text"),
        None,
        Some(TOKEN),
    );
    assert_eq!(status, 200);
    assert!(
        text.contains("subscriber alice download: cake bandwidth 10Mbit"),
        "{text}"
    );

    // Bad input: refused with the reason, nothing changed.
    let bob = format!("{base}/v1/subscribers/bob");
    assert_answers(&[
        (
            "PUT",
            &bob,
            r#"{"addresses": "10.77.0.9", "download": "1mbit", "upload": "1mbit"}"#,
            400,
            "invalid type",
        ),
        (
            "PUT",
            &bob,
            r#"{"addresses": ["10.77.0.9"], "download": "1mbit", "upload": "1mbit", "plan": 1}"#,
            400,
            "unknown field `plan`",
        ),
        (
            "PUT",
            &bob,
            r#"{"addresses": ["10.77.0.0/24"], "download": "1mbit", "upload": "1mbit"}"#,
            409,
            "overlaps 10.77.0.2/32 of subscriber \\\"alice\\\"",
        ),
        (
            "PUT",
            &bob,
            r#"{"addresses": ["10.77.0.9"], "download": "900gbit", "upload": "1mbit"}"#,
            422,
            "out of range",
        ),
        (
            "PUT",
            &bob,
            r#"{"addresses": ["10.77.0.9"], "download": "1mbit", "upload": "1mbit", "node": "nowhere"}"#,
            422,
            "no node has the ID",
        ),
        (
            "PATCH",
            &alice,
            r#"{"upload_options": "diffserv5"}"#,
            422,
            "not valid tc-cake options",
        ),
        ("PUT", &bob, "{not json", 400, "key must be a string"),
        ("DELETE", &bob, "", 404, "no subscriber has the ID"),
        (
            "POST",
            &format!("{base}/v1/subscribers"),
            "",
            405,
            "not allowed",
        ),
        ("GET", &format!("{base}/v2/things"), "", 404, "no route"),
    ]);
    let oversize = format!(
        r#"{{"subscribers": [], "pad": "{}"}}"#,
        "x".repeat(1_100_000)
    );
    let (status, text) = call(
        "POST",
        &format!("{base}/v1/apply"),
        Some(&oversize),
        Some(TOKEN),
    );
    assert_eq!(status, 413, "{text}");
    let (_, list) = api("GET", &format!("{base}/v1/subscribers"), None);
    assert_eq!(list["total"], 1, "{list}");

    // The CLI, over the same API.
    let (ok, out, err) = ctl(
        &base,
        &[
            "add",
            "bob",
            "--address",
            "10.77.0.9",
            "--download",
            "1mbit",
            "--upload",
            "1mbit",
        ],
    );
    assert!(ok && out.starts_with("applied: 1 added"), "{out}{err}");
    let (ok, out, _) = ctl(&base, &["list"]);
    assert!(
        ok && out.contains("bob") && out.contains("10.77.0.9/32") && out.contains("(2 of 2 shown)"),
        "{out}"
    );
    let (ok, out, err) = ctl(&base, &["set-rate", "bob", "--download", "2mbit"]);
    assert!(ok && out.contains("1 changed"), "{out}{err}");
    let (ok, out, _) = ctl(&base, &["show", "bob"]);
    assert!(
        ok && out.contains("subscriber bob download: cake bandwidth 2Mbit"),
        "{out}"
    );
    let (ok, _, err) = ctl(&base, &["set-rate", "bob", "--upload", "fast"]);
    assert!(
        !ok && err.contains("422") && err.contains("\"fast\" is not a rate"),
        "{err}"
    );
    let (ok, out, _) = ctl(&base, &["remove", "bob"]);
    assert!(ok && out.contains("1 removed"), "{out}");
    let (ok, out, _) = ctl(&base, &["health"]);
    assert!(ok && out.starts_with("ok version"), "{out}");

    // A real Prometheus scrapes the box; a query returns alice's byte counter.
    let (status, metrics) = call("GET", &format!("{base}/metrics"), None, Some(TOKEN));
    assert_eq!(status, 200);
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    use std::io::Write;
    check
        .stdin
        .take()
        .expect("piped")
        .write_all(metrics.as_bytes())
        .expect("write");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        metrics.contains(
            "sheetcake_subscriber_sent_bytes_total{subscriber=\"alice\",direction=\"download\"}"
        ),
        "{metrics}"
    );
    // The per-tin sum holds alice's bytes: iperf3's frames carry DSCP 0, Best Effort, and she
    // is the only subscriber being shaped.
    let series = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    let alice_bytes = series(
        "sheetcake_subscriber_sent_bytes_total{subscriber=\"alice\",direction=\"download\"}",
    );
    let tin_bytes =
        series("sheetcake_tin_sent_bytes_total{direction=\"download\",tin=\"Best Effort\"}");
    assert!(
        tin_bytes >= alice_bytes && alice_bytes > 1e6,
        "tin {tin_bytes} bytes, alice {alice_bytes}"
    );
    let value = scrape_with_prometheus(
        &dir,
        &base,
        "sheetcake_subscriber_sent_bytes_total{subscriber=\"alice\",direction=\"download\"}",
    );
    assert!(
        value > 1e6,
        "Prometheus should hold alice's download bytes (several MB by now): {value}"
    );

    // Delete: back to pass-through.
    let (status, v) = api("DELETE", &alice, None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["removed"], 1);
    let released = download(&sub, &net, 3);
    assert!(
        released > 3.0 * PLAN_MBIT * 1e6,
        "a deleted subscriber's traffic passes unshaped again: {released}"
    );

    let (status, output) = app.stop();
    assert_clean_shutdown(status, &output);
}

/// Runs a Prometheus server that scrapes `base` once a second, waits for `query` to have a
/// value, and returns it.
fn scrape_with_prometheus(dir: &std::path::Path, base: &str, query: &str) -> f64 {
    let target = base.trim_start_matches("http://");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sheetcake\n    \
             authorization:\n      credentials: {TOKEN}\n    static_configs:\n      - targets: \
             ['{target}']\n"
        ),
    )
    .expect("write prometheus.yml");
    let listen = "127.0.0.1:19090";
    let mut server = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus)");
    let url = format!(
        "http://{listen}/api/v1/query?query={}",
        query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let value = loop {
        if let Ok(r) = ureq::get(&url).timeout(Duration::from_secs(5)).call() {
            let v: serde_json::Value = r.into_json().unwrap_or_default();
            if let Some(n) = v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
            {
                break n;
            }
        }
        if Instant::now() > deadline {
            let targets = ureq::get(&format!("http://{listen}/api/v1/targets"))
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
                .unwrap_or_default();
            let _ = server.kill();
            panic!("Prometheus never returned {query}; its targets: {targets}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = server.kill();
    let _ = server.wait();
    value
}

const HEADER: &str = "Circuit ID,Circuit Name,Device ID,Device Name,Parent Node,MAC,IPv4,IPv6,Download Min Mbps,Upload Min Mbps,Download Max Mbps,Upload Max Mbps,Comment\n";

/// A ShapedDevices.csv of `n` circuits, one device each, in 100.64.0.0/10.
fn shaped_devices(n: usize, bad_row: Option<usize>) -> String {
    let mut text = String::from(HEADER);
    for i in 0..n {
        let address = format!("100.{}.{}.{}", 64 + (i >> 16), (i >> 8) & 255, i & 255);
        let download = if bad_row == Some(i) { "fast" } else { "100" };
        text.push_str(&format!(
            "c{i},Circuit {i},d{i},Device {i},,,{address},,10,2,{download},20,\n"
        ));
    }
    text
}

/// sheetcake on two `net_null` ports that receive nothing, its subscribers from a
/// `ShapedDevices.csv` in a new scratch directory `scratch_name` that holds only the header,
/// and `shaping` added to `[shaping]`: the box the API and hook tests drive. Returns the
/// directory, the CSV's path, the running box and its API's base URL.
fn idle_box(
    scratch_name: &str,
    name: &str,
    shaping: &str,
) -> (PathBuf, PathBuf, Appliance, String) {
    let dir = scratch(scratch_name);
    let csv = dir.join("ShapedDevices.csv");
    std::fs::write(&csv, HEADER).expect("write");
    let app = Appliance::start(
        &dir,
        &config(
            name,
            "net_null0,no-rx=1",
            "net_null1,no-rx=1",
            &csv.display().to_string(),
            shaping,
        ),
    );
    let base = api_base(&app);
    (dir, csv, app, base)
}

#[test]
fn a_bulk_load_of_100000_subscribers_applies_whole_or_not_at_all() {
    let _serial = serial();
    let (_, csv, app, base) = idle_box("api_bulk", "bulk", "subscribers_per_worker = 131072");
    std::fs::write(&csv, shaped_devices(100_000, None)).expect("write");
    let (status, v) = api("POST", &format!("{base}/v1/reload"), None);
    assert!(status == 200 || status == 202, "{v}");
    assert_eq!(v["added"], 100_000, "{v}");
    // Health counts from the metrics snapshot, refreshed every second.
    std::thread::sleep(Duration::from_millis(1500));
    let (_, health) = api("GET", &format!("{base}/health"), None);
    assert_eq!(health["subscribers"], 100_000, "{health}");
    let (_, one) = api("GET", &format!("{base}/v1/subscribers/c99999"), None);
    assert_eq!(one["addresses"][0], "100.65.134.159/32", "{one}");
    assert_eq!(one["download"], "100Mbit", "{one}");

    // One bad row (file line 4711 + 2: the header is line 1): nothing applied, the file, row
    // and column named.
    std::fs::write(
        &csv,
        shaped_devices(100_000, Some(4711)).replace("c0,", "x0,"),
    )
    .expect("write");
    let (status, v) = api("POST", &format!("{base}/v1/reload"), None);
    assert_eq!(status, 422, "{v}");
    let errors = v["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{v}");
    assert_eq!(errors[0]["file"], csv.display().to_string(), "{v}");
    assert_eq!(errors[0]["line"], 4713, "{v}");
    assert!(
        errors[0]["key"]
            .as_str()
            .unwrap()
            .contains("Download Max Mbps"),
        "{v}"
    );
    // The first row was renamed in the bad file; nothing of it applies.
    let (status, _) = api("GET", &format!("{base}/v1/subscribers/c0"), None);
    assert_eq!(status, 200);
    let (status, _) = api("GET", &format!("{base}/v1/subscribers/x0"), None);
    assert_eq!(status, 404);
    let (_, health) = api("GET", &format!("{base}/health"), None);
    assert_eq!(health["subscribers"], 100_000, "{health}");

    let (status, output) = app.stop();
    assert_clean_shutdown(status, &output);
}

/// The change summary's counts: added, changed, removed, unchanged.
fn counts(v: &serde_json::Value) -> [u64; 4] {
    ["added", "changed", "removed", "unchanged"]
        .map(|k| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}")))
}

/// `POST /v1/apply` as docs/api.md describes it: one body adds or replaces every record in it
/// (a subscriber may name a node of the same body) and removes those it names; a body with
/// bad records, or with addresses that overlap another subscriber's, is refused with every
/// problem named by record and field, and changes nothing; with `"replace": true` the body is
/// the whole new state, and what it does not list is removed. `sheetcake ctl apply FILE`
/// (and `--replace`) does the same from a file.
#[test]
fn a_bulk_apply_changes_every_record_or_none_and_replace_removes_the_rest() {
    let _serial = serial();
    let (dir, _, app, base) = idle_box("api_apply", "apply", "");
    let apply = format!("{base}/v1/apply");
    let subscriber = |id: &str| api("GET", &format!("{base}/v1/subscribers/{id}"), None);

    let (status, v) = api(
        "POST",
        &apply,
        Some(
            r#"{
            "nodes": [{"id": "sg-1", "download": "100mbit", "upload": "20mbit"}],
            "subscribers": [
                {"id": "a1", "addresses": ["100.64.0.1"], "download": "20mbit", "upload": "5mbit", "node": "sg-1"},
                {"id": "a2", "addresses": ["100.64.0.2", "2001:db8:2::/56"], "download": "30mbit", "upload": "6mbit"},
                {"id": "a3", "addresses": ["100.64.0.3"], "download": "40mbit", "upload": "7mbit", "upload_options": "ack-filter"}
            ]}"#,
        ),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["applied"].as_bool(), counts(&v)),
        (Some(true), [3, 0, 0, 0]),
        "{v}"
    );
    let (status, a1) = subscriber("a1");
    assert_eq!(status, 200, "{a1}");
    assert_eq!(
        (
            &a1["addresses"],
            &a1["download"],
            &a1["upload"],
            &a1["node"]
        ),
        (
            &serde_json::json!(["100.64.0.1/32"]),
            &serde_json::json!("20Mbit"),
            &serde_json::json!("5Mbit"),
            &serde_json::json!("sg-1")
        ),
        "{a1}"
    );
    let (_, a2) = subscriber("a2");
    assert_eq!(
        a2["addresses"],
        serde_json::json!(["100.64.0.2/32", "2001:db8:2::/56"]),
        "{a2}"
    );
    assert_eq!(a2["node"], serde_json::Value::Null, "{a2}");
    let (_, a3) = subscriber("a3");
    let upload_cake = a3["upload_cake"].as_str().expect("upload_cake");
    assert!(
        upload_cake.starts_with("bandwidth 7Mbit ") && upload_cake.contains(" ack-filter"),
        "{a3}"
    );
    let (subscribers, nodes) = state(&base);
    assert_eq!(subscribers["total"], 3, "{subscribers}");
    assert_eq!(
        nodes,
        serde_json::json!({"nodes": [{"id": "sg-1", "download": "100Mbit", "upload": "20Mbit"}]})
    );

    // Changes and removals in one body.
    let (status, v) = api(
        "POST",
        &apply,
        Some(
            r#"{"subscribers": [{"id": "a2", "addresses": ["100.64.0.2", "2001:db8:2::/56"], "download": "35mbit", "upload": "6mbit"}],
                "remove": ["a3"]}"#,
        ),
    );
    assert_eq!((status, counts(&v)), (200, [0, 1, 1, 0]), "{v}");
    assert_eq!(subscriber("a2").1["download"], "35Mbit");
    assert_eq!(subscriber("a3").0, 404);

    // Refused whole: every bad record named by its place in the body, its ID and the field;
    // the good records of the same body (a change of a1, a new a4) are not applied either.
    let before = state(&base);
    let (status, v) = api(
        "POST",
        &apply,
        Some(
            r#"{"subscribers": [
                {"id": "a1", "addresses": ["100.64.0.1"], "download": "99mbit", "upload": "5mbit", "node": "sg-1"},
                {"id": "a4", "addresses": ["100.64.0.4"], "download": "10mbit", "upload": "1mbit"},
                {"id": "a5", "addresses": ["100.64.0.5"], "download": "fast", "upload": "1mbit"},
                {"id": "a6", "addresses": ["10.0.0.1/24"], "download": "10mbit", "upload": "1mbit"}
            ]}"#,
        ),
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(
        v["error"], "the change is not valid; nothing was applied",
        "{v}"
    );
    // As docs/api.md shows them: no line in a well-formed body, the record by its place.
    assert_eq!(
        v["errors"],
        serde_json::json!([
            {"file": "request body", "line": null, "key": "subscribers[2] (a5).download",
             "message": "\"fast\" is not a rate; expected a number with a unit, like 20mbit, \
                         500kbit or 1gbit"},
            {"file": "request body", "line": null, "key": "subscribers[3] (a6).addresses",
             "message": "10.0.0.1/24: bits are set beyond the prefix length (did you mean \
                         10.0.0.0/24?)"}
        ]),
        "{v}"
    );
    assert_eq!(state(&base), before);

    // Addresses overlapping another subscriber's, in the same body or in force: 409, the
    // record and field named, nothing applied.
    for (body, key, overlap) in [
        (
            r#"{"subscribers": [
                {"id": "a4", "addresses": ["100.64.1.0/24"], "download": "10mbit", "upload": "1mbit"},
                {"id": "a5", "addresses": ["100.64.1.7"], "download": "10mbit", "upload": "1mbit"}
            ]}"#,
            "subscriber \"a5\".addresses",
            "100.64.1.7/32 overlaps 100.64.1.0/24 of subscriber \"a4\"",
        ),
        (
            r#"{"subscribers": [
                {"id": "a4", "addresses": ["100.64.0.0/30"], "download": "10mbit", "upload": "1mbit"}
            ]}"#,
            "subscriber \"a4\".addresses",
            "100.64.0.0/30 overlaps 100.64.0.1/32 of subscriber \"a1\"",
        ),
    ] {
        let (status, v) = api("POST", &apply, Some(body));
        assert_eq!(status, 409, "{v}");
        let errors = v["errors"].as_array().expect("errors");
        assert_eq!(errors.len(), 1, "{v}");
        assert_eq!(errors[0]["key"], key, "{v}");
        assert!(
            errors[0]["message"].as_str().unwrap().starts_with(overlap),
            "{v}"
        );
        assert_eq!(state(&base), before);
    }

    // Wrong types, unknown fields, a removal of nothing, and replace with removals.
    assert_answers(&[
        (
            "POST",
            &apply,
            r#"{"subscribers": {"id": "a9"}}"#,
            400,
            "invalid type",
        ),
        (
            "POST",
            &apply,
            r#"{"subscriber": []}"#,
            400,
            "unknown field `subscriber`",
        ),
        (
            "POST",
            &apply,
            r#"{"subscribers": [{"id": "a9", "addresses": ["100.64.0.9"], "download": "1mbit", "upload": "1mbit", "plan": "gold"}]}"#,
            400,
            "unknown field `plan`",
        ),
        (
            "POST",
            &apply,
            r#"{"remove": ["nobody"]}"#,
            404,
            "no subscriber has the ID \\\"nobody\\\"",
        ),
        (
            "POST",
            &apply,
            r#"{"replace": true, "remove": ["a1"]}"#,
            422,
            "leave \\\"remove\\\" and \\\"remove_nodes\\\" empty",
        ),
    ]);
    assert_eq!(state(&base), before);

    // Replace: what the body does not list goes (a1, and sg-1 with it); a2 is unchanged. A
    // replace with a bad record changes nothing either.
    let (status, v) = api(
        "POST",
        &apply,
        Some(
            r#"{"replace": true, "subscribers": [
                {"id": "b1", "addresses": ["100.64.2.0/24"], "download": "10mbit", "upload": "1mbit"},
                {"id": "b2", "addresses": ["100.64.2.9"], "download": "10mbit", "upload": "1mbit"}
            ]}"#,
        ),
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(
        v["errors"][0]["key"], "subscribers[1] (b2).addresses",
        "{v}"
    );
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("overlaps"),
        "{v}"
    );
    assert_eq!(state(&base), before);
    let (status, v) = api(
        "POST",
        &apply,
        Some(
            r#"{"replace": true, "subscribers": [
                {"id": "a2", "addresses": ["100.64.0.2", "2001:db8:2::/56"], "download": "35mbit", "upload": "6mbit"},
                {"id": "b1", "addresses": ["100.64.2.0/24"], "download": "10mbit", "upload": "1mbit"}
            ]}"#,
        ),
    );
    assert_eq!((status, counts(&v)), (200, [1, 0, 1, 1]), "{v}");
    let (subscribers, nodes) = state(&base);
    let ids: Vec<&str> = subscribers["subscribers"]
        .as_array()
        .expect("subscribers")
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a2", "b1"], "{subscribers}");
    assert_eq!(nodes, serde_json::json!({"nodes": []}));
    // A page at a time, by ID; a limit of 0 gives the total alone.
    let page = |query: &str| api("GET", &format!("{base}/v1/subscribers?{query}"), None);
    let (status, v) = page("offset=1&limit=1");
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            &v["total"],
            &v["offset"],
            v["subscribers"].as_array().map(Vec::len)
        ),
        (&serde_json::json!(2), &serde_json::json!(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["subscribers"][0]["id"], "b1", "{v}");
    assert_eq!(
        page("limit=0").1,
        serde_json::json!({"total": 2, "offset": 0, "subscribers": []})
    );
    assert_eq!(page("limit=100001").0, 400);
    assert_eq!(page("offset=-1").0, 400);

    // The CLI: a file applied as a change, then as the whole state; a bad file changes nothing.
    let file = dir.join("change.json");
    std::fs::write(
        &file,
        r#"{"nodes": [{"id": "sg-2", "download": "1gbit", "upload": "100mbit"}],
            "subscribers": [
                {"id": "c1", "addresses": ["100.64.3.1"], "download": "20mbit", "upload": "5mbit", "node": "sg-2"},
                {"id": "c2", "addresses": ["100.64.3.2"], "download": "20mbit", "upload": "5mbit"}
            ]}"#,
    )
    .expect("write");
    let path = file.display().to_string();
    let (ok, out, err) = ctl(&base, &["apply", &path]);
    assert!(
        ok && out.starts_with("applied: 2 added, 0 changed, 0 removed, 0 unchanged"),
        "{out}{err}"
    );
    assert_eq!(state(&base).0["total"], 4);
    std::fs::write(
        &file,
        r#"{"nodes": [{"id": "sg-2", "download": "1gbit", "upload": "100mbit"}],
            "subscribers": [
                {"id": "c1", "addresses": ["100.64.3.1"], "download": "20mbit", "upload": "5mbit", "node": "sg-2"}
            ]}"#,
    )
    .expect("write");
    let (ok, out, err) = ctl(&base, &["apply", "--replace", &path]);
    assert!(
        ok && out.starts_with("applied: 0 added, 0 changed, 3 removed, 1 unchanged"),
        "{out}{err}"
    );
    let after_replace = state(&base);
    assert_eq!(after_replace.0["total"], 1, "{}", after_replace.0);
    assert_eq!(after_replace.0["subscribers"][0]["id"], "c1");
    std::fs::write(
        &file,
        r#"{"subscribers": [
            {"id": "d1", "addresses": ["100.64.4.1"], "download": "fast", "upload": "5mbit"}
        ]}"#,
    )
    .expect("write");
    let (ok, out, err) = ctl(&base, &["apply", &path]);
    assert!(
        !ok && err.contains("422")
            && err.contains("request body: subscribers[0] (d1).download: \"fast\" is not a rate"),
        "{out}{err}"
    );
    std::fs::write(&file, "{\"subscribers\": [\n  {\"id\": \"d1\",\n").expect("write");
    let (ok, _, err) = ctl(&base, &["apply", &path]);
    assert!(!ok && err.contains(&format!("{path}:3: not JSON")), "{err}");
    assert_eq!(state(&base), after_replace);

    let (status, output) = app.stop();
    assert_clean_shutdown(status, &output);
}

/// The node routes over HTTP, as docs/api.md and docs/openapi.yaml describe them: a node is
/// created (201), read back in tc's notation, replaced (200), changed in part, listed, and
/// found by its percent-encoded ID; a subscriber naming a node that does not exist is refused
/// (422); a node that still has members is not deleted (409, the node named) and is deleted
/// once empty; wrong types and unknown fields (400), rates out of range and an `id` that is not
/// the path's (422), unknown nodes (404), a method the path does not take (405) and an
/// oversize body (413) are refused and change nothing.
#[test]
fn nodes_are_created_read_changed_and_deleted_over_http_once_empty() {
    let _serial = serial();
    let (_, _, app, base) = idle_box("api_nodes", "nodes", "");
    let node = |id: &str| format!("{base}/v1/nodes/{id}");
    let sg1 = node("sg-1");

    let (status, v) = api(
        "PUT",
        &sg1,
        Some(r#"{"download": "30mbit", "upload": "10mbit"}"#),
    );
    // The summary counts subscribers only.
    assert_eq!(
        (status, &v["applied"], counts(&v)),
        (201, &serde_json::json!(true), [0, 0, 0, 0]),
        "{v}"
    );
    let (status, v) = api("GET", &sg1, None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        serde_json::json!({"id": "sg-1", "download": "30Mbit", "upload": "10Mbit"})
    );
    let (status, v) = api(
        "PUT",
        &sg1,
        Some(r#"{"id": "sg-1", "download": "30mbit", "upload": "12mbit"}"#),
    );
    assert_eq!(status, 200, "{v}");
    let (status, v) = api("PATCH", &sg1, Some(r#"{"download": "40mbit"}"#));
    assert_eq!(status, 200, "{v}");
    let sg1_now = serde_json::json!({"id": "sg-1", "download": "40Mbit", "upload": "12Mbit"});
    assert_eq!(api("GET", &sg1, None).1, sg1_now);
    // An ID with a slash, percent-encoded in the path.
    let (status, v) = api(
        "PUT",
        &node("cmts-1%2Fsg-3"),
        Some(r#"{"download": "1gbit", "upload": "200mbit"}"#),
    );
    assert_eq!(status, 201, "{v}");
    let cmts = serde_json::json!({"id": "cmts-1/sg-3", "download": "1Gbit", "upload": "200Mbit"});
    assert_eq!(api("GET", &node("cmts-1%2Fsg-3"), None).1, cmts);
    let (status, list) = api("GET", &format!("{base}/v1/nodes"), None);
    assert_eq!(status, 200);
    assert_eq!(list, serde_json::json!({"nodes": [cmts.clone(), sg1_now]}));

    // Members: only of a node that exists.
    let member = format!("{base}/v1/subscribers/m1");
    let (status, v) = api(
        "PUT",
        &member,
        Some(
            r#"{"addresses": ["100.64.0.1"], "download": "20mbit", "upload": "5mbit", "node": "sg-9"}"#,
        ),
    );
    assert_eq!(status, 422, "{v}");
    assert!(
        v["errors"][0]["key"].as_str().unwrap().ends_with(".node")
            && v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("no node has the ID \"sg-9\""),
        "{v}"
    );
    assert_eq!(api("GET", &member, None).0, 404);
    let (status, v) = api(
        "PUT",
        &member,
        Some(
            r#"{"addresses": ["100.64.0.1"], "download": "20mbit", "upload": "5mbit", "node": "sg-1"}"#,
        ),
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(api("GET", &member, None).1["node"], "sg-1");

    // A node with a member stays.
    let (status, v) = api("DELETE", &sg1, None);
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["errors"][0]["key"], "node \"sg-1\"", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("1 subscriber(s) still sit behind it"),
        "{v}"
    );

    // Bad input changes nothing.
    let before = state(&base);
    let sg2 = node("sg-2");
    let oversize = format!(
        r#"{{"download": "1gbit", "upload": "1gbit", "pad": "{}"}}"#,
        "x".repeat(1_100_000)
    );
    assert_answers(&[
        (
            "PUT",
            &sg2,
            r#"{"download": 1000, "upload": "1gbit"}"#,
            400,
            "invalid type",
        ),
        (
            "PUT",
            &sg2,
            r#"{"download": "1gbit"}"#,
            400,
            "missing field `upload`",
        ),
        (
            "PUT",
            &sg2,
            r#"{"download": "1gbit", "upload": "1gbit", "capacity": 1}"#,
            400,
            "unknown field `capacity`",
        ),
        ("PUT", &sg2, "[1, 2]", 400, "invalid type"),
        ("PATCH", &sg1, r#"{"upload": 5}"#, 400, "invalid type"),
        (
            "PATCH",
            &sg1,
            r#"{"members": []}"#,
            400,
            "unknown field `members`",
        ),
        (
            "PUT",
            &sg2,
            r#"{"download": "100kbit", "upload": "1gbit"}"#,
            422,
            "out of range; expected 128kbit to 400gbit",
        ),
        (
            "PUT",
            &sg2,
            r#"{"download": "1gbit", "upload": "401gbit"}"#,
            422,
            "out of range; expected 128kbit to 400gbit",
        ),
        (
            "PATCH",
            &sg1,
            r#"{"download": "fast"}"#,
            422,
            "\\\"fast\\\" is not a rate",
        ),
        (
            "PUT",
            &sg2,
            r#"{"id": "sg-3", "download": "1gbit", "upload": "1gbit"}"#,
            422,
            "differs from",
        ),
        ("GET", &sg2, "", 404, "no node has the ID \\\"sg-2\\\""),
        (
            "PATCH",
            &sg2,
            r#"{"download": "1gbit"}"#,
            404,
            "no node has the ID",
        ),
        ("DELETE", &sg2, "", 404, "no node has the ID"),
        ("POST", &format!("{base}/v1/nodes"), "", 405, "not allowed"),
        (
            "PUT",
            &sg2,
            &oversize,
            413,
            "larger than api.max_body_bytes",
        ),
    ]);
    assert_eq!(state(&base), before);

    // Out of the node, the node can go.
    let (status, v) = api("PATCH", &member, Some(r#"{"node": null}"#));
    assert_eq!((status, counts(&v)), (200, [0, 1, 0, 0]), "{v}");
    assert_eq!(api("GET", &member, None).1["node"], serde_json::Value::Null);
    let (status, v) = api("DELETE", &sg1, None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(api("GET", &sg1, None).0, 404);
    assert_eq!(
        api("GET", &format!("{base}/v1/nodes"), None).1,
        serde_json::json!({"nodes": [cmts]})
    );

    let (status, output) = app.stop();
    assert_clean_shutdown(status, &output);
}

/// The fields of `object` named in `keys`, as numbers: each must be there and be one.
fn numbers(object: &serde_json::Value, keys: &[&str]) -> Vec<f64> {
    keys.iter()
        .map(|k| {
            object[*k]
                .as_f64()
                .unwrap_or_else(|| panic!("{k} is not a number in {object}"))
        })
        .collect()
}

/// The integer counters of `object` named in `keys`, as docs/openapi.yaml requires them.
fn counters(object: &serde_json::Value, keys: &[&str]) -> Vec<u64> {
    keys.iter()
        .map(|k| {
            object[*k]
                .as_u64()
                .unwrap_or_else(|| panic!("{k} is not a whole number in {object}"))
        })
        .collect()
}

const WORKER_COUNTERS: [&str; 12] = [
    "worker",
    "core",
    "received_packets",
    "sent_packets",
    "shaped_packets",
    "unshaped_packets",
    "handed_off_packets",
    "taken_over_packets",
    "queued_packets",
    "flows",
    "subscribers",
    "command_queue_depth",
];
const DROP_REASONS: [&str; 9] = [
    "shutdown",
    "aqm",
    "overflow",
    "ack_filter",
    "handoff_full",
    "budget",
    "flushed",
    "tx_full",
    "removed",
];
const PORT_COUNTERS: [&str; 8] = [
    "received_packets",
    "received_bytes",
    "sent_packets",
    "sent_bytes",
    "missed_packets",
    "receive_errors",
    "send_errors",
    "no_mbuf",
];
const TOP_FIELDS: [&str; 4] = [
    "download_bytes_per_second",
    "upload_bytes_per_second",
    "download_backlog_bytes",
    "upload_backlog_bytes",
];

/// `GET /v1/workers`, `/v1/ports` and `/v1/top` have the shape docs/openapi.yaml gives them
/// (every required field, numbers where it says so), and count real traffic: a ping flood
/// from the core side to a subscriber moves the workers' received, sent and shaped packets and
/// the ports' packets and bytes, and puts the subscriber first among the busiest with a rate
/// in both directions, which `sheetcake ctl watch --once` prints.
#[test]
fn workers_ports_and_top_count_a_subscribers_traffic_and_ctl_watch_shows_it() {
    let _serial = serial();
    let net = Host::new("scstnet", "10.77.1.1/24");
    let sub = Host::new("scstsub", "10.77.1.2/24");
    let (_, app, base) = bridged_box("api_stats", "stats", &net, &sub);
    let workers = || {
        let (status, v) = api("GET", &format!("{base}/v1/workers"), None);
        assert_eq!(status, 200, "{v}");
        let list = v["workers"].as_array().expect("workers").clone();
        assert_eq!(list.len(), 1, "one worker is configured: {v}");
        let w = &list[0];
        let busy = numbers(w, &["busy_ratio"])[0];
        assert!((0.0..=1.0).contains(&busy), "{w}");
        counters(&w["dropped_packets"], &DROP_REASONS);
        assert_eq!(
            w["dropped_packets"].as_object().map(|d| d.len()),
            Some(DROP_REASONS.len()),
            "{w}"
        );
        counters(w, &WORKER_COUNTERS)
    };
    // A virtual device is named as DPDK knows it, without its arguments.
    let device = |vdev: &str| vdev.split(',').next().expect("a name").to_owned();
    let ports = || {
        let (status, v) = api("GET", &format!("{base}/v1/ports"), None);
        assert_eq!(status, 200, "{v}");
        let list = v["ports"].as_array().expect("ports").clone();
        let described: Vec<(&str, &str, String)> = list
            .iter()
            .map(|p| {
                assert!(p["driver"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
                (
                    p["pair"].as_str().unwrap_or(""),
                    p["side"].as_str().unwrap_or(""),
                    p["device"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        assert_eq!(
            described,
            [
                ("e2e", "core", device(&net.vdev(0))),
                ("e2e", "access", device(&sub.vdev(1)))
            ],
            "{v}"
        );
        list.iter()
            .map(|p| counters(p, &PORT_COUNTERS))
            .collect::<Vec<_>>()
    };
    let top = |query: &str| {
        let (status, v) = api("GET", &format!("{base}/v1/top{query}"), None);
        assert_eq!(status, 200, "{v}");
        let list = v["subscribers"].as_array().expect("subscribers").clone();
        for t in &list {
            assert!(t["id"].is_string(), "{t}");
            numbers(t, &TOP_FIELDS);
        }
        list
    };

    // Idle, and no subscriber yet. Asked at once: even the first answer lists every worker
    // and port.
    assert_eq!(workers()[10], 0, "no subscriber yet");
    ports();
    assert!(top("").is_empty());
    assert_answers(&[
        (
            "GET",
            &format!("{base}/v1/top?count=1001"),
            "",
            400,
            "expected a whole number up to 1000",
        ),
        (
            "GET",
            &format!("{base}/v1/top?count=many"),
            "",
            400,
            "query parameter count",
        ),
        ("PUT", &format!("{base}/v1/workers"), "", 405, "not allowed"),
        ("POST", &format!("{base}/v1/ports"), "", 405, "not allowed"),
    ]);

    let (status, v) = api(
        "PUT",
        &format!("{base}/v1/subscribers/pinged"),
        Some(&format!(
            r#"{{"addresses": ["{}"], "download": "20mbit", "upload": "20mbit"}}"#,
            sub.address
        )),
    );
    assert_eq!(status, 201, "{v}");
    let (status, v) = api(
        "PUT",
        &format!("{base}/v1/subscribers/quiet"),
        Some(r#"{"addresses": ["10.77.1.3"], "download": "20mbit", "upload": "20mbit"}"#),
    );
    assert_eq!(status, 201, "{v}");
    // The snapshot behind these answers is refreshed every second.
    std::thread::sleep(Duration::from_millis(1500));
    let workers_before = workers();
    assert_eq!(workers_before[10], 2, "two subscribers");
    let ports_before = ports();
    assert_eq!(top("").len(), 2);
    assert_eq!(top("?count=1").len(), 1);

    // 100 pings of 1000 bytes a second for 6 s, each answered: both directions of `pinged`.
    const PINGS: u64 = 600;
    let ping = net
        .command("ping")
        .args(["-q", "-i", "0.01", "-s", "1000", "-c", &PINGS.to_string()])
        .arg(&sub.address)
        .stdout(Stdio::piped())
        .spawn()
        .expect("ping");
    let deadline = Instant::now() + Duration::from_secs(5);
    let busiest = loop {
        let list = top("?count=5");
        let first = &list[0];
        if first["id"] == "pinged" && numbers(first, &TOP_FIELDS[..2]).iter().all(|r| *r > 0.0) {
            break first.clone();
        }
        assert!(
            Instant::now() < deadline,
            "pinged never became the busiest: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // At most 100 frames of 1042 bytes a second each way (fewer in a second the pings only
    // began in, or on a busy machine).
    let rates = numbers(&busiest, &TOP_FIELDS[..2]);
    assert!(
        rates.iter().all(|r| *r <= 1.2 * 100.0 * 1042.0),
        "{busiest}"
    );
    let (ok, out, err) = ctl(&base, &["watch", "--once", "--count", "5"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with(&format!("sheetcake at {base}: the 5 busiest subscribers\n"))
            && !out.contains('\x1b'),
        "{out}"
    );
    let rows: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("id "))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    let first: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(first[0], "pinged", "{out}");
    assert!(
        first[1].parse::<f64>().is_ok_and(|r| r > 0.0) && first[2].ends_with("bit/s"),
        "a download rate: {out}"
    );
    assert!(
        rows[1].starts_with("quiet ") && rows[1].contains("0.0 kbit/s"),
        "{out}"
    );
    let out = ping.wait_with_output().expect("ping");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!("{PINGS} packets transmitted, {PINGS} received")),
        "{summary}"
    );

    // Every ping and its answer went through the worker, shaped, and through both ports.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (w, p) = (workers(), ports());
        let grew = |now: u64, then: u64| now - then;
        let worker_ok = [2, 3, 4]
            .iter()
            .all(|&i| grew(w[i], workers_before[i]) >= 2 * PINGS);
        // Core: pings in, answers out; access: answers in, pings out; 1042-byte frames.
        let port_ok = (0..2).all(|side| {
            grew(p[side][0], ports_before[side][0]) >= PINGS
                && grew(p[side][1], ports_before[side][1]) >= PINGS * 1042
                && grew(p[side][2], ports_before[side][2]) >= PINGS
                && grew(p[side][3], ports_before[side][3]) >= PINGS * 1042
        });
        if worker_ok && port_ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the counters did not count the pings: workers {workers_before:?} then {w:?}, \
             ports {ports_before:?} then {p:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let (status, output) = app.stop();
    assert_clean_shutdown(status, &output);
}

/// `sheetcake ctl reload` re-reads the configured subscriber file and applies the difference,
/// printing the summary; a file with a bad row changes nothing, and the command fails with
/// the errors naming the file, line and column.
#[test]
fn ctl_reload_applies_the_edited_file_or_names_what_is_wrong() {
    let _serial = serial();
    let (_, csv, app, base) = idle_box("api_ctl_reload", "reload", "");
    std::fs::write(&csv, shaped_devices(2, None)).expect("write");
    let (ok, out, err) = ctl(&base, &["reload"]);
    assert!(
        ok && out.starts_with("applied: 2 added, 0 changed, 0 removed, 0 unchanged"),
        "{out}{err}"
    );
    let (status, c1) = api("GET", &format!("{base}/v1/subscribers/c1"), None);
    assert_eq!(
        (status, &c1["download"]),
        (200, &serde_json::json!("100Mbit")),
        "{c1}"
    );

    std::fs::write(&csv, shaped_devices(3, Some(1))).expect("write");
    let (ok, out, err) = ctl(&base, &["reload"]);
    assert!(
        !ok && err.contains("422")
            && err.contains(&format!(
                "{}:3: row 3 (c1).Download Max Mbps: \"fast\" is not a rate",
                csv.display()
            )),
        "{out}{err}"
    );
    let (subscribers, _) = state(&base);
    assert_eq!(subscribers["total"], 2, "{subscribers}");
    assert_eq!(api("GET", &format!("{base}/v1/subscribers/c1"), None).1, c1);

    let (status, output) = app.stop();
    assert_clean_shutdown(status, &output);
}

/// With `[shaping] watch = true` an edited subscriber file is applied by itself, within a few
/// seconds (checked every second, read once it has not changed for a second): subscribers
/// added, then removed; a bad edit changes nothing and the log says why, naming the file.
#[test]
fn with_watch_an_edited_subscriber_file_applies_by_itself() {
    let _serial = serial();
    let (_, csv, app, base) = idle_box("api_watch", "watch", "watch = true");
    let total = || state(&base).0["total"].as_u64().expect("total");
    let wait_for_total = |want: u64| {
        let deadline = Instant::now() + Duration::from_secs(6);
        while total() != want {
            assert!(
                Instant::now() < deadline,
                "the edited file was not applied within 6 s ({} subscribers, {want} in the \
                 file):\n{}",
                total(),
                app.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    std::fs::write(&csv, shaped_devices(3, None)).expect("write");
    wait_for_total(3);
    app.wait_for("the watch's log line", Duration::ZERO, |l| {
        l == "watch: the subscriber source changed; reloading"
    });
    let (status, c2) = api("GET", &format!("{base}/v1/subscribers/c2"), None);
    assert_eq!(
        (status, &c2["download"]),
        (200, &serde_json::json!("100Mbit")),
        "{c2}"
    );

    std::fs::write(&csv, shaped_devices(1, None)).expect("write");
    wait_for_total(1);

    std::fs::write(&csv, shaped_devices(2, Some(0))).expect("write");
    let file = csv.display().to_string();
    app.wait_for("the refused reload's errors", Duration::from_secs(6), |l| {
        l.starts_with(&format!("{file}:2: row 2 (c0).Download Max Mbps"))
    });
    assert!(
        app.output().contains("reload refused, nothing changed:"),
        "{}",
        app.output()
    );
    assert_eq!(total(), 1);
    assert_eq!(
        api("GET", &format!("{base}/v1/subscribers/c0"), None).1["download"],
        "100Mbit"
    );

    let (status, output) = app.stop();
    assert_clean_shutdown(status, &output);
}

/// `sheetcake ctl completions bash|zsh|fish` prints a completion script for each shell that
/// knows every `ctl` command. No sheetcake needs to run.
#[test]
fn ctl_completions_know_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, script, err) = ctl("http://127.0.0.1:1", &["completions", shell]);
        assert!(ok && err.is_empty(), "{shell}: {err}");
        for command in [
            "health",
            "list",
            "show",
            "add",
            "set-rate",
            "remove",
            "apply",
            "reload",
            "watch",
            "completions",
        ] {
            assert!(
                script.contains(command),
                "the {shell} completions do not know {command}:\n{script}"
            );
        }
        // The options of a command, too.
        assert!(
            script.contains("once") && script.contains("replace"),
            "{shell}:\n{script}"
        );
    }
}

/// The Kea hook in `deploy/hooks/kea`, run as Kea's run_script library runs it (its own
/// variables only, no PATH), against a running sheetcake: a lease committed for a client the
/// plan file lists creates its subscriber with the lease's address, a renewal of a second
/// address adds it, a release removes it, and the last release deletes the subscriber.
#[test]
fn the_kea_hook_follows_a_clients_leases() {
    let _serial = serial();
    let (dir, _, app, base) = idle_box("api_kea", "kea", "");
    let plans = dir.join("dhcp-plans");
    std::fs::write(
        &plans,
        "# hwaddr, subscriber, download, upload\n02:00:00:00:00:01 cust-1 20mbit 5mbit\n",
    )
    .expect("write");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/hooks/kea/sheetcake-kea-hook.sh"
    );
    let state = dir.join("kea-state");
    let hook = |point: &str, lease: &[(&str, &str)]| {
        let out = Command::new("/bin/bash")
            .arg(script)
            .arg(point)
            .env_clear()
            .env("SHEETCAKE_KEA_CONF", dir.join("no-such.conf"))
            .env("SHEETCAKE_API_URL", &base)
            .env("SHEETCAKE_API_TOKEN", TOKEN)
            .env("SHEETCAKE_PLANS", &plans)
            .env("SHEETCAKE_STATE_DIR", &state)
            .envs(lease.iter().copied())
            .output()
            .expect("bash");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let subscriber = format!("{base}/v1/subscribers/cust-1");
    let addresses = || {
        let (status, v) = api("GET", &subscriber, None);
        (status, v["addresses"].clone(), v["download"].clone())
    };

    hook(
        "leases4_committed",
        &[
            ("LEASES4_SIZE", "1"),
            ("LEASES4_AT0_ADDRESS", "100.64.0.9"),
            ("LEASES4_AT0_HWADDR", "02:00:00:00:00:01"),
        ],
    );
    let (status, list, download) = addresses();
    assert_eq!(status, 200);
    assert_eq!(list, serde_json::json!(["100.64.0.9/32"]));
    assert_eq!(download, "20Mbit");

    let second = [
        ("LEASE4_ADDRESS", "100.64.0.10"),
        ("LEASE4_HWADDR", "02:00:00:00:00:01"),
    ];
    hook("lease4_renew", &second);
    assert_eq!(
        addresses().1,
        serde_json::json!(["100.64.0.10/32", "100.64.0.9/32"])
    );
    hook(
        "lease4_release",
        &[
            ("LEASE4_ADDRESS", "100.64.0.9"),
            ("LEASE4_HWADDR", "02:00:00:00:00:01"),
        ],
    );
    assert_eq!(addresses().1, serde_json::json!(["100.64.0.10/32"]));
    hook("lease4_expire", &second);
    assert_eq!(
        addresses().0,
        404,
        "the last address gone, the subscriber is deleted"
    );

    let (status, output) = app.stop();
    assert_clean_shutdown(status, &output);
}

/// A child process whose output (stdout and stderr, by lines) the test reads while it runs;
/// killed on drop, so a failing test leaves nothing running.
struct Daemon {
    what: &'static str,
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn spawn(what: &'static str, command: &mut Command) -> Daemon {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what} (make deps installs it): {e}"));
        let lines = common::collect_lines(&mut child);
        Daemon { what, child, lines }
    }

    /// Everything the process printed so far.
    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits until `count` printed lines contain `text`; returns them. Panics with the output
    /// when the process exits first or `timeout` passes.
    fn wait_for(&mut self, text: &str, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<String> = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(text))
                .cloned()
                .collect();
            if found.len() >= count {
                return found;
            }
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "{} exited with {status} before printing {text:?} {count} times:\n{}",
                    self.what,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {text:?} {count} times within {timeout:?}:\n{}",
                self.what,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of a file that a hook appends to, empty while it does not exist.
fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The Kea hook in `deploy/hooks/kea`, installed as its README says and run by the real Kea
/// server (`kea-dhcp4` with the run_script library) for a real DHCP client (ISC dhclient),
/// against a running sheetcake. Kea runs in the root namespace on its own veth, where the
/// hook reaches the API on loopback as on an operator's box; the client runs in a namespace at
/// the veth's other end, with a MAC the plan file lists. The lease creates the client's
/// subscriber with the leased address and the plan's rates, a renewal keeps it, the release
/// deletes it. Nothing of the system's Kea is used: its own configuration, lease file, pid
/// and lock directories, no control socket, and only the test's interface.
#[test]
fn the_kea_hook_follows_a_real_kea_servers_leases() {
    const MAC: &str = "02:00:00:00:77:01";
    const SERVER: &str = "100.64.77.1";
    let _serial = serial();
    let (dir, _, app, base) = idle_box("api_kea_server", "keasrv", "");

    // The client's namespace; the veth's root end is the server's interface.
    let client = Host::without_address("sckea");
    common::sh(
        "ip",
        &[
            "-n",
            &client.ns,
            "link",
            "set",
            &client.inner(),
            "address",
            MAC,
        ],
    );
    common::sh(
        "ip",
        &[
            "addr",
            "add",
            &format!("{SERVER}/24"),
            "dev",
            &client.root_if,
        ],
    );

    // The hook's settings, in a file of its own instead of /etc/sheetcake/kea-hook.conf.
    let plans = dir.join("dhcp-plans");
    std::fs::write(
        &plans,
        format!("# hwaddr, subscriber, download, upload\n{MAC} cust-kea 20mbit 5mbit\n"),
    )
    .expect("write");
    let hook_conf = dir.join("kea-hook.conf");
    std::fs::write(
        &hook_conf,
        format!(
            "SHEETCAKE_API_URL={base}\nSHEETCAKE_API_TOKEN={TOKEN}\nSHEETCAKE_PLANS={}\n\
             SHEETCAKE_STATE_DIR={}\n",
            plans.display(),
            dir.join("kea-state").display()
        ),
    )
    .expect("write");
    // Kea passes the script no environment of its own, so another settings file takes a
    // wrapper, as the README shows. This one also notes each run that has finished: the hook
    // is asynchronous, and the test asserts once the runs for an event are over.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/hooks/kea/sheetcake-kea-hook.sh"
    );
    let finished = dir.join("hook-runs");
    let wrapper = dir.join("sheetcake-kea-hook");
    executable(
        &wrapper,
        &format!(
            "#!/bin/sh\nSHEETCAKE_KEA_CONF={} {script} \"$@\"\necho \"$1\" >>{}\n",
            hook_conf.display(),
            finished.display()
        ),
    );
    let runs = |point: &str| lines_of(&finished).iter().filter(|l| *l == point).count();

    // A renewal after 3 s, so that the test sees one; the lease outlives the test.
    let kea_conf = dir.join("kea-dhcp4.conf");
    let kea = serde_json::json!({ "Dhcp4": {
        "interfaces-config": { "interfaces": [client.root_if] },
        "lease-database": {
            "type": "memfile",
            "persist": true,
            "name": dir.join("kea-leases4.csv"),
            "lfc-interval": 0
        },
        "renew-timer": 3,
        "rebind-timer": 3000,
        "valid-lifetime": 3600,
        "subnet4": [{
            "subnet": "100.64.77.0/24",
            "pools": [{ "pool": "100.64.77.10 - 100.64.77.19" }]
        }],
        "hooks-libraries": [{
            "library": "/usr/lib/x86_64-linux-gnu/kea/hooks/libdhcp_run_script.so",
            "parameters": { "name": wrapper, "sync": false }
        }],
        "loggers": [{
            "name": "kea-dhcp4",
            "output_options": [{ "output": "stdout" }],
            "severity": "INFO"
        }]
    }});
    std::fs::write(&kea_conf, kea.to_string()).expect("write");
    // The pid file and the logger's lock file, which default to the system Kea's directories
    // in /run.
    let kea_command = |option: &str| {
        let mut c = Command::new("kea-dhcp4");
        c.arg(option)
            .arg(&kea_conf)
            .env("KEA_PIDFILE_DIR", &dir)
            .env("KEA_LOCKFILE_DIR", &dir);
        c
    };
    let out = kea_command("-t")
        .output()
        .expect("kea-dhcp4 -t (make deps installs kea-dhcp4-server)");
    assert!(
        out.status.success(),
        "kea-dhcp4 -t: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut server = Daemon::spawn("kea-dhcp4", &mut kea_command("-c"));
    server.wait_for("DHCP4_STARTED", 1, Duration::from_secs(30));
    let interfaces = server.wait_for("DHCPSRV_CFGMGR_ADD_IFACE", 1, Duration::ZERO);
    assert!(
        interfaces.len() == 1
            && interfaces[0].ends_with(&format!("listening on interface {}", client.root_if)),
        "only the test's interface: {interfaces:#?}"
    );

    // dhclient's own files. Its script only sets the address, which the release needs (it is
    // sent by unicast from the leased address); Debian's dhclient-script would also rewrite
    // /etc/resolv.conf and run the system's hooks. The empty configuration keeps the system's
    // /etc/dhcp/dhclient.conf out of the test.
    let dhclient_script = dir.join("dhclient-script");
    executable(
        &dhclient_script,
        "#!/bin/sh\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\ncase $reason in\n\
         PREINIT) ip link set dev \"$interface\" up ;;\n\
         BOUND | RENEW | REBIND | REBOOT) ip addr replace \"$new_ip_address/$new_subnet_mask\" \
         dev \"$interface\" ;;\n\
         EXPIRE | FAIL | RELEASE | STOP) [ -z \"$old_ip_address\" ] || \
         ip addr del \"$old_ip_address/$old_subnet_mask\" dev \"$interface\" ;;\nesac\nexit 0\n",
    );
    let dhclient_conf = dir.join("dhclient.conf");
    std::fs::write(&dhclient_conf, "").expect("write");
    let dhclient = |options: &[&str]| {
        let mut c = client.command("dhclient");
        c.args(options)
            .arg("-v")
            .arg("-cf")
            .arg(&dhclient_conf)
            .arg("-lf")
            .arg(dir.join("dhclient.leases"))
            .arg("-pf")
            .arg(dir.join("dhclient.pid"))
            .arg("-sf")
            .arg(&dhclient_script)
            .arg(client.inner());
        c
    };
    let subscriber = format!("{base}/v1/subscribers/cust-kea");
    // Waits until the hook has finished `count` runs for `point`.
    let wait_runs = |server: &Daemon, point: &str, count: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs(point) < count {
            assert!(
                Instant::now() < deadline,
                "{count} runs of the hook for {point} expected within 10 s, finished: {:?}\n{}",
                lines_of(&finished),
                server.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // The lease: one attempt, in the foreground, so that the client is a child of the test.
    let mut lease = Daemon::spawn("dhclient", &mut dhclient(&["-d", "-1"]));
    let bound = lease.wait_for("bound to ", 1, Duration::from_secs(30));
    let address = bound[0]
        .split_whitespace()
        .nth(2)
        .expect("bound to ADDRESS")
        .to_owned();
    let octets: Vec<u8> = address
        .split('.')
        .map(|o| o.parse().expect("an IPv4 address"))
        .collect();
    assert!(
        octets[..3] == [100, 64, 77] && (10..=19).contains(&octets[3]),
        "a lease from the pool: {address}"
    );
    wait_runs(&server, "leases4_committed", 1);
    let expected = serde_json::json!({
        "addresses": [format!("{address}/32")],
        "download": "20Mbit",
        "upload": "5Mbit",
    });
    let shaped = |when: &str| {
        let (status, v) = api("GET", &subscriber, None);
        assert_eq!(status, 200, "{when}: {v}\n{}", server.output());
        let got = serde_json::json!({
            "addresses": v["addresses"],
            "download": v["download"],
            "upload": v["upload"],
        });
        assert_eq!(got, expected, "{when}");
    };
    shaped("after the lease");

    // The renewal: unicast to the server, which calls lease4_renew and leases4_committed.
    lease.wait_for("bound to ", 2, Duration::from_secs(15));
    assert!(
        lease.output().contains(&format!(
            "DHCPREQUEST for {address} on {} to {SERVER} port 67",
            client.inner()
        )),
        "a renewal from the bound address:\n{}",
        lease.output()
    );
    wait_runs(&server, "lease4_renew", 1);
    wait_runs(&server, "leases4_committed", 2);
    shaped("after the renewal");

    // The release, well before the next renewal (3 s away), whose hook runs would otherwise
    // race the release's: `dhclient -r` stops the running client (by its pid file) and sends
    // the DHCPRELEASE.
    let out = dhclient(&["-r"]).output().expect("dhclient -r");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains(&format!("DHCPRELEASE of {address} ")),
        "dhclient -r: {}\n{text}",
        out.status
    );
    server.wait_for(
        &format!("address {address} was released properly"),
        1,
        Duration::from_secs(10),
    );
    wait_runs(&server, "lease4_release", 1);
    let (status, v) = api("GET", &subscriber, None);
    assert_eq!(
        status,
        404,
        "the release deletes the subscriber: {v}\nhook runs: {:?}\n{}",
        lines_of(&finished),
        server.output()
    );

    drop(lease);
    drop(server);
    let (status, output) = app.stop();
    assert_clean_shutdown(status, &output);
}

/// Writes an executable file.
fn executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The shipped FreeRADIUS hook files.
const FREERADIUS_HOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/hooks/freeradius");
/// The secret of the `localhost` client in Debian's `clients.conf`.
const RADIUS_SECRET: &str = "testing123";

/// Returns `text` with `from` replaced by `to`, which must occur exactly `times` times: a
/// Debian configuration that no longer looks as expected fails here, instead of the test
/// quietly running some other configuration.
fn replaced(text: &str, from: &str, to: &str, times: usize, what: &str) -> String {
    assert_eq!(text.matches(from).count(), times, "{what}: {from:?}");
    text.replace(from, to)
}

/// Reads, edits and writes back a file of the private configuration.
fn edit(path: &Path, change: impl FnOnce(&str) -> String) {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    std::fs::write(path, change(&text)).expect("write");
}

/// `text` without its top-level `listen { }` sections (they open and close at column 0 in
/// Debian's sites), and how many there were.
fn without_listen_sections(text: &str) -> (String, usize) {
    let (mut out, mut removed, mut inside) = (String::new(), 0, false);
    for line in text.lines() {
        if inside {
            inside = line != "}";
        } else if line == "listen {" {
            inside = true;
            removed += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!inside, "an unterminated listen section");
    (out, removed)
}

/// Two free consecutive UDP ports on loopback, the first for authentication, the second for
/// accounting.
fn free_udp_port_pair() -> u16 {
    for _ in 0..100 {
        let first = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = first.local_addr().expect("address").port();
        if port < u16::MAX && std::net::UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free UDP ports on 127.0.0.1");
}

/// A private FreeRADIUS configuration in `dir/raddb`: Debian's, copied, with the hook installed
/// as its README says (the shipped module with the API address in its `connect_uri` lines,
/// the shipped policy, the calls in `sites-enabled/default`), `users` entries in front of
/// Debian's, listening on `auth_port` and the next port of 127.0.0.1 only, with its own log
/// and run directories, running as the test's user. Nothing of the system's server is used
/// or touched: Debian starts that one on install, on the standard ports.
fn freeradius_config(dir: &Path, api: &str, auth_port: u16, users: &str) -> PathBuf {
    let raddb = dir.join("raddb");
    common::sh(
        "cp",
        &["-a", "/etc/freeradius/3.0", &raddb.display().to_string()],
    );
    for sub in ["log", "run"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    edit(&raddb.join("radiusd.conf"), |text| {
        let text = replaced(
            text,
            "\nraddbdir = /etc/freeradius/3.0\n",
            &format!("\nraddbdir = {}\n", raddb.display()),
            1,
            "radiusd.conf",
        );
        let text = replaced(
            &text,
            "\nlogdir = /var/log/freeradius\n",
            &format!("\nlogdir = {}\n", dir.join("log").display()),
            1,
            "radiusd.conf",
        );
        let text = replaced(
            &text,
            "\nrun_dir = ${localstatedir}/run/${name}\n",
            &format!("\nrun_dir = {}\n", dir.join("run").display()),
            1,
            "radiusd.conf",
        );
        // The freerad user could not write to the scratch directory.
        let text = replaced(&text, "\n\tuser = freerad\n", "\n", 1, "radiusd.conf");
        let text = replaced(&text, "\n\tgroup = freerad\n", "\n", 1, "radiusd.conf");
        // No proxy socket, which would listen on every address.
        replaced(
            &text,
            "\nproxy_requests  = yes\n",
            "\nproxy_requests = no\n",
            1,
            "radiusd.conf",
        )
    });

    // The module, as the README installs it: only the API address changes.
    let module = std::fs::read_to_string(format!("{FREERADIUS_HOOK}/sheetcake-rest"))
        .expect("read sheetcake-rest");
    let module = replaced(
        &module,
        "\tconnect_uri = \"http://127.0.0.1:9180\"\n",
        &format!("\tconnect_uri = \"{api}\"\n"),
        2,
        "sheetcake-rest: both connect_uri lines",
    );
    std::fs::write(raddb.join("mods-available/sheetcake-rest"), module).expect("write");
    std::os::unix::fs::symlink(
        "../mods-available/sheetcake-rest",
        raddb.join("mods-enabled/sheetcake-rest"),
    )
    .expect("symlink");
    std::fs::copy(
        format!("{FREERADIUS_HOOK}/sheetcake-policy"),
        raddb.join("policy.d/sheetcake"),
    )
    .expect("copy sheetcake-policy");

    // sites-enabled/default links to sites-available/default: editing it edits the copy's.
    edit(&raddb.join("sites-enabled/default"), |text| {
        let (text, listeners) = without_listen_sections(text);
        assert_eq!(
            listeners, 4,
            "Debian's default site listens on auth and acct, v4 and v6"
        );
        let text = replaced(
            &text,
            "\nserver default {\n",
            &format!(
                "\nserver default {{\nlisten {{\n\ttype = auth\n\tipaddr = 127.0.0.1\n\tport = \
                 {auth_port}\n}}\nlisten {{\n\ttype = acct\n\tipaddr = 127.0.0.1\n\tport = {}\n}}\n",
                auth_port + 1
            ),
            1,
            "default",
        );
        // The end of post-auth's list: after the modules that may set the plan or the address.
        let text = replaced(
            &text,
            "\n\tPost-Auth-Type REJECT {\n",
            "\n\tsheetcake_post_auth\n\n\tPost-Auth-Type REJECT {\n",
            1,
            "default",
        );
        replaced(
            &text,
            "\naccounting {\n",
            "\naccounting {\n\tsheetcake_accounting\n",
            1,
            "default",
        )
    });
    // The inner tunnel (for EAP) listens on 127.0.0.1:18120, as the system's server does.
    edit(&raddb.join("sites-enabled/inner-tunnel"), |text| {
        let (text, listeners) = without_listen_sections(text);
        assert_eq!(listeners, 1, "inner-tunnel");
        text
    });
    // First, so that none of Debian's DEFAULT entries applies to the test's users.
    edit(&raddb.join("mods-config/files/authorize"), |text| {
        format!("{users}\n{text}")
    });
    raddb
}

/// `freeradius -X` on a configuration directory, ready to process requests.
fn freeradius(raddb: &Path) -> Daemon {
    let mut radius = Daemon::spawn(
        "freeradius",
        Command::new("freeradius")
            .arg("-X")
            .arg("-d")
            .arg(raddb)
            .env("SHEETCAKE_API_TOKEN", TOKEN),
    );
    radius.wait_for("Ready to process requests", 1, Duration::from_secs(30));
    radius
}

/// One request sent with radclient to 127.0.0.1:`port`; returns the answer's packet type
/// (`Access-Accept`...) and its attributes as radclient prints them.
fn radclient(port: u16, kind: &str, attributes: &[String]) -> (String, Vec<(String, String)>) {
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "1", "-t", "10"])
        .arg(format!("127.0.0.1:{port}"))
        .args([kind, RADIUS_SECRET])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radclient (make deps installs freeradius-utils)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped");
        writeln!(stdin, "{}", attributes.join("\n")).expect("write to radclient");
    }
    let out = child.wait_with_output().expect("radclient");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines().skip_while(|l| !l.starts_with("Received "));
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| {
            panic!(
                "no answer to {attributes:?}:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned();
    let reply = lines
        .map_while(|l| l.strip_prefix('\t'))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (code, reply)
}

/// The values of attribute `name` in a reply.
fn values<'a>(reply: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    reply
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// An octets value as radclient prints it (`0x7368...`), as text.
fn octets_text(value: &str) -> String {
    let hex = value.strip_prefix("0x").expect("octets in hex");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    String::from_utf8(bytes).expect("text")
}

/// The FreeRADIUS hook in `deploy/hooks/freeradius`, installed as its README says in a private
/// copy of Debian's configuration and run by the real server (`freeradius -X`), against a
/// running sheetcake; requests come from radclient as a NAS would send them. An Access-Accept
/// with a plan (WISPr or MikroTik attributes) and an address creates the subscriber; the
/// session's accounting (which echoes the plan in `Class`) moves its address, brings back a
/// subscriber sheetcake lost, and the Stop deletes it; a reply without a plan touches nothing;
/// and a call sheetcake refuses, or sheetcake being down, never turns into a reject or an
/// unanswered request.
#[test]
fn the_freeradius_hook_follows_a_users_sessions() {
    let _serial = serial();
    let (dir, _, app, base) = idle_box("api_radius", "radius", "");
    let port = free_udp_port_pair();
    let users = "\
radius-alice Cleartext-Password := \"alice-pw\"
\tWISPr-Bandwidth-Max-Down = 20000000,
\tWISPr-Bandwidth-Max-Up = 5000000,
\tFramed-IP-Address = 100.64.1.1

radius-bob Cleartext-Password := \"bob-pw\"
\tMikrotik-Rate-Limit = \"5M/20M\",
\tFramed-IP-Address = 100.64.1.2,
\tDelegated-IPv6-Prefix = 2001:db8:100:b00::/56

radius-dave Cleartext-Password := \"dave-pw\"
\tMikrotik-Rate-Limit = \"10M\",
\tFramed-IP-Address = 100.64.1.4

radius-carol Cleartext-Password := \"carol-pw\"
\tFramed-IP-Address = 100.64.1.3

radius-erin Cleartext-Password := \"erin-pw\"
\tWISPr-Bandwidth-Max-Down = 8000000,
\tWISPr-Bandwidth-Max-Up = 2000000

radius-mallory Cleartext-Password := \"mallory-pw\"
\tWISPr-Bandwidth-Max-Down = 20000000,
\tWISPr-Bandwidth-Max-Up = 5000000,
\tFramed-IP-Address = 100.64.1.1
";
    let raddb = freeradius_config(&dir, &base, port, users);

    let check = Command::new("freeradius")
        .arg("-XC")
        .arg("-d")
        .arg(&raddb)
        .env("SHEETCAKE_API_TOKEN", TOKEN)
        .output()
        .expect("freeradius -XC (make deps installs it)");
    let check_output = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && check_output.contains("Configuration appears to be OK"),
        "freeradius -XC: {}\n{check_output}{}",
        check.status,
        String::from_utf8_lossy(&check.stderr)
    );

    let radius = freeradius(&raddb);
    let listening: Vec<String> = radius
        .output()
        .lines()
        .filter(|l| l.starts_with("Listening on "))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        listening,
        [
            format!("Listening on auth address 127.0.0.1 port {port} bound to server default"),
            format!(
                "Listening on acct address 127.0.0.1 port {} bound to server default",
                port + 1
            ),
        ],
        "only the test's own ports, on loopback"
    );

    let auth = |user: &str, password: &str| {
        radclient(
            port,
            "auth",
            &[
                format!("User-Name = \"{user}\""),
                format!("User-Password = \"{password}\""),
            ],
        )
    };
    let acct = |user: &str, status: &str, extra: &[String]| {
        let mut attributes = vec![
            format!("User-Name = \"{user}\""),
            format!("Acct-Status-Type = {status}"),
            format!("Acct-Session-Id = \"{user}-1\""),
            "NAS-IP-Address = 127.0.0.1".to_owned(),
        ];
        attributes.extend_from_slice(extra);
        let (code, _) = radclient(port + 1, "acct", &attributes);
        assert_eq!(code, "Accounting-Response", "{user} {status}");
    };
    // The Class attributes of an Access-Accept, as the NAS echoes them in accounting.
    let classes = |reply: &[(String, String)]| -> Vec<String> {
        values(reply, "Class")
            .into_iter()
            .map(|c| format!("Class = {c}"))
            .collect()
    };
    let get = |user: &str| api("GET", &format!("{base}/v1/subscribers/{user}"), None);
    let subscriber = |user: &str| {
        let (status, v) = get(user);
        assert_eq!(status, 200, "{user}: {v}");
        let mut addresses: Vec<String> = v["addresses"]
            .as_array()
            .expect("addresses")
            .iter()
            .map(|a| a.as_str().expect("a string").to_owned())
            .collect();
        addresses.sort();
        (
            v["download"].as_str().expect("download").to_owned(),
            v["upload"].as_str().expect("upload").to_owned(),
            addresses,
        )
    };
    let plan = |down: &str, up: &str, addresses: &[&str]| {
        let mut addresses: Vec<String> = addresses.iter().map(|a| (*a).to_owned()).collect();
        addresses.sort();
        (down.to_owned(), up.to_owned(), addresses)
    };

    // WISPr: the plan and the address from the reply, and the plan in a Class for accounting.
    let (code, alice) = auth("radius-alice", "alice-pw");
    assert_eq!(code, "Access-Accept", "{}", radius.output());
    assert_eq!(
        values(&alice, "Class")
            .into_iter()
            .map(octets_text)
            .collect::<Vec<_>>(),
        ["sheetcake:20000000bit/5000000bit"]
    );
    assert_eq!(
        subscriber("radius-alice"),
        plan("20Mbit", "5Mbit", &["100.64.1.1/32"]),
        "{}",
        radius.output()
    );

    // MikroTik: upload first; an IPv4 address and a delegated prefix.
    let (code, _) = auth("radius-bob", "bob-pw");
    assert_eq!(code, "Access-Accept");
    assert_eq!(
        subscriber("radius-bob"),
        plan(
            "20Mbit",
            "5Mbit",
            &["100.64.1.2/32", "2001:db8:100:b00::/56"]
        )
    );

    // A single MikroTik rate is both directions; a rejected user is not sent at all.
    let (code, _) = auth("radius-dave", "wrong");
    assert_eq!(code, "Access-Reject");
    assert_eq!(get("radius-dave").0, 404);
    let (code, _) = auth("radius-dave", "dave-pw");
    assert_eq!(code, "Access-Accept");
    assert_eq!(
        subscriber("radius-dave"),
        plan("10Mbit", "10Mbit", &["100.64.1.4/32"])
    );

    // sheetcake refuses mallory's address, alice's (409): the user is accepted all the same,
    // the failure is logged, and alice keeps her address.
    let (code, _) = auth("radius-mallory", "mallory-pw");
    assert_eq!(code, "Access-Accept", "{}", radius.output());
    assert_eq!(get("radius-mallory").0, 404);
    assert_eq!(
        subscriber("radius-alice"),
        plan("20Mbit", "5Mbit", &["100.64.1.1/32"])
    );
    assert!(
        radius
            .output()
            .contains("sheetcake: PUT /v1/subscribers/radius-mallory failed: HTTP 409"),
        "{}",
        radius.output()
    );

    // No plan in carol's reply: her subscriber from elsewhere (here the API) is left alone,
    // at the Access-Accept and at the Stop of a session whose Class is not the hook's.
    let (status, body) = api(
        "PUT",
        &format!("{base}/v1/subscribers/radius-carol"),
        Some(r#"{"download": "30mbit", "upload": "6mbit", "addresses": ["100.64.1.50"]}"#),
    );
    assert_eq!(status, 201, "{body}");
    let (code, carol) = auth("radius-carol", "carol-pw");
    assert_eq!(code, "Access-Accept");
    assert!(values(&carol, "Class").is_empty(), "{carol:?}");
    let carol_before = plan("30Mbit", "6Mbit", &["100.64.1.50/32"]);
    assert_eq!(subscriber("radius-carol"), carol_before);
    acct(
        "radius-carol",
        "Stop",
        &["Framed-IP-Address = 100.64.1.3".to_owned()],
    );
    assert_eq!(subscriber("radius-carol"), carol_before);

    // Accounting follows alice's address with the Class from her Access-Accept.
    let alice_class = classes(&alice);
    let with = |address: &str| {
        let mut extra = vec![format!("Framed-IP-Address = {address}")];
        extra.extend_from_slice(&alice_class);
        extra
    };
    acct("radius-alice", "Start", &with("100.64.1.11"));
    assert_eq!(
        subscriber("radius-alice"),
        plan("20Mbit", "5Mbit", &["100.64.1.11/32"]),
        "{}",
        radius.output()
    );
    acct("radius-alice", "Interim-Update", &with("100.64.1.12"));
    assert_eq!(
        subscriber("radius-alice"),
        plan("20Mbit", "5Mbit", &["100.64.1.12/32"])
    );
    // A subscriber sheetcake lost comes back with the next Interim-Update.
    let (status, body) = api(
        "DELETE",
        &format!("{base}/v1/subscribers/radius-alice"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    acct("radius-alice", "Interim-Update", &with("100.64.1.12"));
    assert_eq!(
        subscriber("radius-alice"),
        plan("20Mbit", "5Mbit", &["100.64.1.12/32"])
    );
    acct("radius-alice", "Stop", &with("100.64.1.12"));
    assert_eq!(
        get("radius-alice").0,
        404,
        "{}\nBOX:\n{}",
        radius.output(),
        app.output()
    );
    // A repeated Stop (a NAS retransmission) finds nothing to delete; that is no failure.
    acct("radius-alice", "Stop", &with("100.64.1.12"));
    assert!(
        !radius
            .output()
            .contains("sheetcake: DELETE /v1/subscribers/radius-alice failed"),
        "{}",
        radius.output()
    );

    // Erin's address comes from the NAS: no subscriber until her accounting Start reports it.
    let (code, erin) = auth("radius-erin", "erin-pw");
    assert_eq!(code, "Access-Accept");
    assert_eq!(get("radius-erin").0, 404);
    let mut erin_start = vec!["Framed-IP-Address = 100.64.1.5".to_owned()];
    erin_start.extend(classes(&erin));
    acct("radius-erin", "Start", &erin_start);
    assert_eq!(
        subscriber("radius-erin"),
        plan("8Mbit", "2Mbit", &["100.64.1.5/32"])
    );

    let (status, output) = app.stop();
    assert_clean_shutdown(status, &output);

    // sheetcake is down: users are still accepted and accounting still answered, by this
    // server (which has connections to the old sheetcake in its pools) and by one started
    // while sheetcake is down.
    let (code, _) = auth("radius-bob", "bob-pw");
    assert_eq!(code, "Access-Accept", "{}", radius.output());
    acct("radius-erin", "Interim-Update", &erin_start);
    let before_restart = radius.output();
    drop(radius);
    let radius = freeradius(&raddb);
    let (code, _) = auth("radius-bob", "bob-pw");
    assert_eq!(code, "Access-Accept", "{}", radius.output());
    acct("radius-erin", "Stop", &erin_start);
    let after_restart = radius.output();
    for (output, failures) in [
        (
            &before_restart,
            [
                "PUT /v1/subscribers/radius-bob",
                "PUT /v1/subscribers/radius-erin",
            ],
        ),
        (
            &after_restart,
            [
                "PUT /v1/subscribers/radius-bob",
                "DELETE /v1/subscribers/radius-erin",
            ],
        ),
    ] {
        for call in failures {
            assert!(
                output.contains(&format!("sheetcake: {call} failed: HTTP none")),
                "{call}:\n{output}"
            );
        }
        // Errors of the modules are expected (the wrong password, the bodies of refused
        // calls, the refused connections); one of the policy itself is a condition that could
        // not be evaluated, such as a comparison with an attribute the request lacks.
        let policy_errors: Vec<&str> = output
            .lines()
            .filter(|l| {
                l.split_once(") ")
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with("ERROR:"))
            })
            .collect();
        assert!(policy_errors.is_empty(), "{policy_errors:#?}\n{output}");
    }
}
