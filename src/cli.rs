//! Command line: `pistats` serves; `snapshot`, `check-config`, `network` and `notify-test` are
//! one-shot tools.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, Loaded, Overrides, EX_CONFIG, SETTINGS};
use crate::stats::{Collector, Context};

#[derive(Debug, Parser)]
#[command(
    name = "pistats",
    version,
    about = "Raspberry Pi system statistics over WebSocket, REST, Prometheus and a live dashboard"
)]
pub struct Cli {
    /// Configuration file [default: /etc/pistats/config.toml when it exists]
    #[arg(long, short, env = "PISTATS_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the feed, API and dashboard (the default)
    Serve,
    /// Print one stats document as JSON and exit
    Snapshot {
        /// Indent the JSON
        #[arg(long)]
        pretty: bool,
    },
    /// Validate a configuration file and exit (0 when valid, 78 when not)
    CheckConfig {
        /// File to check [default: --config, else /etc/pistats/config.toml]
        path: Option<PathBuf>,
        /// Also print every setting's value and where it comes from (file and line, flag,
        /// variable or built-in default)
        #[arg(long)]
        print: bool,
    },
    /// Show what the network detection sees for the watched interface; exit 1 if it is down
    Network,
    /// Send one test message through every [[notify]] endpoint and the [mqtt] broker; print
    /// each result; exit 0 when all succeeded, 1 otherwise
    NotifyTest,
}

/// Parses the command line and runs it; the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { ref path, print }) => {
            check_config(path.as_ref().or(cli.config.as_ref()), &cli.overrides, print)
        }
        Some(Command::Snapshot { pretty }) => {
            with_config(&cli, |config, _| snapshot(config, pretty))
        }
        Some(Command::Network) => with_config(&cli, |config, _| network(config)),
        Some(Command::NotifyTest) => with_config(&cli, |config, _| notify_test(&config)),
        Some(Command::Serve) | None => with_config(&cli, serve),
    }
}

fn with_config(cli: &Cli, run: impl FnOnce(Config, Option<PathBuf>) -> ExitCode) -> ExitCode {
    match Config::load(cli.config.as_deref(), &cli.overrides) {
        Ok((config, file)) => {
            init_logging(&config);
            run(config, file)
        }
        Err(err) => {
            eprintln!("pistats: {err}");
            ExitCode::from(EX_CONFIG)
        }
    }
}

fn init_logging(config: &Config) {
    // RUST_LOG, when set, refines the configured level (e.g. `RUST_LOG=pistats=debug`).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},hyper=warn,warp=warn",
            config.log_level.as_str()
        ))
    });
    // Under systemd, journald adds its own timestamps. Colour codes only make sense on a
    // terminal: in a file, a pipe or the journal they are noise (and NO_COLOR turns them off
    // anywhere, https://no-color.org: when set and not empty).
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal() && !no_color);
    if under_journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the tokio runtime")
}

fn serve(config: Config, file: Option<PathBuf>) -> ExitCode {
    crate::daemon::limit_malloc_arenas();
    match runtime().block_on(crate::daemon::run(config, file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err @ crate::daemon::DaemonError::Tls(_)) => {
            tracing::error!("{err}");
            ExitCode::from(EX_CONFIG)
        }
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: Option<&PathBuf>, overrides: &Overrides, print: bool) -> ExitCode {
    let loaded = Config::load_traced(path.map(|p| p.as_path()), overrides).and_then(|loaded| {
        // The certificate and key are part of the configuration: check that they load.
        if let (Some(cert), Some(key)) = (&loaded.config.tls_cert, &loaded.config.tls_key) {
            crate::http::tls::Tls::load(cert, key)
                .map_err(|err| loaded.origins.invalid(err.setting(), err.to_string()))?;
        }
        Ok(loaded)
    });
    match loaded {
        Ok(loaded) => {
            let alerting = &loaded.config.alerting;
            let alerts = format!(
                "{} alert rule(s), {} notifier(s), {}",
                alerting.rules.len(),
                alerting.notifiers.len(),
                alerting.mqtt.as_ref().map_or_else(
                    || "no MQTT".to_owned(),
                    |m| format!("MQTT to {}:{}", m.host, m.port)
                )
            );
            match &loaded.file {
                Some(file) => println!("{}: OK ({alerts})", file.display()),
                None => println!("no config file; built-in defaults are valid"),
            }
            if print {
                print_settings(&loaded);
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("pistats: {err}");
            ExitCode::from(EX_CONFIG)
        }
    }
}

/// One line per setting: `key = value  (origin)`, aligned.
fn print_settings(loaded: &Loaded) {
    let width = SETTINGS.iter().map(|s| s.key.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for setting in SETTINGS {
        let value = setting.show(&loaded.config);
        let origin = loaded.origins.of(setting.key);
        let _ = writeln!(out, "{:width$} = {value}  ({origin})", setting.key);
    }
}

fn snapshot(config: Config, pretty: bool) -> ExitCode {
    let mut collector = Collector::new(&config);
    // CPU usage needs two samples some time apart.
    std::thread::sleep(std::time::Duration::from_millis(250));
    let connectivity = runtime().block_on(crate::netwatch::probe(&config.interface));
    let document = collector.collect(Context {
        connected_clients: 0,
        connectivity: Some(connectivity),
    });
    let json = if pretty {
        serde_json::to_string_pretty(&document)
    } else {
        serde_json::to_string(&document)
    }
    .expect("the document serializes");
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{json}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn notify_test(config: &Config) -> ExitCode {
    let results = runtime().block_on(crate::alerts::notify_test(&config.alerting));
    if results.is_empty() {
        eprintln!("pistats: no [[notify]] table and no [mqtt] table in the configuration");
        return ExitCode::FAILURE;
    }
    let mut failed = 0;
    for (name, result) in &results {
        match result {
            Ok(()) => println!("{name}: OK"),
            Err(err) => {
                failed += 1;
                println!("{name}: FAILED: {err}");
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn network(config: Config) -> ExitCode {
    let c = runtime().block_on(crate::netwatch::probe(&config.interface));
    println!("interface:  {}", c.interface);
    println!("source:     {}", c.source);
    println!("state:      {}", c.state);
    println!("connected:  {}", if c.connected { "yes" } else { "no" });
    println!(
        "addresses:  {}",
        if c.addresses.is_empty() {
            "—".to_owned()
        } else {
            c.addresses.join(", ")
        }
    );
    if c.connected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
