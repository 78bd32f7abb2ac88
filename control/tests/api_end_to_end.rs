//! The operator's API against a running sheetcake on `net_af_packet`, with real Linux TCP
//! through network namespaces: creating a subscriber starts shaping its traffic, changing its
//! rate changes its throughput without losing what is queued, deleting it returns its traffic
//! to pass-through; bad requests are refused whole with the reason; a real Prometheus scrapes
//! the box and a query returns the subscriber's byte counter; a bulk load of 100,000
//! subscribers from a LibreQoS `ShapedDevices.csv` succeeds, and one bad row applies nothing.

mod common;

use common::{assert_clean_shutdown, scratch, serial, Appliance, Host};
use std::process::{Command, Stdio};
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

fn worker_drops(base: &str, reason: &str) -> u64 {
    let (_, w) = api("GET", &format!("{base}/v1/workers"), None);
    w["workers"][0]["dropped_packets"][reason]
        .as_u64()
        .expect("a drop counter")
}

#[test]
fn the_api_shapes_changes_and_releases_a_subscriber_and_prometheus_scrapes_it() {
    let _serial = serial();
    let dir = scratch("api_e2e");
    let net = Host::new("scapin", "10.77.0.1/24");
    let sub = Host::new("scapsub", "10.77.0.2/24");
    let subscribers = dir.join("subscribers.toml");
    std::fs::write(&subscribers, "# managed through the API\n").expect("write");
    let app = Appliance::start(
        &dir,
        &config(
            "api",
            &net.vdev(0),
            &sub.vdev(1),
            &subscribers.display().to_string(),
            "",
        ),
    );
    let base = api_base(&app);

    // Health needs no token; everything else does.
    let (status, body) = call("GET", &format!("{base}/health"), None, None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"status\": \"ok\""), "{body}");
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
    for (method, url, body, want, says) in [
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
    ] {
        let body = (!body.is_empty()).then_some(body);
        let (status, text) = call(method, url, body, Some(TOKEN));
        assert_eq!(status, want, "{method} {url} {body:?}: {text}");
        assert!(text.contains(says), "{method} {url} {body:?}: {text}");
    }
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
    let ctl = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sheetcake"))
            .args(["ctl", "--api", &base, "--token", TOKEN])
            .args(args)
            .output()
            .expect("sheetcake ctl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = ctl(&[
        "add",
        "bob",
        "--address",
        "10.77.0.9",
        "--download",
        "1mbit",
        "--upload",
        "1mbit",
    ]);
    assert!(ok && out.starts_with("applied: 1 added"), "{out}{err}");
    let (ok, out, _) = ctl(&["list"]);
    assert!(
        ok && out.contains("bob") && out.contains("10.77.0.9/32") && out.contains("(2 of 2 shown)"),
        "{out}"
    );
    let (ok, out, err) = ctl(&["set-rate", "bob", "--download", "2mbit"]);
    assert!(ok && out.contains("1 changed"), "{out}{err}");
    let (ok, out, _) = ctl(&["show", "bob"]);
    assert!(
        ok && out.contains("subscriber bob download: cake bandwidth 2Mbit"),
        "{out}"
    );
    let (ok, _, err) = ctl(&["set-rate", "bob", "--upload", "fast"]);
    assert!(
        !ok && err.contains("422") && err.contains("\"fast\" is not a rate"),
        "{err}"
    );
    let (ok, out, _) = ctl(&["remove", "bob"]);
    assert!(ok && out.contains("1 removed"), "{out}");
    let (ok, out, _) = ctl(&["health"]);
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

#[test]
fn a_bulk_load_of_100000_subscribers_applies_whole_or_not_at_all() {
    let _serial = serial();
    let dir = scratch("api_bulk");
    let csv = dir.join("ShapedDevices.csv");
    std::fs::write(&csv, HEADER).expect("write");
    let app = Appliance::start(
        &dir,
        &config(
            "bulk",
            "net_null0,no-rx=1",
            "net_null1,no-rx=1",
            &csv.display().to_string(),
            "subscribers_per_worker = 131072",
        ),
    );
    let base = api_base(&app);
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

    // One bad row (file line 4711 + 2: the header is line 1): nothing applied, the row named.
    std::fs::write(
        &csv,
        shaped_devices(100_000, Some(4711)).replace("c0,", "x0,"),
    )
    .expect("write");
    let (status, v) = api("POST", &format!("{base}/v1/reload"), None);
    assert_eq!(status, 422, "{v}");
    let errors = v["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{v}");
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

/// The Kea hook in `deploy/hooks/kea`, run as Kea's run_script library runs it (its own
/// variables only, no PATH), against a running sheetcake: a lease committed for a client the
/// plan file lists creates its subscriber with the lease's address, a renewal of a second
/// address adds it, a release removes it, and the last release deletes the subscriber.
#[test]
fn the_kea_hook_follows_a_clients_leases() {
    let _serial = serial();
    let dir = scratch("api_kea");
    let csv = dir.join("ShapedDevices.csv");
    std::fs::write(&csv, HEADER).expect("write");
    let app = Appliance::start(
        &dir,
        &config(
            "kea",
            "net_null0,no-rx=1",
            "net_null1,no-rx=1",
            &csv.display().to_string(),
            "",
        ),
    );
    let base = api_base(&app);
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
