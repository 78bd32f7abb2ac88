//! A reload re-reads the whole configuration against a running sheetcake: the keys only the
//! control thread and the API read apply at once, the others are named as waiting for a
//! restart, and a bad file changes nothing, by SIGHUP or by the API. Two `net_null` ports: no
//! namespaces, no traffic needed.

mod common;

use common::{assert_clean_shutdown, config, scratch, serial, Appliance};
use std::time::Duration;

const TOKEN: &str = "0123456789abcdef0123";
const NEW_TOKEN: &str = "fedcba9876543210fedc";

/// `POST /v1/reload` with `token`: the status and the body.
fn reload(base: &str, token: &str) -> (u16, String) {
    let answer = ureq::post(&format!("{base}/v1/reload"))
        .set("Authorization", &format!("Bearer {token}"))
        .call();
    match answer {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("POST /v1/reload: {e}"),
    }
}

#[test]
fn a_reload_applies_what_it_can_names_what_needs_a_restart_and_refuses_a_bad_file_whole() {
    let _serial = serial();
    let dir = scratch("reload_config");
    let subscribers = dir.join("subscribers.toml");
    std::fs::write(
        &subscribers,
        "[[subscriber]]\nid = \"s1\"\naddresses = [\"10.99.0.2\"]\ndownload = \"10mbit\"\nupload = \"5mbit\"\n",
    )
    .unwrap();
    let section = |token: &str, extra: &str| {
        format!(
            "[shaping]\nsubscribers = \"{}\"\nsubscribers_per_worker = 64\n\
             [api]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\"\n{extra}",
            subscribers.display()
        )
    };
    let file = dir.join("sheetcake.toml");
    let app = Appliance::start(
        &dir,
        &config(
            "reload-config",
            "net_null0",
            "net_null1",
            &section(TOKEN, ""),
        ),
    );
    let line = app.wait_for("the API to listen", Duration::from_secs(10), |l| {
        l.starts_with("api: listening on ")
    });
    let base = line
        .trim_start_matches("api: listening on ")
        .split('/')
        .take(3)
        .collect::<Vec<_>>()
        .join("/");

    // A live key (the metrics guard, the token) and one that needs a restart (the MTU).
    let changed = config(
        "reload-config",
        "net_null0",
        "net_null1",
        &section(
            NEW_TOKEN,
            "[metrics]\nsubscriber_series = 7\n[ports]\nmtu = 9000\n",
        ),
    );
    std::fs::write(&file, &changed).unwrap();
    app.signal("HUP");
    let applied = app.wait_for("the live keys", Duration::from_secs(5), |l| {
        l.starts_with("reload: configuration changes applied")
    });
    assert!(
        applied.contains("keys=\"api.token metrics.subscriber_series\""),
        "{applied}"
    );
    let waiting = app.wait_for("the restart keys", Duration::from_secs(5), |l| {
        l.contains("need a restart")
    });
    assert!(waiting.contains("ports.mtu"), "{waiting}");
    assert!(!waiting.contains("metrics"), "{waiting}");
    // The new token is in force for the next request, the old one no longer.
    assert_eq!(reload(&base, TOKEN).0, 401);
    let (status, body) = reload(&base, NEW_TOKEN);
    assert_eq!(status, 200, "{body}");

    // A bad configuration changes nothing, by SIGHUP and by the API, and says why.
    std::fs::write(&file, format!("{changed}bogus = 1\n")).unwrap();
    app.signal("HUP");
    app.wait_for("the refusal", Duration::from_secs(5), |l| {
        l.starts_with("reload refused, nothing changed: the configuration is not valid")
    });
    app.wait_for("the error", Duration::from_secs(5), |l| {
        l.contains("unknown field `bogus`")
    });
    let (status, body) = reload(&base, NEW_TOKEN);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("unknown field `bogus`"), "{body}");

    let (status, output) = app.stop();
    assert_clean_shutdown(status, &output);
}
