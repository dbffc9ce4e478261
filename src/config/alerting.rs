//! The `[[alert]]`, `[[notify]]` and `[mqtt]` tables: alert rules and where alerts go.
//!
//! Unlike the flat settings in [`super::settings`], these are lists of tables, so they have no
//! flag or variable; they are read from the file only, with the same strictness: unknown keys
//! ("did you mean"), values out of bounds and contradictions (`above` with `below`, a `clear`
//! level on the wrong side) are errors naming the file, the line and the key.
//!
//! Secrets (`token`, `password`) may be written inline, or read from a file with `token_file`
//! / `password_file`. A relative path is looked up in `$CREDENTIALS_DIRECTORY`, where systemd
//! puts what `LoadCredential=` passes, so a secret can stay in a root-only file. Secrets are
//! read once, when the configuration is loaded, and are never shown ([`Secret`]'s `Debug`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::{line_of, ConfigError, Origin};
use crate::events::Severity;

/// Most `[[alert]]` or `[[notify]]` tables in one file.
const MAX_TABLES: usize = 64;
/// Default `for` of a rule: fire on the first tick that crosses the line.
pub const DEFAULT_FOR: Duration = Duration::ZERO;
/// How long one delivery attempt may take.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts after the first one failed.
pub const DEFAULT_NOTIFY_RETRIES: u32 = 3;
/// How often the MQTT state document is published.
pub const DEFAULT_MQTT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_DISCOVERY_PREFIX: &str = "homeassistant";

/// Every alert rule and destination in the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alerting {
    pub rules: Vec<Rule>,
    pub notifiers: Vec<Notifier>,
    pub mqtt: Option<Mqtt>,
}

/// One `[[alert]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique; also the Prometheus label, the MQTT topic and the Home Assistant object id.
    pub name: String,
    pub metric: Metric,
    pub condition: Condition,
    /// How long the condition must hold before the alert fires.
    pub for_: Duration,
    /// While firing, notify again this often (`None`: once).
    pub repeat: Option<Duration>,
    pub severity: Severity,
}

/// What a rule watches, read from each tick's typed snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// CPU busy, percent.
    Cpu,
    /// RAM not available to new programs, percent.
    Memory,
    /// Swap used, percent.
    Swap,
    /// SoC temperature, °C.
    Temperature,
    /// One-minute load average.
    Load1,
    /// Space used on a mount point, percent.
    Disk { mount: String },
    /// The watched interface is not connected.
    InterfaceDown,
    /// Received Wi-Fi signal level of the connected watched interface, dBm (the kernel's
    /// `/proc/net/wireless`, read on every tick under either network source).
    WifiSignal,
    /// Wi-Fi link quality of the connected watched interface, percent (NetworkManager's
    /// signal strength, or the kernel's link quality).
    WifiQuality,
    /// The firmware reports under-voltage now.
    Undervoltage,
    /// The firmware throttles the ARM core now.
    Throttled,
    /// The ARM frequency is capped now.
    FrequencyCapped,
    /// The soft temperature limit is active now.
    SoftTemperatureLimit,
    /// pistats started after its previous run ended without a clean stop.
    UncleanRestart,
}

impl Metric {
    /// The names a rule's `metric` accepts (`disk` takes a `mount`).
    pub const NAMES: &'static [&'static str] = &[
        "cpu",
        "memory",
        "swap",
        "temperature",
        "load1",
        "disk",
        "interface_down",
        "wifi_signal",
        "wifi_quality",
        "undervoltage",
        "throttled",
        "frequency_capped",
        "soft_temperature_limit",
        "unclean_restart",
    ];

    fn from_name(name: &str, mount: Option<String>) -> Option<Metric> {
        Some(match name {
            "cpu" => Metric::Cpu,
            "memory" => Metric::Memory,
            "swap" => Metric::Swap,
            "temperature" => Metric::Temperature,
            "load1" => Metric::Load1,
            "disk" => Metric::Disk {
                mount: mount.unwrap_or_else(|| "/".to_owned()),
            },
            "interface_down" => Metric::InterfaceDown,
            "wifi_signal" => Metric::WifiSignal,
            "wifi_quality" => Metric::WifiQuality,
            "undervoltage" => Metric::Undervoltage,
            "throttled" => Metric::Throttled,
            "frequency_capped" => Metric::FrequencyCapped,
            "soft_temperature_limit" => Metric::SoftTemperatureLimit,
            "unclean_restart" => Metric::UncleanRestart,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Metric::Cpu => "cpu",
            Metric::Memory => "memory",
            Metric::Swap => "swap",
            Metric::Temperature => "temperature",
            Metric::Load1 => "load1",
            Metric::Disk { .. } => "disk",
            Metric::InterfaceDown => "interface_down",
            Metric::WifiSignal => "wifi_signal",
            Metric::WifiQuality => "wifi_quality",
            Metric::Undervoltage => "undervoltage",
            Metric::Throttled => "throttled",
            Metric::FrequencyCapped => "frequency_capped",
            Metric::SoftTemperatureLimit => "soft_temperature_limit",
            Metric::UncleanRestart => "unclean_restart",
        }
    }

    /// A flag is on or off: its rule takes no `above`/`below`.
    pub fn is_flag(&self) -> bool {
        matches!(
            self,
            Metric::InterfaceDown
                | Metric::Undervoltage
                | Metric::Throttled
                | Metric::FrequencyCapped
                | Metric::SoftTemperatureLimit
                | Metric::UncleanRestart
        )
    }

    /// Sensible limits for a threshold, and the unit, for error messages and documents.
    pub fn range(&self) -> (f64, f64, &'static str) {
        match self {
            Metric::Cpu
            | Metric::Memory
            | Metric::Swap
            | Metric::Disk { .. }
            | Metric::WifiQuality => (0.0, 100.0, "%"),
            Metric::WifiSignal => (-120.0, 0.0, " dBm"),
            Metric::Temperature => (-40.0, 150.0, "°C"),
            Metric::Load1 => (0.0, 1024.0, ""),
            _ => (0.0, 1.0, ""),
        }
    }
}

/// When a rule's condition holds, and when a firing alert clears.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Condition {
    /// Holds at `level` or more; a firing alert clears below `clear` (≤ `level`).
    Above { level: f64, clear: f64 },
    /// Holds at `level` or less; a firing alert clears above `clear` (≥ `level`).
    Below { level: f64, clear: f64 },
    /// Holds while the flag is set.
    Set,
}

/// A secret read from the file or a credential; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(secret, not shown)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    Ntfy,
    Webhook,
}

/// One `[[notify]]` table: an HTTP(S) endpoint that receives every firing and clearing.
#[derive(Debug, Clone, PartialEq)]
pub struct Notifier {
    /// For logs, events and `notify-test` (default: kind and position, `ntfy-1`).
    pub name: String,
    pub kind: NotifyKind,
    pub url: hyper::Uri,
    /// Sent as `Authorization: Bearer …`.
    pub token: Option<Secret>,
    /// Extra request headers (values are secret: they often carry keys).
    pub headers: Vec<(hyper::header::HeaderName, Secret)>,
    /// ntfy priority 1–5; unset: from the severity (info 3, warning 4, critical 5).
    pub priority: Option<u8>,
    /// ntfy tags added to the severity's.
    pub tags: Vec<String>,
    /// One attempt's deadline.
    pub timeout: Duration,
    /// Attempts after a failed first one, with doubling pauses (1 s, 2 s, 4 s…).
    pub retries: u32,
}

/// The `[mqtt]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Mqtt {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: TLS with the system's CA certificates.
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Empty: `pistats-HOSTNAME`.
    pub client_id: Option<String>,
    /// Topics go under this prefix; unset: `pistats/HOSTNAME`.
    pub topic: Option<String>,
    pub discovery: bool,
    pub discovery_prefix: String,
    pub interval: Duration,
}

/// A table as read, each key and value with its place in the file.
type RawTable = BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>;

#[derive(serde::Deserialize, Default)]
struct Tables {
    #[serde(default)]
    alert: Vec<toml::Spanned<RawTable>>,
    #[serde(default)]
    notify: Vec<toml::Spanned<RawTable>>,
    #[serde(default)]
    mqtt: Option<toml::Spanned<RawTable>>,
}

/// The top-level keys this module reads.
pub const TABLES: &[&str] = &["alert", "notify", "mqtt"];

/// Reads the alerting tables of a configuration file's `text`.
pub fn read(text: &str, path: &Path) -> Result<Alerting, ConfigError> {
    let tables: Tables = toml::from_str(text).map_err(|err| ConfigError::Parse {
        path: path.to_owned(),
        message: super::describe_toml_error(text, &err),
    })?;
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let cx = Context {
        text,
        path,
        credentials: credentials.as_deref(),
    };
    for (key, list) in [("alert", &tables.alert), ("notify", &tables.notify)] {
        if list.len() > MAX_TABLES {
            return Err(cx.error(
                key,
                list[MAX_TABLES].span().start,
                format!("at most {MAX_TABLES} [[{key}]] tables"),
            ));
        }
    }
    let mut alerting = Alerting::default();
    let mut names = BTreeSet::new();
    for table in &tables.alert {
        let rule = read_rule(Fields::new(&cx, "alert", table))?;
        if !names.insert(rule.name.clone()) {
            return Err(cx.error(
                "alert",
                table.span().start,
                format!(
                    "two [[alert]] tables are named {:?}: names must differ",
                    rule.name
                ),
            ));
        }
        alerting.rules.push(rule);
    }
    let mut names = BTreeSet::new();
    for (index, table) in tables.notify.iter().enumerate() {
        let notifier = read_notifier(Fields::new(&cx, "notify", table), index)?;
        if !names.insert(notifier.name.clone()) {
            return Err(cx.error(
                "notify",
                table.span().start,
                format!(
                    "two [[notify]] tables are named {:?}: names must differ",
                    notifier.name
                ),
            ));
        }
        alerting.notifiers.push(notifier);
    }
    if let Some(table) = &tables.mqtt {
        alerting.mqtt = Some(read_mqtt(Fields::new(&cx, "mqtt", table))?);
    }
    Ok(alerting)
}

struct Context<'a> {
    text: &'a str,
    path: &'a Path,
    credentials: Option<&'a Path>,
}

impl Context<'_> {
    fn error(&self, key: &'static str, offset: usize, message: String) -> ConfigError {
        ConfigError::Invalid {
            key,
            origin: Origin::File {
                path: self.path.to_owned(),
                line: line_of(self.text, offset),
            },
            message,
        }
    }
}

/// The keys of one table, taken one by one; what is left at the end is unknown.
struct Fields<'a> {
    cx: &'a Context<'a>,
    table: &'static str,
    start: usize,
    entries: BTreeMap<String, (usize, toml::Value)>,
    /// `name` once read, to say which table an error is about.
    label: String,
    known: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn new(cx: &'a Context<'a>, table: &'static str, raw: &toml::Spanned<RawTable>) -> Fields<'a> {
        let entries = raw
            .get_ref()
            .iter()
            .map(|(k, v)| (k.get_ref().clone(), (k.span().start, v.get_ref().clone())))
            .collect();
        Fields {
            cx,
            table,
            start: raw.span().start,
            entries,
            label: if table == "mqtt" {
                "[mqtt]".to_owned()
            } else {
                format!("[[{table}]]")
            },
            known: Vec::new(),
        }
    }

    fn error_at(&self, offset: usize, message: String) -> ConfigError {
        self.cx
            .error(self.table, offset, format!("{}: {message}", self.label))
    }

    fn error(&self, message: String) -> ConfigError {
        self.error_at(self.start, message)
    }

    /// Takes `key`; `parse` returns what the value must be when it does not fit.
    fn take<T>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&toml::Value) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.known.push(key);
        let Some((offset, value)) = self.entries.remove(key) else {
            return Ok(None);
        };
        parse(&value)
            .map(Some)
            .map_err(|expected| self.error_at(offset, format!("{key} must be {expected}")))
    }

    fn offset(&self, key: &str) -> usize {
        self.entries
            .get(key)
            .map_or(self.start, |(offset, _)| *offset)
    }

    fn string(&mut self, key: &'static str, check: Text) -> Result<Option<String>, ConfigError> {
        self.take(key, |v| match v.as_str() {
            Some(s) if (check.valid)(s) => Ok(s.to_owned()),
            _ => Err(check.expected.to_owned()),
        })
    }

    fn duration(
        &mut self,
        key: &'static str,
        min: Duration,
        max: Duration,
    ) -> Result<Option<Duration>, ConfigError> {
        let expected = format!(
            "a duration from {} to {}",
            super::show_duration(min),
            super::show_duration(max)
        );
        self.take(key, |v| {
            let duration = match v {
                toml::Value::String(text) => super::parse_duration(text).ok(),
                toml::Value::Integer(seconds) => {
                    u64::try_from(*seconds).ok().map(Duration::from_secs)
                }
                toml::Value::Float(seconds) => Duration::try_from_secs_f64(*seconds).ok(),
                _ => None,
            };
            duration.filter(|d| (min..=max).contains(d)).ok_or(expected)
        })
    }

    fn number(
        &mut self,
        key: &'static str,
        min: f64,
        max: f64,
    ) -> Result<Option<f64>, ConfigError> {
        self.take(key, |v| {
            let n = match v {
                toml::Value::Integer(n) => Some(*n as f64),
                toml::Value::Float(n) => Some(*n),
                _ => None,
            };
            n.filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("a number from {min} to {max}"))
        })
    }

    fn bool(&mut self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        self.take(key, |v| {
            v.as_bool().ok_or_else(|| "true or false".to_owned())
        })
    }

    /// `key` inline or `key_file` (a path; relative: in `$CREDENTIALS_DIRECTORY`), not both.
    fn secret(
        &mut self,
        key: &'static str,
        file_key: &'static str,
    ) -> Result<Option<Secret>, ConfigError> {
        let both = self.entries.contains_key(key) && self.entries.contains_key(file_key);
        if both {
            return Err(self.error_at(
                self.offset(file_key),
                format!("{key} and {file_key} are both set: set one"),
            ));
        }
        if let Some(secret) = self.take(key, |v| match v.as_str() {
            Some(s) if SECRET.valid(s) => Ok(Secret::new(s)),
            // The value is a secret: never echo it.
            _ => Err(format!(
                "{} (the value given is not shown)",
                SECRET.expected
            )),
        })? {
            return Ok(Some(secret));
        }
        let offset = self.offset(file_key);
        let Some(path) = self.take(file_key, |v| match v.as_str() {
            Some(s) if !s.is_empty() && !s.contains('\0') => Ok(PathBuf::from(s)),
            _ => Err("a file path".to_owned()),
        })?
        else {
            return Ok(None);
        };
        let path = if path.is_relative() {
            match self.cx.credentials {
                Some(dir) => dir.join(&path),
                None => {
                    return Err(self.error_at(
                        offset,
                        format!(
                            "{file_key} {} is relative, which names a credential passed with \
                             LoadCredential=, but $CREDENTIALS_DIRECTORY is not set: give an \
                             absolute path",
                            path.display()
                        ),
                    ))
                }
            }
        } else {
            path
        };
        let text = std::fs::read_to_string(&path).map_err(|err| {
            self.error_at(
                offset,
                format!("cannot read {file_key} {}: {err}", path.display()),
            )
        })?;
        let text = text.trim_end_matches(['\n', '\r']);
        if !SECRET.valid(text) {
            return Err(self.error_at(
                offset,
                format!(
                    "{file_key} {}: the file must hold {}",
                    path.display(),
                    SECRET.expected
                ),
            ));
        }
        Ok(Some(Secret::new(text)))
    }

    /// Errors on the first key nobody took.
    fn finish(self) -> Result<(), ConfigError> {
        let Some((key, (offset, _))) = self.entries.iter().min_by_key(|(_, (offset, _))| *offset)
        else {
            return Ok(());
        };
        let near = self
            .known
            .iter()
            .map(|k| (super::edit_distance(key, k), *k))
            .min()
            .filter(|(distance, _)| *distance <= 2);
        let message = match near {
            Some((_, near)) => format!("unknown key `{key}` (did you mean `{near}`?)"),
            None => {
                let all: Vec<String> = self.known.iter().map(|k| format!("`{k}`")).collect();
                format!("unknown key `{key}`, expected one of {}", all.join(", "))
            }
        };
        Err(self.error_at(*offset, message))
    }
}

/// A string check and what passes it.
#[derive(Clone, Copy)]
struct Text {
    valid: fn(&str) -> bool,
    expected: &'static str,
}

impl Text {
    fn valid(&self, s: &str) -> bool {
        (self.valid)(s)
    }
}

/// Names end up in topics, object ids and label values: keep them plain.
const NAME: Text = Text {
    valid: |s| {
        (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    },
    expected: "1 to 64 letters, digits, '_' or '-'",
};

const SECRET: Text = Text {
    valid: |s| {
        (1..=4096).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    },
    expected: "1 to 4096 printable ASCII characters",
};

const MOUNT: Text = Text {
    valid: |s| s.starts_with('/') && s.len() <= 4096 && !s.contains('\0'),
    expected: "an absolute mount point such as \"/\" or \"/data\"",
};

const SEVERITY_NAMES: &str = "one of \"info\", \"warning\", \"critical\"";

fn read_rule(mut f: Fields) -> Result<Rule, ConfigError> {
    let name = f.string("name", NAME)?;
    let Some(name) = name else {
        return Err(f.error("name is missing: every alert needs a name".to_owned()));
    };
    f.label = format!("[[alert]] {name:?}");
    let mount = f.string("mount", MOUNT)?;
    let metric_offset = f.offset("metric");
    let metric = f.take("metric", |v| {
        let expected = format!(
            "one of {}",
            Metric::NAMES
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        v.as_str().ok_or(expected.clone()).map(str::to_owned)
    })?;
    let Some(metric_name) = metric else {
        return Err(f.error("metric is missing".to_owned()));
    };
    let has_mount = mount.is_some();
    let Some(metric) = Metric::from_name(&metric_name, mount) else {
        return Err(f.error_at(
            metric_offset,
            format!(
                "metric must be one of {}, not {metric_name:?}",
                Metric::NAMES
                    .iter()
                    .map(|n| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    if has_mount && !matches!(metric, Metric::Disk { .. }) {
        return Err(f.error("mount only applies to metric = \"disk\"".to_owned()));
    }
    let (min, max, _) = metric.range();
    let above_offset = f.offset("above");
    let below_offset = f.offset("below");
    let threshold_offset = if f.entries.contains_key("above") {
        above_offset
    } else {
        below_offset
    };
    let clear_offset = f.offset("clear");
    let above = f.number("above", min, max)?;
    let below = f.number("below", min, max)?;
    let clear = f.number("clear", min, max)?;
    let condition = match (metric.is_flag(), above, below) {
        (true, None, None) => {
            if clear.is_some() {
                return Err(f.error_at(
                    clear_offset,
                    format!("clear does not apply to the flag {metric_name}"),
                ));
            }
            Condition::Set
        }
        (true, _, _) => {
            return Err(f.error_at(
                threshold_offset,
                format!("{metric_name} is a flag (on or off): it takes no above or below"),
            ))
        }
        (false, Some(_), Some(_)) => {
            return Err(f.error_at(
                below_offset,
                "above and below are both set: set one".to_owned(),
            ))
        }
        (false, None, None) => {
            return Err(f.error(format!(
                "{metric_name} needs a threshold: above = N or below = N"
            )))
        }
        (false, Some(level), None) => {
            let clear = clear.unwrap_or(level);
            if clear > level {
                return Err(f.error_at(
                    clear_offset,
                    format!("clear ({clear}) must not be above the `above` level ({level}): an alert clears when the value falls below it"),
                ));
            }
            Condition::Above { level, clear }
        }
        (false, None, Some(level)) => {
            let clear = clear.unwrap_or(level);
            if clear < level {
                return Err(f.error_at(
                    clear_offset,
                    format!("clear ({clear}) must not be below the `below` level ({level}): an alert clears when the value rises above it"),
                ));
            }
            Condition::Below { level, clear }
        }
    };
    let for_ = f
        .duration("for", Duration::ZERO, super::MAX_DURATION)?
        .unwrap_or(DEFAULT_FOR);
    let repeat = f.duration("repeat", Duration::from_secs(60), super::MAX_DURATION)?;
    let severity = f
        .take("severity", |v| match v.as_str() {
            Some("info") => Ok(Severity::Info),
            Some("warning") => Ok(Severity::Warning),
            Some("critical") => Ok(Severity::Critical),
            _ => Err(SEVERITY_NAMES.to_owned()),
        })?
        .unwrap_or(Severity::Warning);
    f.finish()?;
    Ok(Rule {
        name,
        metric,
        condition,
        for_,
        repeat,
        severity,
    })
}

fn http_url(v: &toml::Value) -> Result<hyper::Uri, String> {
    let expected = "an http:// or https:// URL such as \"https://ntfy.sh/my-pi-alerts\"";
    let uri: hyper::Uri = v.as_str().and_then(|s| s.parse().ok()).ok_or(expected)?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(uri),
        _ => Err(expected.to_owned()),
    }
}

fn read_notifier(mut f: Fields, index: usize) -> Result<Notifier, ConfigError> {
    let kind = f.take("kind", |v| match v.as_str() {
        Some("ntfy") => Ok(NotifyKind::Ntfy),
        Some("webhook") => Ok(NotifyKind::Webhook),
        _ => Err("\"ntfy\" or \"webhook\"".to_owned()),
    })?;
    let Some(kind) = kind else {
        return Err(f.error("kind is missing: \"ntfy\" or \"webhook\"".to_owned()));
    };
    let kind_name = match kind {
        NotifyKind::Ntfy => "ntfy",
        NotifyKind::Webhook => "webhook",
    };
    let name = f
        .string("name", NAME)?
        .unwrap_or_else(|| format!("{kind_name}-{}", index + 1));
    f.label = format!("[[notify]] {name:?}");
    let Some(url) = f.take("url", http_url)? else {
        return Err(f.error("url is missing".to_owned()));
    };
    let token = f.secret("token", "token_file")?;
    let headers = f
        .take("headers", |v| {
            let expected = "a table of header names and text values, such as { X-Api-Key = \"…\" }";
            let table = v.as_table().ok_or(expected)?;
            if table.len() > 32 {
                return Err(expected.to_owned());
            }
            table
                .iter()
                .map(|(name, value)| {
                    let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| expected)?;
                    let value = value.as_str().filter(|s| SECRET.valid(s)).ok_or(expected)?;
                    Ok((name, Secret::new(value)))
                })
                .collect::<Result<Vec<_>, &str>>()
                .map_err(str::to_owned)
        })?
        .unwrap_or_default();
    let priority_offset = f.offset("priority");
    let priority = f.take("priority", |v| {
        v.as_integer()
            .filter(|p| (1..=5).contains(p))
            .map(|p| p as u8)
            .ok_or_else(|| {
                "a number from 1 to 5 (ntfy's min, low, default, high, urgent)".to_owned()
            })
    })?;
    let tags_offset = f.offset("tags");
    let tags = f
        .take("tags", |v| {
            let expected = "a list of at most 16 words such as [\"raspberry\", \"pi\"] (letters, digits, '_' or '-')";
            let items = v.as_array().filter(|a| a.len() <= 16).ok_or(expected)?;
            items
                .iter()
                .map(|t| t.as_str().filter(|s| NAME.valid(s)).map(str::to_owned).ok_or(expected))
                .collect::<Result<Vec<_>, _>>()
                .map_err(str::to_owned)
        })?
        .unwrap_or_default();
    if kind == NotifyKind::Webhook {
        if priority.is_some() {
            return Err(f.error_at(
                priority_offset,
                "priority only applies to kind = \"ntfy\"".to_owned(),
            ));
        }
        if !tags.is_empty() {
            return Err(f.error_at(tags_offset, "tags only apply to kind = \"ntfy\"".to_owned()));
        }
    }
    let timeout = f
        .duration("timeout", Duration::from_secs(1), Duration::from_secs(300))?
        .unwrap_or(DEFAULT_NOTIFY_TIMEOUT);
    let retries = f
        .take("retries", |v| {
            v.as_integer()
                .filter(|r| (0..=10).contains(r))
                .map(|r| r as u32)
                .ok_or_else(|| "a number from 0 to 10".to_owned())
        })?
        .unwrap_or(DEFAULT_NOTIFY_RETRIES);
    let notifier = Notifier {
        name,
        kind,
        url,
        token,
        headers,
        priority,
        tags,
        timeout,
        retries,
    };
    f.finish().map(|()| notifier)
}

fn read_mqtt(mut f: Fields) -> Result<Mqtt, ConfigError> {
    let url = f.take("url", |v| {
        let expected = "an mqtt:// or mqtts:// URL such as \"mqtt://homeassistant.local\" (port 1883, 8883 for mqtts)";
        let uri: hyper::Uri = v.as_str().and_then(|s| s.parse().ok()).ok_or(expected)?;
        let tls = match uri.scheme_str() {
            Some("mqtt") => false,
            Some("mqtts") => true,
            _ => return Err(expected.to_owned()),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or(expected)?;
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(expected.to_owned());
        }
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        Ok((host, uri.port_u16().unwrap_or(if tls { 8883 } else { 1883 }), tls))
    })?;
    let Some((host, port, tls)) = url else {
        return Err(f.error("url is missing".to_owned()));
    };
    let username = f.string("username", SECRET_TEXT_USER)?;
    let password = f.secret("password", "password_file")?;
    let client_id = f.string("client_id", NAME)?;
    let topic = f.string("topic", TOPIC)?;
    let discovery = f.bool("discovery")?.unwrap_or(true);
    let discovery_prefix = f
        .string("discovery_prefix", TOPIC)?
        .unwrap_or_else(|| DEFAULT_DISCOVERY_PREFIX.to_owned());
    let interval = f
        .duration(
            "interval",
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?
        .unwrap_or(DEFAULT_MQTT_INTERVAL);
    let mqtt = Mqtt {
        host,
        port,
        tls,
        username,
        password,
        client_id,
        topic,
        discovery,
        discovery_prefix,
        interval,
    };
    f.finish().map(|()| mqtt)
}

const SECRET_TEXT_USER: Text = Text {
    valid: |s| (1..=256).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()),
    expected: "1 to 256 visible ASCII characters",
};

/// An MQTT topic prefix: no wildcards, no empty levels at either end.
const TOPIC: Text = Text {
    valid: |s| {
        (1..=200).contains(&s.len())
            && !s.starts_with('/')
            && !s.ends_with('/')
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'+' && b != b'#')
    },
    expected: "a topic such as \"pistats/kitchen\" (no '+', '#', spaces, or '/' at either end)",
};

#[cfg(test)]
mod tests;
