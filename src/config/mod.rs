//! Configuration: built-in defaults, overlaid by a strict TOML file, overlaid by `PISTATS_*`
//! environment variables and command-line flags (clap merges those two).
//!
//! Unknown keys are errors (`deny_unknown_fields`): a typo in `/etc/pistats/config.toml` must
//! not silently fall back to a default. The daemon exits with [`EX_CONFIG`] (78, sysexits) on a
//! bad file so systemd's `RestartPreventExitStatus=78` stops a restart loop.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// sysexits.h `EX_CONFIG`: configuration error.
pub const EX_CONFIG: u8 = 78;
/// Where the packaged configuration lives; read when present and no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pistats/config.toml";
/// Seed compatibility: the Python broadcaster listened on all addresses.
pub const DEFAULT_HOST: &str = "0.0.0.0";
/// Seed compatibility: `ws://PI:8765`.
pub const DEFAULT_PORT: u16 = 8765;
/// One stats document per second, like the Python broadcaster.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Below this, collection itself becomes a noticeable load on a Pi Zero.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// Upper bound for every duration setting: far beyond any sensible value, and small enough
/// that deadlines computed from it can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Upper bound for `max_message_size`.
pub const MAX_MESSAGE_SIZE_LIMIT: usize = 16 * 1024 * 1024;
/// The Python broadcaster's `websockets` library defaults: ping every 20 s, drop after 20 s
/// without pong.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// A client whose socket does not accept one document within this time is dropped, so it can
/// never hold back anyone else.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// The Python broadcaster's "top 10 processes by CPU".
pub const DEFAULT_TOP_PROCESSES: usize = 10;
/// Ten minutes of compact history points for the dashboard's charts.
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(600);
/// Dashboard locations tried in order when `assets_dir` is not set: a source checkout
/// (`cargo run`), then the Debian package's.
pub const DEFAULT_ASSETS_DIRS: &[&str] = &["assets", "/usr/share/pistats/assets"];
/// The Python network monitor watched `wlan0`.
pub const DEFAULT_INTERFACE: &str = "wlan0";
/// Enough for a household; each client costs a few KiB.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;
pub const DEFAULT_MAX_CLIENTS_PER_IP: usize = 64;
/// Clients have nothing to send but pongs and close frames.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4096;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// When the HTTP/WebSocket listener is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ServePolicy {
    /// Listen all the time (built-in default, so `cargo run` serves anywhere).
    #[default]
    Always,
    /// Listen only while `interface` is connected, like the Python network monitor.
    WhileConnected,
    /// Listen on `host` while `interface` is connected and on loopback only while it is not,
    /// so the Pi itself (or an SSH tunnel) still sees the dashboard offline.
    LoopbackWhileOffline,
}

/// Log verbosity, mapped onto `tracing` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// The complete, validated configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub host: IpAddr,
    /// TCP port for WebSocket, REST, metrics and dashboard (0 picks a free one).
    pub port: u16,
    /// Time between two stats documents.
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub ping_interval: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub ping_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub send_timeout: Duration,
    /// How many processes `processes.top_cpu_usage` lists.
    pub top_processes: usize,
    /// How far back `/api/v1/history` reaches.
    #[serde(deserialize_with = "de_duration")]
    pub history: Duration,
    /// Directory holding the dashboard (`index.html`, …); see [`DEFAULT_ASSETS_DIRS`].
    pub assets_dir: Option<PathBuf>,
    pub log_level: LogLevel,
    pub serve: ServePolicy,
    /// Interface whose connectivity is reported and, with `serve = "while-connected"` or
    /// `"loopback-while-offline"`, gates the listener.
    pub interface: String,
    /// If set, every API and WebSocket request needs `Authorization: Bearer TOKEN` or
    /// `?token=TOKEN`. The dashboard page itself loads without it and asks for it.
    pub token: Option<String>,
    /// If non-empty, WebSocket upgrades whose `Origin` is not listed are refused (403).
    pub allowed_origins: Vec<String>,
    pub max_clients: usize,
    pub max_clients_per_ip: usize,
    /// Largest WebSocket message accepted from a client, in bytes.
    pub max_message_size: usize,
    /// Report top processes without their names.
    pub hide_process_names: bool,
    /// PEM certificate chain (leaf first); with `tls_key` set too, the port speaks only
    /// HTTPS and WSS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Root of the proc file system read by the collector (fixture trees in tests).
    pub proc_root: PathBuf,
    /// Root of the sys file system read by the collector (fixture trees in tests).
    pub sys_root: PathBuf,
    /// `vcgencmd`, used (cached, with a timeout) only when the firmware's sysfs files are absent.
    pub vcgencmd: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: DEFAULT_HOST.parse().expect("valid default host"),
            port: DEFAULT_PORT,
            interval: DEFAULT_INTERVAL,
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            top_processes: DEFAULT_TOP_PROCESSES,
            history: DEFAULT_HISTORY,
            assets_dir: None,
            log_level: LogLevel::Info,
            serve: ServePolicy::Always,
            interface: DEFAULT_INTERFACE.to_owned(),
            token: None,
            allowed_origins: Vec::new(),
            max_clients: DEFAULT_MAX_CLIENTS,
            max_clients_per_ip: DEFAULT_MAX_CLIENTS_PER_IP,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            hide_process_names: false,
            tls_cert: None,
            tls_key: None,
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            vcgencmd: PathBuf::from("/usr/bin/vcgencmd"),
        }
    }
}

/// Settings given on the command line or as `PISTATS_*` variables; they win over the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Address to listen on [default: 0.0.0.0]
    #[arg(long, global = true, env = "PISTATS_HOST")]
    pub host: Option<IpAddr>,
    /// TCP port (0 = any free port) [default: 8765]
    #[arg(long, global = true, env = "PISTATS_PORT")]
    pub port: Option<u16>,
    /// Time between documents, e.g. 1s, 500ms [default: 1s]
    #[arg(long, global = true, env = "PISTATS_INTERVAL", value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// WebSocket ping interval [default: 20s]
    #[arg(long, global = true, env = "PISTATS_PING_INTERVAL", value_parser = parse_duration)]
    pub ping_interval: Option<Duration>,
    /// Drop a client that has not answered a ping for this long [default: 20s]
    #[arg(long, global = true, env = "PISTATS_PING_TIMEOUT", value_parser = parse_duration)]
    pub ping_timeout: Option<Duration>,
    /// Drop a client whose socket does not take a document for this long [default: 5s]
    #[arg(long, global = true, env = "PISTATS_SEND_TIMEOUT", value_parser = parse_duration)]
    pub send_timeout: Option<Duration>,
    /// Number of top processes reported [default: 10]
    #[arg(long, global = true, env = "PISTATS_TOP_PROCESSES")]
    pub top_processes: Option<usize>,
    /// History kept for the dashboard [default: 10m]
    #[arg(long, global = true, env = "PISTATS_HISTORY", value_parser = parse_duration)]
    pub history: Option<Duration>,
    /// Dashboard directory
    #[arg(long, global = true, env = "PISTATS_ASSETS_DIR")]
    pub assets_dir: Option<PathBuf>,
    /// Log level
    #[arg(long, global = true, env = "PISTATS_LOG_LEVEL", value_enum)]
    pub log_level: Option<LogLevel>,
    /// When to listen
    #[arg(long, global = true, env = "PISTATS_SERVE", value_enum)]
    pub serve: Option<ServePolicy>,
    /// Watched network interface [default: wlan0]
    #[arg(long, global = true, env = "PISTATS_INTERFACE")]
    pub interface: Option<String>,
    /// Access token required by the API and WebSocket
    #[arg(long, global = true, env = "PISTATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// TLS certificate chain (PEM); serve HTTPS/WSS with --tls-key
    #[arg(long, global = true, env = "PISTATS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, global = true, env = "PISTATS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Root of /proc to read (testing)
    #[arg(long, global = true, env = "PISTATS_PROC_ROOT", hide = true)]
    pub proc_root: Option<PathBuf>,
    /// Root of /sys to read (testing)
    #[arg(long, global = true, env = "PISTATS_SYS_ROOT", hide = true)]
    pub sys_root: Option<PathBuf>,
    /// vcgencmd path (testing)
    #[arg(long, global = true, env = "PISTATS_VCGENCMD", hide = true)]
    pub vcgencmd: Option<PathBuf>,
}

impl Config {
    /// Parses and validates a TOML document; `path` only names the file in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_owned(),
            message: describe_toml_error(text, &err),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads `path`, or [`DEFAULT_CONFIG_PATH`] when it exists, or uses built-in defaults;
    /// then applies `overrides`. Returns the config and the file it came from, if any.
    pub fn load(
        path: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let path = match path {
            Some(path) => Some(path.to_owned()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
        };
        let mut config = match &path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Config::from_toml(&text, path)?
            }
            None => Config::default(),
        };
        config.apply(overrides);
        config.validate()?;
        Ok((config, path))
    }

    fn apply(&mut self, o: &Overrides) {
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(value) = &o.$field { self.$field = value.clone(); }
            )*};
        }
        set!(
            host,
            port,
            interval,
            ping_interval,
            ping_timeout,
            send_timeout,
            top_processes,
            history,
            log_level,
            serve,
            interface,
            proc_root,
            sys_root,
            vcgencmd
        );
        // Settings that are optional in the file too: an override replaces `None` as well.
        macro_rules! set_optional {
            ($($field:ident),*) => {$(
                if o.$field.is_some() { self.$field = o.$field.clone(); }
            )*};
        }
        set_optional!(assets_dir, token, tls_cert, tls_key);
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        if self.interval < MIN_INTERVAL {
            return invalid(
                "interval",
                format!(
                    "{:?} is below the minimum of {MIN_INTERVAL:?}",
                    self.interval
                ),
            );
        }
        for (key, value) in [
            ("interval", self.interval),
            ("ping_interval", self.ping_interval),
            ("ping_timeout", self.ping_timeout),
            ("send_timeout", self.send_timeout),
            ("history", self.history),
        ] {
            if value > MAX_DURATION {
                return invalid(key, format!("{value:?} is above the maximum of 24h"));
            }
        }
        if self.ping_interval.is_zero() || self.ping_timeout.is_zero() {
            return invalid(
                "ping_interval",
                "ping interval and timeout must be > 0".into(),
            );
        }
        if self.send_timeout.is_zero() {
            return invalid("send_timeout", "must be > 0".into());
        }
        if self.top_processes > 1000 {
            return invalid("top_processes", "at most 1000".into());
        }
        if self.max_clients == 0 || self.max_clients_per_ip == 0 {
            return invalid("max_clients", "limits must be at least 1".into());
        }
        if !(125..=MAX_MESSAGE_SIZE_LIMIT).contains(&self.max_message_size) {
            return invalid(
                "max_message_size",
                format!("must be between 125 and {MAX_MESSAGE_SIZE_LIMIT} bytes"),
            );
        }
        if self.interface.is_empty() || self.interface.len() > 15 || self.interface.contains('/') {
            return invalid(
                "interface",
                format!("{:?} is not an interface name", self.interface),
            );
        }
        if self.token.as_deref() == Some("") {
            return invalid("token", "must not be empty (remove it to disable)".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return invalid(
                "tls_cert",
                "tls_cert and tls_key go together: set both or neither".into(),
            );
        }
        Ok(())
    }

    /// Number of history points kept.
    pub fn history_len(&self) -> usize {
        (self.history.as_millis() / self.interval.as_millis().max(1)) as usize
    }

    /// The dashboard directory actually used: the configured one, else the first default
    /// that exists.
    pub fn resolved_assets_dir(&self) -> Option<PathBuf> {
        match &self.assets_dir {
            Some(dir) => Some(dir.clone()),
            None => DEFAULT_ASSETS_DIRS
                .iter()
                .map(PathBuf::from)
                .find(|dir| dir.join("index.html").is_file()),
        }
    }
}

/// `toml`'s message already carries line, column and the offending key; add the key's line
/// as a plain `line N` phrase so logs are greppable even when the snippet is stripped.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message();
    match err.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}: {message} (`{snippet}`)")
        }
        None => message.to_owned(),
    }
}

/// Parses `250ms`, `1s`, `1.5s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = f64::from_str(number).map_err(|_| format!("invalid duration {text:?}"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m, h)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("invalid duration {text:?}"))
}

fn de_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration such as \"1s\", \"500ms\" or a number of seconds")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("duration must not be negative"))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
            Duration::try_from_secs_f64(v).map_err(E::custom)
        }
    }
    de.deserialize_any(Visitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"))
    }

    /// The configuration the Debian package installs is valid and mentions every setting
    /// (serde lists them all when it meets an unknown key).
    #[test]
    fn packaged_config_is_valid_and_complete() {
        let packaged = include_str!("../debian/config.toml");
        let config = parse(packaged).unwrap();
        assert_eq!(config.serve, ServePolicy::WhileConnected);
        let err = parse("no_such_setting = 1").unwrap_err().to_string();
        let (_, listed) = err
            .split_once("expected one of")
            .expect("serde lists the fields");
        // Drop the quoted offending line that follows the list.
        let listed = listed.split_once(" (`").map_or(listed, |(list, _)| list);
        let keys: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
        assert!(keys.len() > 20, "{err}");
        for key in keys {
            let documented = packaged.lines().any(|line| {
                let line = line.trim_start_matches('#');
                line.starts_with(&format!("{key} ="))
            });
            assert!(documented, "debian/config.toml does not document `{key}`");
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn durations_accept_units_and_numbers() {
        let c = parse("interval = \"500ms\"\nping_interval = 5\nhistory = \"2m\"").unwrap();
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!(c.ping_interval, Duration::from_secs(5));
        assert_eq!(c.history_len(), 240);
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = parse("port = 1\nprot = 2\n").unwrap_err().to_string();
        assert!(err.contains("test.toml"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn serve_policies_parse_in_kebab_case() {
        for (text, policy) in [
            ("always", ServePolicy::Always),
            ("while-connected", ServePolicy::WhileConnected),
            ("loopback-while-offline", ServePolicy::LoopbackWhileOffline),
        ] {
            assert_eq!(parse(&format!("serve = \"{text}\"")).unwrap().serve, policy);
        }
    }

    #[test]
    fn wrong_type_and_bad_values_are_rejected() {
        assert!(parse("port = \"http\"").is_err());
        assert!(parse("port = 70000").is_err());
        assert!(parse("serve = \"sometimes\"").is_err());
        let err = parse("interval = \"100ms\"").unwrap_err().to_string();
        assert!(err.contains("interval"), "{err}");
        assert!(parse("interface = \"../etc\"").is_err());
        assert!(parse("token = \"\"").is_err());
    }

    #[test]
    fn overrides_win_over_file() {
        let mut c = parse("port = 1000\nserve = \"while-connected\"").unwrap();
        assert_eq!(c.serve, ServePolicy::WhileConnected);
        c.apply(&Overrides {
            port: Some(2000),
            ..Default::default()
        });
        assert_eq!(c.port, 2000);
        assert_eq!(c.serve, ServePolicy::WhileConnected);
    }
}
