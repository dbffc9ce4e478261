//! Configuration: built-in defaults, overlaid by a strict TOML file, overlaid by `PISTATS_*`
//! environment variables and command-line flags (a flag wins over its variable).
//!
//! Each setting is declared once, in [`settings`]; its key, flag, variable, bounds and the
//! wording of its errors all come from that declaration. Unknown keys are errors: a typo in
//! `/etc/pistats/config.toml` must not silently fall back to a default. Every error names
//! where the bad value came from (file and line, flag or variable) and the key, and the
//! daemon exits with [`EX_CONFIG`] (78, sysexits) so systemd's `RestartPreventExitStatus=78`
//! stops a restart loop.

pub mod alerting;
pub mod settings;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use settings::{
    show_duration, Bounds, Config, Setting, Value, Visibility, DEFAULT_MAX_CLIENTS,
    DEFAULT_MAX_CLIENTS_PER_IP, DEFAULT_MAX_MESSAGE_SIZE, SETTINGS,
};

/// sysexits.h `EX_CONFIG`: configuration error.
pub const EX_CONFIG: u8 = 78;
/// Where the packaged configuration lives; read when present and no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pistats/config.toml";
/// Seed compatibility: `ws://PI:8765`.
pub const DEFAULT_PORT: u16 = 8765;
/// One stats document per second, like the Python broadcaster.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Below this, collection itself becomes a noticeable load on a Pi Zero.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);
/// Upper bound for every duration setting (only `history` reaches it): far beyond any
/// sensible value, and small enough that deadlines computed from it can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Upper bound for `max_message_size`: clients only send pongs and close frames, and every
/// connected client may hold a message this large in memory.
pub const MAX_MESSAGE_SIZE_LIMIT: usize = 1024 * 1024;
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
    /// A value out of bounds or of the wrong kind; `message` says what `key` must be.
    #[error("{}", describe_invalid(origin, message))]
    Invalid {
        key: &'static str,
        origin: Origin,
        message: String,
    },
}

fn describe_invalid(origin: &Origin, message: &str) -> String {
    match origin {
        Origin::Default => format!("invalid configuration: {message}"),
        origin => format!("{origin}: {message}"),
    }
}

/// When the HTTP/WebSocket listener is open. Names (file, flag, variable) are clap's
/// kebab-case of the variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
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

/// Where a setting's value came from; errors name it so the user knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File {
        path: PathBuf,
        line: usize,
    },
    /// `--port`
    Flag(String),
    /// `PISTATS_PORT`
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File { path, line } => write!(f, "{}, line {line}", path.display()),
            Origin::Flag(flag) => write!(f, "command-line flag {flag}"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// The origin of every setting's value, to name it in errors found after loading.
#[derive(Debug, Clone, Default)]
pub struct Origins(BTreeMap<&'static str, Origin>);

impl Origins {
    pub fn of(&self, key: &str) -> Origin {
        self.0.get(key).cloned().unwrap_or(Origin::Default)
    }

    /// An error about `key`, naming where its value came from.
    pub fn invalid(&self, key: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key,
            origin: self.of(key),
            message: message.into(),
        }
    }
}

/// A loaded configuration with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    pub origins: Origins,
}

/// Settings given as command-line flags or `PISTATS_*` variables; they win over the file
/// (a flag over its variable). Every setting in [`SETTINGS`] has both. The values stay text
/// here and are parsed by [`Config::load`] like the file's, so a bad one is a configuration
/// error (exit 78) in the same words, not a usage error.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    given: Vec<Given>,
}

#[derive(Clone)]
struct Given {
    setting: &'static Setting,
    /// `None`: not UTF-8, which no setting accepts (TOML cannot say it either).
    text: Option<String>,
    origin: Origin,
}

impl fmt::Debug for Given {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} from {}", self.setting.key, self.origin)
    }
}

impl Overrides {
    /// Overrides as if given by flags, e.g. `[("port", "2000")]`; for tests and embedders.
    ///
    /// # Panics
    /// If a key is not a setting: that is a bug in the caller, not a user's mistake.
    pub fn flags<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Overrides {
        let mut overrides = Overrides::default();
        for (key, text) in pairs {
            let setting = Setting::find(key).unwrap_or_else(|| panic!("no setting {key}"));
            overrides.set(setting, Some(text.to_owned()), Origin::Flag(setting.flag()));
        }
        overrides
    }

    fn set(&mut self, setting: &'static Setting, text: Option<String>, origin: Origin) {
        self.given.retain(|g| g.setting.key != setting.key);
        self.given.push(Given {
            setting,
            text,
            origin,
        });
    }

    fn apply(&self, config: &mut Config, origins: &mut Origins) -> Result<(), ConfigError> {
        for given in &self.given {
            let set = match &given.text {
                Some(text) => given.setting.set_text(config, text),
                None => Err(format!("{} (and valid UTF-8)", given.setting.requirement())),
            };
            set.map_err(|message| ConfigError::Invalid {
                key: given.setting.key,
                origin: given.origin.clone(),
                message,
            })?;
            origins.0.insert(given.setting.key, given.origin.clone());
        }
        Ok(())
    }
}

const SETTINGS_HEADING: &str = "Settings (each also a PISTATS_* variable and a config file key)";

impl clap::Args for Overrides {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        cmd = cmd.next_help_heading(SETTINGS_HEADING);
        for setting in SETTINGS {
            let help = format!("{} [default: {}]", setting.summary(), (setting.default)());
            let mut arg = clap::Arg::new(setting.key)
                .long(setting.flag().trim_start_matches('-').to_owned())
                .env(setting.env())
                .value_name(setting.key.to_ascii_uppercase())
                .global(true)
                .value_parser(clap::value_parser!(std::ffi::OsString))
                .help(help)
                .long_help(format!(
                    "{}\n\nMust be {} [default: {}]",
                    setting.summary(),
                    (setting.expected)(),
                    (setting.default)()
                ))
                .hide(setting.visibility == Visibility::Hidden)
                .hide_env_values(setting.visibility == Visibility::Secret);
            if setting.switch {
                // `--hide-process-names` alone, or `--hide-process-names=false`.
                arg = arg
                    .num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true");
            }
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for Overrides {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut overrides = Overrides::default();
        overrides.update_from_arg_matches(matches)?;
        Ok(overrides)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        for setting in SETTINGS {
            let Some(value) = matches.get_one::<std::ffi::OsString>(setting.key) else {
                continue;
            };
            let origin = match matches.value_source(setting.key) {
                Some(clap::parser::ValueSource::EnvVariable) => Origin::Env(setting.env()),
                _ => Origin::Flag(setting.flag()),
            };
            self.set(setting, value.to_str().map(str::to_owned), origin);
        }
        Ok(())
    }
}

impl Config {
    /// Parses and validates a TOML document; `path` only names the file in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let mut origins = Origins::default();
        read_toml(&mut config, &mut origins, text, path)?;
        config.validate(&origins)?;
        Ok(config)
    }

    /// Reads `path`, or [`DEFAULT_CONFIG_PATH`] when it exists, or uses built-in defaults;
    /// then applies `overrides`. Returns the config and the file it came from, if any.
    pub fn load(
        path: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<(Config, Option<PathBuf>), ConfigError> {
        Config::load_traced(path, overrides).map(|loaded| (loaded.config, loaded.file))
    }

    /// [`Config::load`], also telling where each value came from.
    pub fn load_traced(path: Option<&Path>, overrides: &Overrides) -> Result<Loaded, ConfigError> {
        let path = match path {
            Some(path) => Some(path.to_owned()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
        };
        let mut config = Config::default();
        let mut origins = Origins::default();
        if let Some(path) = &path {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            read_toml(&mut config, &mut origins, &text, path)?;
        }
        overrides.apply(&mut config, &mut origins)?;
        config.validate(&origins)?;
        Ok(Loaded {
            config,
            file: path,
            origins,
        })
    }

    /// Checks between settings; each one alone was checked against its bounds when read.
    fn validate(&self, origins: &Origins) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            let (set, missing) = if self.tls_cert.is_some() {
                ("tls_cert", "tls_key")
            } else {
                ("tls_key", "tls_cert")
            };
            return Err(origins.invalid(
                set,
                format!("{set} is set but {missing} is not: set both (HTTPS and WSS) or neither"),
            ));
        }
        // The tiers' other bounds follow from each setting's own; an interval longer than a
        // minute is handled by the history subsystem (it falls back to its default tiers).
        self.check_points(origins, "history", self.history, MAX_HISTORY_POINTS as u128)?;
        self.check_points(
            origins,
            "history_raw",
            self.history_raw,
            crate::history::MAX_RAW_POINTS,
        )?;
        Ok(())
    }

    /// A span of history kept at every `interval` must not exceed `max` points. The error
    /// names the one of the two settings the user set (the span when both or neither).
    fn check_points(
        &self,
        origins: &Origins,
        key: &'static str,
        span: Duration,
        max: u128,
    ) -> Result<(), ConfigError> {
        let points = span.as_millis() / self.interval.as_millis().max(1);
        if points <= max {
            return Ok(());
        }
        let blamed =
            if origins.of(key) == Origin::Default && origins.of("interval") != Origin::Default {
                "interval"
            } else {
                key
            };
        Err(origins.invalid(
            blamed,
            format!(
                "{key} of {} at an interval of {} keeps {points} points, more than the {max} \
                 allowed: shorten {key} or lengthen interval",
                show_duration(span),
                show_duration(self.interval),
            ),
        ))
    }

    /// The long-term history's tiers: fixed buckets (1 minute, 15 minutes), configured
    /// retentions.
    pub fn history_tiers(&self) -> crate::history::HistoryConfig {
        use crate::history::{HistoryConfig, TierConfig};
        let defaults = HistoryConfig::default();
        HistoryConfig {
            interval: self.interval,
            raw_keep: self.history_raw,
            fine: TierConfig {
                keep: self.history_minute,
                ..defaults.fine
            },
            coarse: TierConfig {
                keep: self.history_quarter,
                ..defaults.coarse
            },
        }
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

/// Most history points kept in memory (a day at the default interval; about 20 MiB).
pub const MAX_HISTORY_POINTS: usize = 86_400;

/// Applies a TOML document's settings to `config`, recording each key's line.
fn read_toml(
    config: &mut Config,
    origins: &mut Origins,
    text: &str,
    path: &Path,
) -> Result<(), ConfigError> {
    let parse_error = |message| ConfigError::Parse {
        path: path.to_owned(),
        message,
    };
    let table: BTreeMap<toml::Spanned<String>, toml::Value> =
        toml::from_str(text).map_err(|err| parse_error(describe_toml_error(text, &err)))?;
    // In file order, so the first problem reported is the first one in the file.
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    for (key, value) in entries {
        let line = line_of(text, key.span().start);
        if alerting::TABLES.contains(&key.get_ref().as_str()) {
            continue;
        }
        let Some(setting) = Setting::find(key.get_ref()) else {
            return Err(parse_error(unknown_key(text, line, key.get_ref())));
        };
        let origin = Origin::File {
            path: path.to_owned(),
            line,
        };
        setting
            .set_toml(config, value)
            .map_err(|message| ConfigError::Invalid {
                key: setting.key,
                origin: origin.clone(),
                message,
            })?;
        origins.0.insert(setting.key, origin);
    }
    config.alerting = alerting::read(text, path)?;
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .unwrap_or(text)
        .matches('\n')
        .count()
        + 1
}

/// "line 2: unknown setting `prot` (did you mean `port`?)", or the list of settings when
/// nothing is close.
fn unknown_key(text: &str, line: usize, key: &str) -> String {
    let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
    let closest = SETTINGS
        .iter()
        .map(|s| (edit_distance(key, s.key), s.key))
        .min()
        .filter(|(distance, _)| *distance <= 2);
    match closest {
        Some((_, near)) => {
            format!("line {line}: unknown setting `{key}` (did you mean `{near}`?) (`{snippet}`)")
        }
        None => {
            let all: Vec<String> = SETTINGS.iter().map(|s| format!("`{}`", s.key)).collect();
            format!(
                "line {line}: unknown setting `{key}`, expected one of {} (`{snippet}`)",
                all.join(", ")
            )
        }
    }
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `toml`'s message already carries line, column and the offending key; add the key's line
/// as a plain `line N` phrase so logs are greppable even when the snippet is stripped.
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = err.message();
    match err.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let snippet = text.lines().nth(line - 1).unwrap_or("").trim();
            // A line holding a secret (`token`, `password`, `headers`) is never echoed.
            let key = snippet
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if ["token", "password", "headers"]
                .iter()
                .any(|s| key.contains(s))
            {
                return format!("line {line}: {message} (in `{key}`, whose value is not shown)");
            }
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
        "d" => number * 86_400.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m, h, d)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("invalid duration {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"))
    }

    /// The configuration the Debian package installs is valid and mentions every setting
    /// (the error for an unknown key lists them all).
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
    fn history_tiers_take_their_retentions_in_days() {
        let c = parse("history_minute = \"2d\"\nhistory_quarter = \"90d\"\nhistory_raw = \"10m\"")
            .unwrap();
        let tiers = c.history_tiers();
        assert_eq!(tiers.fine.keep, Duration::from_secs(2 * 86_400));
        assert_eq!(tiers.coarse.keep, Duration::from_secs(90 * 86_400));
        assert_eq!(tiers.raw_keep, Duration::from_secs(600));
        assert!(tiers.validate().is_ok());
        assert_eq!(
            Config::default().history_tiers(),
            crate::history::HistoryConfig::default()
        );
        let err = parse("history_quarter = \"11000d\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("history_quarter") && err.contains("3650d"),
            "{err}"
        );
        let err = parse("history_minute = \"30s\"").unwrap_err().to_string();
        assert!(err.contains("1m to 365d"), "{err}");
        // 24 h of raw points at 250 ms is 345600 points.
        let err = parse("interval = \"250ms\"\nhistory_raw = \"24h\"").unwrap_err();
        assert!(
            err.to_string()
                .contains("history_raw of 24h at an interval of 250ms keeps 345600"),
            "{err}"
        );
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

    /// An empty path unsets what the file set, so `PISTATS_STATE_DIR=` means RAM only.
    #[test]
    fn an_empty_path_means_none() {
        let mut c = parse("state_dir = \"/var/lib/pistats\"").unwrap();
        assert_eq!(c.state_dir, Some(PathBuf::from("/var/lib/pistats")));
        Overrides::flags([("state_dir", "")])
            .apply(&mut c, &mut Origins::default())
            .unwrap();
        assert_eq!(c.state_dir, None);
        assert_eq!(parse("tls_cert = \"\"").unwrap().tls_cert, None);
        assert!(parse("state_dir = \"a\\u0000b\"").is_err());
    }

    #[test]
    fn overrides_win_over_file() {
        let mut c = parse("port = 1000\nserve = \"while-connected\"").unwrap();
        assert_eq!(c.serve, ServePolicy::WhileConnected);
        Overrides::flags([("port", "2000")])
            .apply(&mut c, &mut Origins::default())
            .unwrap();
        assert_eq!(c.port, 2000);
        assert_eq!(c.serve, ServePolicy::WhileConnected);
    }

    /// Commented-out lines in the packaged file show the built-in default: each must parse
    /// to exactly that default (an optional setting's example is exempt).
    #[test]
    fn packaged_config_shows_the_real_defaults() {
        let packaged = include_str!("../debian/config.toml");
        for setting in SETTINGS {
            let prefix = format!("{} =", setting.key);
            let lines: Vec<&str> = packaged
                .lines()
                .filter(|line| line.trim_start_matches('#').starts_with(&prefix))
                .collect();
            assert_eq!(lines.len(), 1, "`{}` in debian/config.toml", setting.key);
            let Some(commented) = lines[0].strip_prefix('#') else {
                continue;
            };
            if (setting.default)() == "none" {
                continue;
            }
            let config = parse(commented).unwrap();
            assert_eq!(
                setting.show(&config),
                (setting.default)(),
                "debian/config.toml: {commented}"
            );
        }
    }

    #[test]
    fn every_default_is_within_its_bounds() {
        for setting in SETTINGS {
            let mut config = Config::default();
            let default = (setting.default)();
            if default == "none" {
                continue;
            }
            let text = default.trim_start_matches('[').trim_end_matches(']');
            setting.set_text(&mut config, text).unwrap();
            assert_eq!(config, Config::default(), "{}", setting.key);
        }
        Config::default().validate(&Origins::default()).unwrap();
    }

    #[test]
    fn flags_and_variables_derive_from_the_key() {
        let setting = Setting::find("max_clients_per_ip").unwrap();
        assert_eq!(setting.flag(), "--max-clients-per-ip");
        assert_eq!(setting.env(), "PISTATS_MAX_CLIENTS_PER_IP");
        assert_eq!(
            setting.requirement(),
            "max_clients_per_ip must be a number from 1 to 65536"
        );
    }

    /// The README's table of settings, as the declaration says it.
    fn readme_table() -> String {
        let mut table = String::from(
            "| key | flag, variable | default | accepts | meaning |\n|---|---|---|---|---|\n",
        );
        for s in SETTINGS {
            table.push_str(&format!(
                "| `{}` | `{}`, `{}` | `{}` | {} | {} |\n",
                s.key,
                s.flag(),
                s.env(),
                (s.default)(),
                (s.expected)(),
                s.summary()
            ));
        }
        table
    }

    /// pistats(1)'s settings options, as the declaration says them.
    fn man_options() -> String {
        let roff = |text: &str| {
            text.replace('\\', "\\e")
                .replace('-', "\\-")
                .replace('`', "")
        };
        let mut options = String::new();
        for s in SETTINGS {
            options.push_str(&format!(
                ".TP\n.BI {} \" value\"\n{}\nMust be {}; default {}\n[{}].\n",
                roff(&s.flag()),
                roff(&s.summary()),
                roff(&(s.expected)()),
                roff(&(s.default)()),
                roff(&s.env()),
            ));
        }
        options
    }

    /// Checks that `file` holds `generated` between the `begin` and `end` marker lines;
    /// with `UPDATE_DOCS=1`, writes it there instead.
    fn check_generated(file: &str, begin: &str, end: &str, generated: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find(begin).map(|i| i + begin.len() + 1);
        let stop = text.find(end);
        let (Some(start), Some(stop)) = (start, stop) else {
            panic!("{file} lacks the lines {begin:?} and {end:?}");
        };
        if std::env::var_os("UPDATE_DOCS").is_some() {
            let updated = format!("{}{generated}{}", &text[..start], &text[stop..]);
            std::fs::write(&path, updated).unwrap();
        } else {
            assert!(
                text[start..stop] == *generated,
                "{file} does not match the settings declared in src/config/settings.rs \
                 (UPDATE_DOCS=1 cargo test --lib config rewrites it); expected:\n{generated}"
            );
        }
    }

    #[test]
    fn readme_lists_every_setting() {
        check_generated(
            "README.md",
            "<!-- settings: generated from src/config/settings.rs -->",
            "<!-- end of settings -->",
            &readme_table(),
        );
    }

    #[test]
    fn man_page_lists_every_setting() {
        check_generated(
            "debian/pistats.1",
            ".\\\" settings: generated from src/config/settings.rs",
            ".\\\" end of settings",
            &man_options(),
        );
    }
}
