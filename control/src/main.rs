//! `sheetcake`: the appliance daemon.

mod address_space;
mod api;
mod appliance;
mod config;
mod control_loop;
mod csv_text;
mod ctl;
mod handlers;
mod json_source;
mod libreqos;
mod live;
mod log;
mod metrics;
mod nodes;
mod preflight;
mod records;
mod registry;
mod report;
mod subscribers;

use clap::Parser;
use config::{Settings, EMBEDDED_DEMO, EMBEDDED_DEMO_SUBSCRIBERS};
use std::path::PathBuf;
use std::process::ExitCode;

/// A transparent bump-in-the-wire traffic shaper: every subscriber gets their own CAKE.
///
/// `sheetcake --config FILE` runs the appliance; `sheetcake ctl ...` talks to a running one.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// The configuration file (TOML; see deploy/sheetcake.toml.example). Without it, sheetcake
    /// runs the demo topology that `make run` builds.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Validate the configuration, print what would run, and exit.
    #[arg(long)]
    check_config: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Talk to a running sheetcake through its API: list, show, add, set-rate, remove, apply,
    /// reload, watch.
    Ctl(ctl::Ctl),
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Ctl(ctl)) = args.command {
        return ctl::run(ctl);
    }
    let settings = match &args.config {
        Some(path) => Settings::load(path),
        None => {
            log::info("no --config given, using the embedded demo configuration").emit();
            Settings::parse(EMBEDDED_DEMO, "<embedded demo>")
        }
    };
    let settings = match settings {
        Ok(settings) => settings,
        Err(errors) => {
            log_errors("the configuration is not valid", &errors);
            return ExitCode::from(2);
        }
    };
    let defaults = &settings.shaping.defaults;
    let subscribers = match &settings.shaping.source {
        Some(_) if args.config.is_none() => {
            match subscribers::SubscriberSet::parse(
                EMBEDDED_DEMO_SUBSCRIBERS,
                "<embedded demo subscribers>",
                defaults,
            ) {
                Ok(set) => Some(set),
                Err(errors) => {
                    log_errors("the demo subscribers are not valid", &errors);
                    return ExitCode::from(2);
                }
            }
        }
        Some(source) => match source.load(defaults) {
            Ok(set) => Some(set),
            Err(errors) => {
                log_errors("the subscriber source is not valid", &errors);
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    // What the machine lacks for this configuration (hugepages, NIC drivers), said before the
    // EAL would fail on it with a page of its own lines.
    let problems = preflight::check(&settings, std::path::Path::new("/"));
    if args.check_config {
        let say = |line: String| log::info(line).emit();
        say(format!("configuration {} is valid", settings.source));
        say(format!("  EAL arguments: {}", settings.eal_args.join(" ")));
        say(format!(
            "  workers on cores {:?}, control on core {}",
            settings.worker_cores, settings.control_core
        ));
        say(format!(
            "  mempool: {} mbufs of {} bytes, cache {}",
            settings.mbufs, settings.mbuf_data_room, settings.mbuf_cache
        ));
        for pair in &settings.pairs {
            say(format!(
                "  pair {}: core {} <-> access {}",
                pair.name,
                pair.ports[0].port_name(),
                pair.ports[1].port_name()
            ));
        }
        say(match &subscribers {
            Some(set) => format!(
                "  shaping {} subscribers ({} addresses and prefixes)",
                set.subscribers.len(),
                set.addresses.len()
            ),
            None => "  no subscriber file: bridging without shaping".into(),
        });
        if !problems.is_empty() {
            log_problems("this machine is not ready to run it", &problems);
            return ExitCode::from(1);
        }
        return ExitCode::SUCCESS;
    }
    if !problems.is_empty() {
        log_problems("cannot start", &problems);
        return ExitCode::from(1);
    }
    match appliance::run(&settings, args.config.as_deref(), subscribers) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error(err.to_string()).emit();
            ExitCode::from(err.exit_code())
        }
    }
}

/// Logs a refused file: what was refused and how many errors, then one line per error.
fn log_errors(what: &str, errors: &config::ConfigErrors) {
    log::error(what).field("errors", errors.0.len()).emit();
    for e in &errors.0 {
        log::error(e.to_string()).emit();
    }
}

/// Logs what the machine lacks: a summary, then one line per problem with what to run.
fn log_problems(what: &str, problems: &[preflight::MachineProblem]) {
    log::error(what).field("problems", problems.len()).emit();
    for p in problems {
        log::error(p.to_string()).emit();
    }
}
