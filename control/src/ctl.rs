//! `sheetcake ctl`: the API for humans. Every command is one or two API calls; what the API
//! refuses is printed with its reasons and the command exits non-zero.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

/// Talk to a running sheetcake through its API.
#[derive(Debug, Args)]
pub struct Ctl {
    /// The API's address.
    #[arg(long, env = "SHEETCAKE_API", default_value = "http://127.0.0.1:9180")]
    api: String,
    /// The bearer token ([api] token in the configuration).
    #[arg(long, env = "SHEETCAKE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Is it up, which version, how many subscribers.
    Health,
    /// List subscribers (ID, worker, rates, node, addresses).
    List {
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Skip this many first (they are sorted by ID).
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// One subscriber: its configuration and its CAKE statistics, laid out like tc.
    Show {
        /// The subscriber's ID.
        id: String,
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Add a subscriber, or replace one with the same ID.
    Add {
        /// The subscriber's ID.
        id: String,
        /// An address or prefix (repeat for more).
        #[arg(long = "address", required = true)]
        addresses: Vec<String>,
        /// Download plan, like 100mbit.
        #[arg(long)]
        download: String,
        /// Upload plan, like 20mbit.
        #[arg(long)]
        upload: String,
        /// tc-cake words for downloads, after the defaults.
        #[arg(long)]
        download_options: Option<String>,
        /// tc-cake words for uploads, after the defaults.
        #[arg(long)]
        upload_options: Option<String>,
        /// The parent node it sits behind.
        #[arg(long)]
        node: Option<String>,
    },
    /// Change a subscriber's plan; its queues and flows stay.
    SetRate {
        /// The subscriber's ID.
        id: String,
        /// New download rate, like 50mbit.
        #[arg(long)]
        download: Option<String>,
        /// New upload rate.
        #[arg(long)]
        upload: Option<String>,
    },
    /// Remove a subscriber: its traffic passes unshaped from then on.
    Remove {
        /// The subscriber's ID.
        id: String,
    },
    /// Apply a native JSON file ({"subscribers": [...], "nodes": [...]}) in one atomic change.
    Apply {
        /// The file.
        file: std::path::PathBuf,
        /// The file is the whole new state: subscribers not in it are removed.
        #[arg(long)]
        replace: bool,
    },
    /// Reload the configuration file and the subscriber file it names (as SIGHUP does).
    Reload,
    /// A refreshing view of the busiest subscribers (Ctrl-C stops it; --once prints it once).
    Watch {
        /// Subscribers shown.
        #[arg(long, default_value_t = 20)]
        count: usize,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Print the view once, without clearing the screen, and exit (for scripts and logs).
        #[arg(long)]
        once: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

struct Client {
    base: String,
    token: Option<String>,
}

impl Client {
    /// (status, body) of a call; `Err` only when the API cannot be reached.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), String> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut request = ureq::request(method, &url).timeout(Duration::from_secs(300));
        if let Some(t) = &self.token {
            request = request.set("Authorization", &format!("Bearer {t}"));
        }
        let result = match body {
            Some(b) => request.send_json(b.clone()),
            None => request.call(),
        };
        match result {
            Ok(r) => Ok((r.status(), r.into_string().unwrap_or_default())),
            Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap_or_default())),
            Err(e) => Err(format!(
                "cannot reach the API at {}: {e}\n  is sheetcake running, and is [api] listen \
                 this address? (--api or SHEETCAKE_API)",
                self.base
            )),
        }
    }

    /// The JSON of a successful call, or the API's errors as text.
    fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let (status, text) = self.call(method, path, body)?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        if status < 300 {
            return Ok(value);
        }
        let mut message = format!(
            "{status}: {}",
            value["error"].as_str().unwrap_or(text.trim())
        );
        for e in value["errors"].as_array().into_iter().flatten() {
            let line = e["line"]
                .as_u64()
                .map(|l| format!(":{l}"))
                .unwrap_or_default();
            message.push_str(&format!(
                "\n  {}{line}: {}: {}",
                e["file"].as_str().unwrap_or(""),
                e["key"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            ));
        }
        Err(message)
    }
}

/// An ID as one URL path segment.
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn summary(v: &Value) -> String {
    format!(
        "{}: {} added, {} changed, {} removed, {} unchanged{}",
        if v["applied"] == true {
            "applied"
        } else {
            "accepted (the workers had not confirmed within 100 ms)"
        },
        v["added"],
        v["changed"],
        v["removed"],
        v["unchanged"],
        v["applied_in_ms"]
            .as_f64()
            .map(|ms| format!(" in {ms:.2} ms"))
            .unwrap_or_default()
    )
}

fn bits(bytes_per_second: f64) -> String {
    let b = bytes_per_second * 8.0;
    if b >= 1e9 {
        format!("{:.2} Gbit/s", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.2} Mbit/s", b / 1e6)
    } else {
        format!("{:.1} kbit/s", b / 1e3)
    }
}

/// Runs one `ctl` command.
pub fn run(ctl: Ctl) -> ExitCode {
    let client = Client {
        base: ctl.api.clone(),
        token: ctl.token.clone(),
    };
    match execute(&client, ctl.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sheetcake ctl: {message}");
            ExitCode::FAILURE
        }
    }
}

fn execute(client: &Client, command: CtlCommand) -> Result<(), String> {
    match command {
        CtlCommand::Health => {
            let v = client.json("GET", "/health", None)?;
            println!(
                "{} version {}, up {:.0} s, {} workers, {} subscribers{}",
                v["status"].as_str().unwrap_or("?"),
                v["version"].as_str().unwrap_or("?"),
                v["uptime_seconds"].as_f64().unwrap_or(0.0),
                v["workers"],
                v["subscribers"],
                if v["shaping"] == true {
                    ""
                } else {
                    " (bridging only)"
                }
            );
        }
        CtlCommand::List { limit, offset } => {
            let v = client.json(
                "GET",
                &format!("/v1/subscribers?offset={offset}&limit={limit}"),
                None,
            )?;
            println!(
                "{:<24} {:>6} {:>14} {:>14} {:<16} addresses",
                "id", "worker", "download", "upload", "node"
            );
            for s in v["subscribers"].as_array().into_iter().flatten() {
                let addresses: Vec<&str> = s["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "{:<24} {:>6} {:>14} {:>14} {:<16} {}",
                    s["id"].as_str().unwrap_or(""),
                    s["worker"],
                    s["download"].as_str().unwrap_or(""),
                    s["upload"].as_str().unwrap_or(""),
                    s["node"].as_str().unwrap_or("-"),
                    addresses.join(" ")
                );
            }
            let shown = v["subscribers"].as_array().map_or(0, Vec::len);
            println!("({shown} of {} shown)", v["total"]);
        }
        CtlCommand::Show { id, json } => {
            let path = format!("/v1/subscribers/{}", segment(&id));
            let config = client.json("GET", &path, None)?;
            if json {
                let stats = client.json("GET", &format!("{path}/stats"), None)?;
                println!("{:#}", json!({ "subscriber": config, "stats": stats }));
                return Ok(());
            }
            let (status, text) = client.call("GET", &format!("{path}/stats?format=text"), None)?;
            println!(
                "subscriber {id} on worker {}, node {}, addresses {}",
                config["worker"],
                config["node"].as_str().unwrap_or("-"),
                config["addresses"]
            );
            if status == 200 {
                print!("{text}");
            } else {
                return Err(format!("statistics: {status}: {}", text.trim()));
            }
        }
        CtlCommand::Add {
            id,
            addresses,
            download,
            upload,
            download_options,
            upload_options,
            node,
        } => {
            let mut body =
                json!({ "addresses": addresses, "download": download, "upload": upload });
            for (key, value) in [
                ("download_options", download_options),
                ("upload_options", upload_options),
                ("node", node),
            ] {
                if let Some(v) = value {
                    body[key] = json!(v);
                }
            }
            let v = client.json(
                "PUT",
                &format!("/v1/subscribers/{}", segment(&id)),
                Some(&body),
            )?;
            println!("{}", summary(&v));
        }
        CtlCommand::SetRate {
            id,
            download,
            upload,
        } => {
            if download.is_none() && upload.is_none() {
                return Err("give --download, --upload or both".into());
            }
            let mut body = json!({});
            if let Some(d) = download {
                body["download"] = json!(d);
            }
            if let Some(u) = upload {
                body["upload"] = json!(u);
            }
            let v = client.json(
                "PATCH",
                &format!("/v1/subscribers/{}", segment(&id)),
                Some(&body),
            )?;
            println!("{}", summary(&v));
        }
        CtlCommand::Remove { id } => {
            let v = client.json("DELETE", &format!("/v1/subscribers/{}", segment(&id)), None)?;
            println!("{}", summary(&v));
        }
        CtlCommand::Apply { file, replace } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let mut body: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{}:{}: not JSON: {e}", file.display(), e.line()))?;
            if replace {
                body["replace"] = json!(true);
            }
            let v = client.json("POST", "/v1/apply", Some(&body))?;
            println!("{}", summary(&v));
        }
        CtlCommand::Reload => {
            let v = client.json("POST", "/v1/reload", None)?;
            println!("{}", summary(&v));
        }
        CtlCommand::Watch {
            count,
            interval,
            once,
        } => loop {
            let v = client.json("GET", &format!("/v1/top?count={count}"), None)?;
            if once {
                println!(
                    "sheetcake at {}: the {count} busiest subscribers\n",
                    client.base
                );
            } else {
                // Clear the screen and go home, like top.
                print!("\x1b[2J\x1b[H");
                println!(
                    "sheetcake at {}: the {count} busiest subscribers (refresh every {interval} s)\n",
                    client.base
                );
            }
            println!(
                "{:<24} {:>16} {:>16} {:>14} {:>14}",
                "id", "download", "upload", "down backlog", "up backlog"
            );
            for s in v["subscribers"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:>16} {:>16} {:>13}B {:>13}B",
                    s["id"].as_str().unwrap_or(""),
                    bits(s["download_bytes_per_second"].as_f64().unwrap_or(0.0)),
                    bits(s["upload_bytes_per_second"].as_f64().unwrap_or(0.0)),
                    s["download_backlog_bytes"],
                    s["upload_backlog_bytes"],
                );
            }
            if once {
                break;
            }
            std::thread::sleep(Duration::from_secs_f64(interval.max(0.1)));
        },
        CtlCommand::Completions { shell } => {
            let mut command = <crate::Args as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "sheetcake", &mut std::io::stdout());
        }
    }
    Ok(())
}
