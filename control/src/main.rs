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
mod metrics;
mod nodes;
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
            eprintln!("sheetcake: no --config given, using the embedded demo configuration");
            Settings::parse(EMBEDDED_DEMO, "<embedded demo>")
        }
    };
    let settings = match settings {
        Ok(settings) => settings,
        Err(errors) => {
            eprintln!("sheetcake: the configuration is not valid:\n{errors}");
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
                    eprintln!("sheetcake: the demo subscribers are not valid:\n{errors}");
                    return ExitCode::from(2);
                }
            }
        }
        Some(source) => match source.load(defaults) {
            Ok(set) => Some(set),
            Err(errors) => {
                eprintln!("sheetcake: the subscriber source is not valid:\n{errors}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    if args.check_config {
        println!("configuration {} is valid", settings.source);
        println!("  EAL arguments: {}", settings.eal_args.join(" "));
        println!(
            "  workers on cores {:?}, control on core {}",
            settings.worker_cores, settings.control_core
        );
        println!(
            "  mempool: {} mbufs of {} bytes, cache {}",
            settings.mbufs, settings.mbuf_data_room, settings.mbuf_cache
        );
        for pair in &settings.pairs {
            println!(
                "  pair {}: core {} <-> access {}",
                pair.name,
                pair.ports[0].port_name(),
                pair.ports[1].port_name()
            );
        }
        match &subscribers {
            Some(set) => println!(
                "  shaping {} subscribers ({} addresses and prefixes)",
                set.subscribers.len(),
                set.addresses.len()
            ),
            None => println!("  no subscriber file: bridging without shaping"),
        }
        return ExitCode::SUCCESS;
    }
    match appliance::run(&settings, subscribers) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sheetcake: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
