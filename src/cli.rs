//! Command line: `pistats` serves; `snapshot`, `check-config`, `network` and `notify-test` are
//! one-shot tools.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, Loaded, LogLevel, Overrides, EX_CONFIG, SETTINGS};
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

/// The log filter: `RUST_LOG`'s directives when it is set and not empty (`pistats=debug`,
/// `debug`, `pistats=debug,hyper=info`: a default level and `target=level` pairs), else the
/// configured level with hyper's and warp's chatter held at warn. When `RUST_LOG` does not
/// parse, the configured level and the reason to log once logging is up.
///
/// `Targets` rather than `EnvFilter`: the same directives for what anyone sets here, without
/// the span and field filters that pull a regular-expression engine into the binary (about
/// 0.35 MB of code; docs/benchmarks.md, "Idle memory and binary size").
fn log_filter(level: LogLevel, rust_log: Option<&str>) -> (Targets, Option<String>) {
    let configured = || {
        Targets::new()
            .with_default(match level {
                LogLevel::Error => tracing::Level::ERROR,
                LogLevel::Warn => tracing::Level::WARN,
                LogLevel::Info => tracing::Level::INFO,
                LogLevel::Debug => tracing::Level::DEBUG,
                LogLevel::Trace => tracing::Level::TRACE,
            })
            .with_target("hyper", tracing::Level::WARN)
            .with_target("warp", tracing::Level::WARN)
    };
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => (configured(), None),
        Some(directives) => match directives.parse::<Targets>() {
            Ok(targets) => (targets, None),
            Err(err) => (
                configured(),
                Some(format!(
                    "RUST_LOG={directives:?} ignored ({err}): it takes a level and \
                     target=level pairs, e.g. RUST_LOG=pistats=debug; logging at {}",
                    level.as_str()
                )),
            ),
        },
    }
}

fn init_logging(config: &Config) {
    // RUST_LOG, when set, refines the configured level (e.g. `RUST_LOG=pistats=debug`).
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, ignored) = log_filter(config.log_level, rust_log.as_deref());
    // Under systemd, stderr is the journal's stream: log through the journal's native
    // protocol instead, so each line keeps its priority *and* its fields (INTERFACE,
    // CLIENT_ADDR, ...) as journal fields that `journalctl FIELD=value` finds. Without the
    // socket (a container without journald, an unusual sandbox) the lines go to stderr with
    // `<N>` priority prefixes, which journald's stream reader understands too.
    let mut no_socket = None;
    if journal::stderr_is_journal() {
        match journal::native() {
            Ok(layer) => {
                tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .init();
                if let Some(ignored) = ignored {
                    tracing::warn!("{ignored}");
                }
                return;
            }
            Err(err) => no_socket = Some(err),
        }
    }
    // Colour codes only make sense on a terminal: in a file, a pipe or the journal they are
    // noise (and NO_COLOR turns them off anywhere, https://no-color.org: when set and not empty).
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal() && !no_color);
    let registry = tracing_subscriber::registry().with(filter);
    if let Some(err) = no_socket {
        // Each line starts with its syslog priority (`<4>` for a warning, sd-daemon(3)),
        // which journald takes as the entry's PRIORITY and strips from the message; journald
        // adds its own timestamps.
        let format = tracing_subscriber::fmt::format()
            .without_time()
            .with_target(false);
        registry
            .with(layer.event_format(journal::PriorityPrefix(format)))
            .init();
        tracing::debug!(
            "journal socket {} unavailable ({err}): logging to stderr with priority prefixes",
            journal::SOCKET
        );
    } else {
        registry.with(layer).init();
    }
    if let Some(ignored) = ignored {
        tracing::warn!("{ignored}");
    }
}

/// Logging into the journal: natively, or through stderr.
mod journal {
    use std::fmt;

    use tracing::{Event, Level, Subscriber};
    use tracing_journald::{Priority, PriorityMappings};
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
    use tracing_subscriber::registry::LookupSpan;

    /// Whether stderr is the journal's stream: systemd sets `JOURNAL_STREAM` to the
    /// `device:inode` of the socket it connects stderr to; a child whose stderr was redirected
    /// elsewhere inherits the variable but not the socket, so both must match (systemd.exec(5)).
    pub(super) fn stderr_is_journal() -> bool {
        let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
            return false;
        };
        let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
            return false;
        };
        // SAFETY: fstat writes into the zeroed struct it is given.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(libc::STDERR_FILENO, &mut stat) } != 0 {
            return false;
        }
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        let (st_dev, st_ino) = (u64::from(stat.st_dev), u64::from(stat.st_ino));
        st_dev == dev && st_ino == ino
    }

    /// The journal's native socket (systemd-journald.socket).
    pub(super) const SOCKET: &str = "/run/systemd/journal/socket";

    /// A layer writing each event to the journal's native socket (fails when nothing listens
    /// there). Priorities are the same as with prefixes on stderr: info is 6, not the crate's
    /// default 5 ("notice"), so `journalctl -p notice` does not list routine lines. Field names
    /// go in unprefixed and upper-cased (`client_addr` becomes `CLIENT_ADDR`): the daemon's
    /// field names are chosen not to collide with the journal's own (README, "Logs").
    pub(super) fn native() -> std::io::Result<tracing_journald::Layer> {
        Ok(tracing_journald::layer()?
            .with_field_prefix(None)
            .with_syslog_identifier("pistats".to_owned())
            .with_priority_mappings(PriorityMappings {
                error: Priority::Error,
                warn: Priority::Warning,
                info: Priority::Informational,
                debug: Priority::Debug,
                trace: Priority::Debug,
            }))
    }

    /// The syslog priority of a tracing level: error 3, warning 4, info 6, debug and trace 7.
    pub(super) fn priority(level: &Level) -> u8 {
        match *level {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        }
    }

    /// Wraps a line format with the `<N>` priority prefix journald reads.
    pub(super) struct PriorityPrefix<F>(pub(super) F);

    impl<S, N, F> FormatEvent<S, N> for PriorityPrefix<F>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
        F: FormatEvent<S, N>,
    {
        fn format_event(
            &self,
            ctx: &FmtContext<'_, S, N>,
            mut writer: Writer<'_>,
            event: &Event<'_>,
        ) -> fmt::Result {
            // journald reads each line on its own: a message of several lines gets the
            // prefix on every one, or its continuation would be filed as info.
            let mut line = String::new();
            self.0.format_event(ctx, Writer::new(&mut line), event)?;
            let prefix = priority(event.metadata().level());
            for part in line.trim_end_matches('\n').split('\n') {
                writeln!(writer, "<{prefix}>{part}")?;
            }
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[derive(Clone, Default)]
        struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

        impl std::io::Write for Buffer {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(data);
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        #[test]
        fn every_line_of_a_message_carries_the_priority() {
            let buffer = Buffer::default();
            let out = buffer.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_writer(move || out.clone())
                .with_ansi(false)
                .event_format(PriorityPrefix(
                    tracing_subscriber::fmt::format()
                        .without_time()
                        .with_target(false),
                ))
                .finish();
            tracing::subscriber::with_default(subscriber, || {
                tracing::warn!(interface = "wlan0", "first line\nsecond line");
                tracing::error!("fatal");
                tracing::info!("fine");
            });
            let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 4, "{text}");
            assert!(lines[0].starts_with("<4>") && lines[0].contains("first line"));
            assert!(lines[1].starts_with("<4>second line"), "{text}");
            assert!(lines[1].contains("interface=\"wlan0\""), "{text}");
            assert!(lines[2].starts_with("<3>") && lines[2].contains("fatal"));
            assert!(lines[3].starts_with("<6>") && lines[3].contains("fine"));
        }

        #[test]
        fn priorities_follow_syslog() {
            assert_eq!(priority(&Level::ERROR), 3);
            assert_eq!(priority(&Level::WARN), 4);
            assert_eq!(priority(&Level::INFO), 6);
            assert_eq!(priority(&Level::DEBUG), 7);
            assert_eq!(priority(&Level::TRACE), 7);
        }
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
    let runtime = runtime();
    let result = runtime.block_on(crate::daemon::run(config, file));
    // Blocking work stuck on a file that never answers must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
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
    let connectivity =
        runtime().block_on(crate::netwatch::probe(&config.interface, &config.proc_root));
    let document = collector.collect(Context {
        connected_clients: 0,
        connectivity: Some(std::sync::Arc::new(connectivity)),
        full: true,
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
    let c = runtime().block_on(crate::netwatch::probe(&config.interface, &config.proc_root));
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
    if let Some(reason) = &c.reason {
        println!("reason:     {reason}");
    }
    if let Some(w) = &c.wifi {
        print_wifi(w);
    }
    if c.connected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The Wi-Fi lines of `pistats network`; `—` for what the source does not know.
fn print_wifi(w: &crate::stats::model::Wifi) {
    fn or_dash(value: Option<String>) -> String {
        value.unwrap_or_else(|| "—".to_owned())
    }
    println!("ssid:       {}", or_dash(w.ssid.clone()));
    println!("bssid:      {}", or_dash(w.bssid.clone()));
    println!(
        "signal:     {}",
        or_dash(w.signal_dbm.map(|d| format!("{d} dBm")))
    );
    println!(
        "quality:    {}",
        or_dash(w.quality_percent.map(|q| format!("{q} %")))
    );
    println!(
        "frequency:  {}",
        or_dash(w.frequency_mhz.map(|f| match w.band {
            Some(band) => format!("{f} MHz ({band})"),
            None => format!("{f} MHz"),
        }))
    );
    println!(
        "bitrate:    {}",
        or_dash(w.bitrate_mbps().map(|m| format!("{m} Mbit/s")))
    );
    println!("security:   {}", or_dash(w.security.clone()));
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn configured_level_holds_hyper_and_warp_at_warn() {
        let (filter, ignored) = log_filter(LogLevel::Info, None);
        assert!(ignored.is_none());
        assert!(filter.would_enable("pistats::server", &Level::INFO));
        assert!(!filter.would_enable("pistats::server", &Level::DEBUG));
        assert!(!filter.would_enable("hyper::proto::h1", &Level::INFO));
        assert!(filter.would_enable("hyper::proto::h1", &Level::WARN));
        assert!(!filter.would_enable("warp::filters", &Level::INFO));
        let (filter, _) = log_filter(LogLevel::Error, Some("  "));
        assert!(filter.would_enable("pistats", &Level::ERROR));
        assert!(!filter.would_enable("pistats", &Level::WARN));
    }

    #[test]
    fn rust_log_replaces_the_configured_level() {
        let (filter, ignored) = log_filter(LogLevel::Warn, Some("pistats=debug"));
        assert!(ignored.is_none());
        assert!(filter.would_enable("pistats::network", &Level::DEBUG));
        assert!(!filter.would_enable("pistats::network", &Level::TRACE));
        // As with EnvFilter before: targets the directives do not name stay off.
        assert!(!filter.would_enable("hyper", &Level::ERROR));
        let (filter, _) = log_filter(LogLevel::Warn, Some("debug,hyper=info"));
        assert!(filter.would_enable("zbus::conn", &Level::DEBUG));
        assert!(filter.would_enable("hyper::server", &Level::INFO));
        assert!(!filter.would_enable("hyper::server", &Level::DEBUG));
    }

    #[test]
    fn unparsable_rust_log_keeps_the_configured_level_and_says_why() {
        for bad in [
            "pistats=loud",
            "pistats=debug,hyper=loud",
            "[span{field=1}]=debug",
        ] {
            let (filter, ignored) = log_filter(LogLevel::Info, Some(bad));
            let ignored = ignored.unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(
                ignored.contains("ignored") && ignored.contains(bad),
                "{ignored}"
            );
            assert!(filter.would_enable("pistats", &Level::INFO), "{bad:?}");
            assert!(!filter.would_enable("pistats", &Level::DEBUG), "{bad:?}");
        }
    }
}
