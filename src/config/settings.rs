//! Every setting, declared once: key, type, default, bounds and meaning.
//!
//! The `settings!` table below generates the [`Config`] struct, its `Default`, and
//! [`SETTINGS`], from which everything else is derived: the TOML key (the field name), the
//! command-line flag (`--field-name`), the environment variable (`PISTATS_FIELD_NAME`), the
//! bounds check and the error message in the user's terms ("port must be a number from 0 to
//! 65535"), and the documentation that tests compare against README.md, pistats(1) and the
//! packaged config file. Adding a setting means adding one entry here.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use super::{LogLevel, ServePolicy};

/// Defines [`Config`], its `Default` and the [`SETTINGS`] table from one list of entries:
/// `/// doc` lines, `key: Type = default, rule` and optionally `, Visibility`.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $key:ident : $ty:ty = $default:expr, $rule:expr $(, $visibility:expr)?;
    )+) => {
        /// The complete configuration; see [`SETTINGS`] for each field's bounds.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Config {
            $( $(#[doc = $doc])+ pub $key: $ty, )+
            /// The `[[alert]]`, `[[notify]]` and `[mqtt]` tables (file only; see
            /// [`super::alerting`]).
            pub alerting: super::alerting::Alerting,
        }

        impl Default for Config {
            fn default() -> Self {
                Config { $( $key: $default, )+ alerting: Default::default() }
            }
        }

        /// Every setting, in the order of the declaration (and of the documentation).
        pub static SETTINGS: &[Setting] = &[$(
            Setting {
                key: stringify!($key),
                doc: concat!($($doc, "\n"),+),
                visibility: settings!(@visibility $($visibility)?),
                expected: || <$ty as Value>::expected(&$rule),
                default: || <$ty as Value>::show(&$default),
                current: |config| <$ty as Value>::show(&config.$key),
                switch: <$ty as Value>::SWITCH,
                from_toml: |config, value| {
                    config.$key = <$ty as Value>::from_toml(value, &$rule)?;
                    Some(())
                },
                from_text: |config, text| {
                    config.$key = <$ty as Value>::from_text(text, &$rule)?;
                    Some(())
                },
            },
        )+];
    };
    (@visibility) => { Visibility::Shown };
    (@visibility $visibility:expr) => { $visibility };
}

/// Enough for a household; each client costs a few KiB and one file descriptor.
pub const DEFAULT_MAX_CLIENTS: usize = 1024;
pub const DEFAULT_MAX_CLIENTS_PER_IP: usize = 64;
/// Clients have nothing to send but pongs and close frames.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 4096;

settings! {
    // Seed compatibility: the Python broadcaster listened on all addresses.
    /// Address to listen on: "0.0.0.0" every IPv4 address, "::" IPv6 (and usually IPv4 too),
    /// "127.0.0.1" this machine only.
    host: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED), ();
    /// TCP port for the WebSocket feed, REST API, /metrics and dashboard (0 picks a free one).
    port: u16 = super::DEFAULT_PORT, Bounds::new(0, u16::MAX);
    /// Time between two stats documents.
    interval: Duration = super::DEFAULT_INTERVAL,
        Bounds::new(super::MIN_INTERVAL, Duration::from_secs(3600));
    /// WebSocket clients are pinged this often, each with a document: in whole intervals, at
    /// least one, and spread so that clients are not all pinged in the same tick.
    ping_interval: Duration = super::DEFAULT_PING_INTERVAL, Bounds::new(MIN_TIMEOUT, HOUR);
    /// A client that has not answered a ping for this long is dropped (checked with each
    /// document).
    ping_timeout: Duration = super::DEFAULT_PING_TIMEOUT, Bounds::new(MIN_TIMEOUT, HOUR);
    /// A client whose socket does not take one document within this time is dropped, so it
    /// never holds back the others.
    send_timeout: Duration = super::DEFAULT_SEND_TIMEOUT, Bounds::new(MIN_TIMEOUT, HOUR);
    /// How many processes `processes.top_cpu_usage` lists.
    top_processes: usize = super::DEFAULT_TOP_PROCESSES, Bounds::new(0, 1000);
    /// How far back /api/v1/history (the dashboard's charts) reaches; kept in memory, at most
    /// 86400 points (history divided by interval).
    history: Duration = super::DEFAULT_HISTORY, Bounds::new(Duration::ZERO, super::MAX_DURATION);
    /// Directory for the long-term history and the events timeline (written at most every
    /// `persist_interval` and at a clean stop); none: kept in RAM only and lost on restart.
    /// The package sets /var/lib/pistats, which the unit's `StateDirectory=` provides.
    state_dir: Option<PathBuf> = None, ();
    /// How often history and events are saved to `state_dir`; a kill or power cut loses at
    /// most this much. Shorter means more writes to the SD card.
    persist_interval: Duration = Duration::from_secs(15 * 60),
        Bounds::new(Duration::from_secs(1), super::MAX_DURATION);
    /// How long the long-term history keeps every sample (at `interval`; RAM only, not saved):
    /// the 10m and 1h ranges. At most 100000 points (history_raw divided by interval).
    history_raw: Duration = Duration::from_secs(3600), Bounds::new(Duration::ZERO, super::MAX_DURATION);
    /// How long 1-minute min/mean/max buckets are kept (the 24h and 7d ranges; saved in
    /// `state_dir`). Each day costs about 40 KiB of RAM (with `state_dir`: of disk, in a file
    /// beside the state file) and 150 KiB of state file.
    history_minute: Duration = Duration::from_secs(7 * 86_400),
        Bounds::new(Duration::from_secs(60), Duration::from_secs(365 * 86_400));
    /// How long 15-minute min/mean/max buckets are kept (the 30d and 1y ranges; saved in
    /// `state_dir`). Each 30 days cost about 80 KiB of RAM (with `state_dir`: of disk, in a file
    /// beside the state file) and 300 KiB of state file.
    history_quarter: Duration = Duration::from_secs(365 * 86_400),
        Bounds::new(Duration::from_secs(15 * 60), Duration::from_secs(10 * 365 * 86_400));
    /// Pi CPU temperature, in °C, from which a `temperature_high` event is recorded (cleared
    /// 5 °C below).
    temperature_warning: f64 = 80.0, Bounds::new(20.0, 150.0);
    /// Fill of a mounted file system, in percent, from which a `mount_full` event is recorded
    /// (cleared 5 points below).
    mount_fill_warning: f64 = 90.0, Bounds::new(1.0, 100.0);
    /// Directory holding the dashboard (index.html and its files); unset: `assets` if it
    /// exists, else /usr/share/pistats/assets.
    assets_dir: Option<PathBuf> = None, ();
    /// Log verbosity; RUST_LOG refines it.
    log_level: LogLevel = LogLevel::Info, ();
    /// When the listener is open: "always"; "while-connected" (only while `interface` is
    /// connected); "loopback-while-offline" (on 127.0.0.1 only while it is not).
    serve: ServePolicy = ServePolicy::Always, ();
    /// Network interface whose connectivity is reported and, with `serve` other than
    /// "always", gates the listener.
    interface: String = super::DEFAULT_INTERFACE.to_owned(), INTERFACE_NAME;
    /// If set, the API, /metrics and the feed need `Authorization: Bearer TOKEN` or
    /// `?token=TOKEN`; the dashboard page loads without it and asks for it.
    token: Option<String> = None, TOKEN, Visibility::Secret;
    /// Browser origins allowed to open the WebSocket (e.g. `http://pi.local:8765`); empty
    /// allows every origin. As a flag or variable: comma-separated.
    allowed_origins: Vec<String> = Vec::new(), ORIGINS;
    /// Most WebSocket clients at once; further ones are refused with 503.
    max_clients: usize = DEFAULT_MAX_CLIENTS, Bounds::new(1, MAX_CLIENTS);
    /// Most WebSocket clients from one IP address; further ones are refused with 429.
    max_clients_per_ip: usize = DEFAULT_MAX_CLIENTS_PER_IP, Bounds::new(1, MAX_CLIENTS);
    /// Largest WebSocket message accepted from a client, in bytes (clients only send pongs
    /// and close frames).
    max_message_size: usize = DEFAULT_MAX_MESSAGE_SIZE,
        Bounds::new(125, super::MAX_MESSAGE_SIZE_LIMIT);
    /// Report the top processes without their names.
    hide_process_names: bool = false, ();
    /// PEM certificate chain (leaf first); with `tls_key`, the port speaks only HTTPS and WSS.
    tls_cert: Option<PathBuf> = None, ();
    /// PEM private key for `tls_cert`.
    tls_key: Option<PathBuf> = None, ();
    /// Root of the proc file system read by the collector (fixture trees in tests).
    proc_root: PathBuf = PathBuf::from("/proc"), (), Visibility::Hidden;
    /// Root of the sys file system read by the collector (fixture trees in tests).
    sys_root: PathBuf = PathBuf::from("/sys"), (), Visibility::Hidden;
    /// vcgencmd, used (cached, with a timeout) only for values the firmware's sysfs files
    /// do not give.
    vcgencmd: PathBuf = PathBuf::from("/usr/bin/vcgencmd"), (), Visibility::Hidden;
}

/// Shortest ping, pong or send deadline: below it a healthy client on a busy Wi-Fi link
/// would be dropped.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
const HOUR: Duration = Duration::from_secs(3600);
/// Far above any household, low enough that the file-descriptor budget stays meaningful.
const MAX_CLIENTS: usize = 65536;

/// What the kernel accepts as an interface name (`dev_valid_name`): 1 to 15 bytes, not `.`
/// or `..`, no `/`, `:` or whitespace.
const INTERFACE_NAME: Text = Text {
    valid: |name| {
        (1..=15).contains(&name.len())
            && name != "."
            && name != ".."
            && !name
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    },
    expected: "a network interface name (1 to 15 characters, no spaces, '/' or ':')",
};

/// HTTP header values carry visible ASCII only, and `Bearer` tokens no spaces: a token with
/// anything else could never be sent, so it is refused here rather than locking users out.
const TOKEN: Text = Text {
    valid: |token| (1..=1024).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic()),
    expected: "1 to 1024 visible ASCII characters (letters, digits, punctuation; no spaces)",
};

/// An `Origin` header value: `scheme://host[:port]`, no path (a trailing `/` never matches).
const ORIGIN: Text = Text {
    valid: |origin| {
        let Some((scheme, host)) = origin.split_once("://") else {
            return false;
        };
        origin.len() <= 300
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            && !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"/?#".contains(&b))
    },
    expected: "an origin such as \"http://pi.local:8765\" (scheme://host[:port], no path)",
};

const ORIGINS: List = List {
    item: ORIGIN,
    max: 64,
    expected: "a list of at most 64 origins such as \"http://pi.local:8765\" (scheme://host[:port], no path)",
};

/// How a setting shows up in `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Shown,
    /// A testing knob: works everywhere, left out of `--help`.
    Hidden,
    /// Shown, but its value is never echoed (help, errors).
    Secret,
}

/// One setting, type-erased; the functions are generated from its declaration.
pub struct Setting {
    /// TOML key and `Config` field name.
    pub key: &'static str,
    /// Meaning, one `///` line per line.
    pub doc: &'static str,
    pub visibility: Visibility,
    /// What a valid value looks like: "a number from 0 to 65535".
    pub expected: fn() -> String,
    /// The built-in default as a user would write it: `8765`, `1s`, `none`.
    pub default: fn() -> String,
    current: fn(&Config) -> String,
    /// A flag that may stand alone (`--hide-process-names` means true).
    pub switch: bool,
    from_toml: fn(&mut Config, &toml::Value) -> Option<()>,
    from_text: fn(&mut Config, &str) -> Option<()>,
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key)
    }
}

impl Setting {
    /// Looks a setting up by its TOML key.
    pub fn find(key: &str) -> Option<&'static Setting> {
        SETTINGS.iter().find(|s| s.key == key)
    }

    /// `--top-processes`.
    pub fn flag(&self) -> String {
        format!("--{}", self.key.replace('_', "-"))
    }

    /// `PISTATS_TOP_PROCESSES`.
    pub fn env(&self) -> String {
        format!("PISTATS_{}", self.key.to_ascii_uppercase())
    }

    /// The meaning on one line.
    pub fn summary(&self) -> String {
        self.doc.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// The value in `config` as a user would write it; a secret only says whether it is set.
    pub fn show(&self, config: &Config) -> String {
        let value = (self.current)(config);
        match self.visibility {
            Visibility::Secret if value != "none" => "(set, not shown)".to_owned(),
            _ => value,
        }
    }

    /// "port must be a number from 0 to 65535".
    pub fn requirement(&self) -> String {
        format!("{} must be {}", self.key, (self.expected)())
    }

    /// Sets the field from a TOML value; the error is in the user's terms.
    pub(super) fn set_toml(&self, config: &mut Config, value: &toml::Value) -> Result<(), String> {
        (self.from_toml)(config, value).ok_or_else(|| self.refusal(&value.to_string()))
    }

    /// Sets the field from a flag's or variable's text.
    pub(super) fn set_text(&self, config: &mut Config, text: &str) -> Result<(), String> {
        (self.from_text)(config, text).ok_or_else(|| self.refusal(&format!("{text:?}")))
    }

    fn refusal(&self, found: &str) -> String {
        if self.visibility == Visibility::Secret {
            format!("{} (the value given is not shown)", self.requirement())
        } else {
            format!("{}, not {found}", self.requirement())
        }
    }
}

/// A setting's type: how it is read from TOML and from text, checked against its rule, and
/// described to the user. `None` means "does not satisfy the rule"; the message comes from
/// [`Value::expected`], so the check and its description cannot drift apart.
pub trait Value: Sized {
    /// Bounds or a validity check; `()` when the type itself is the rule.
    type Rule;
    /// Whether the flag alone, without a value, means "on".
    const SWITCH: bool = false;
    /// Whether `""` unsets an optional setting of this type. True for paths, so that a flag
    /// or variable can unset what the file sets (`PISTATS_STATE_DIR=`: RAM only); false for
    /// the token, where an empty value is more likely a mistake than "no authentication".
    const EMPTY_IS_NONE: bool = false;
    fn from_toml(value: &toml::Value, rule: &Self::Rule) -> Option<Self>;
    fn from_text(text: &str, rule: &Self::Rule) -> Option<Self>;
    fn expected(rule: &Self::Rule) -> String;
    fn show(&self) -> String;
}

/// Inclusive lower and upper bound.
#[derive(Debug, Clone, Copy)]
pub struct Bounds<T> {
    pub min: T,
    pub max: T,
}

impl<T: PartialOrd> Bounds<T> {
    pub const fn new(min: T, max: T) -> Bounds<T> {
        Bounds { min, max }
    }

    fn check(&self, value: T) -> Option<T> {
        (self.min <= value && value <= self.max).then_some(value)
    }
}

macro_rules! integer_value {
    ($($ty:ty),*) => {$(
        impl Value for $ty {
            type Rule = Bounds<$ty>;
            fn from_toml(value: &toml::Value, rule: &Bounds<$ty>) -> Option<$ty> {
                rule.check(<$ty>::try_from(value.as_integer()?).ok()?)
            }
            fn from_text(text: &str, rule: &Bounds<$ty>) -> Option<$ty> {
                rule.check(text.trim().parse().ok()?)
            }
            fn expected(rule: &Bounds<$ty>) -> String {
                format!("a number from {} to {}", rule.min, rule.max)
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
integer_value!(u16, usize);

impl Value for f64 {
    type Rule = Bounds<f64>;
    fn from_toml(value: &toml::Value, rule: &Bounds<f64>) -> Option<f64> {
        let number = match value {
            toml::Value::Float(v) => *v,
            toml::Value::Integer(v) => *v as f64,
            _ => return None,
        };
        rule.check(number).filter(|v| v.is_finite())
    }
    fn from_text(text: &str, rule: &Bounds<f64>) -> Option<f64> {
        rule.check(text.trim().parse().ok()?)
            .filter(|v| v.is_finite())
    }
    fn expected(rule: &Bounds<f64>) -> String {
        format!("a number from {} to {}", rule.min, rule.max)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for Duration {
    type Rule = Bounds<Duration>;
    fn from_toml(value: &toml::Value, rule: &Bounds<Duration>) -> Option<Duration> {
        let duration = match value {
            toml::Value::String(text) => super::parse_duration(text).ok()?,
            toml::Value::Integer(seconds) => Duration::from_secs(u64::try_from(*seconds).ok()?),
            toml::Value::Float(seconds) => Duration::try_from_secs_f64(*seconds).ok()?,
            _ => return None,
        };
        rule.check(duration)
    }
    fn from_text(text: &str, rule: &Bounds<Duration>) -> Option<Duration> {
        rule.check(super::parse_duration(text).ok()?)
    }
    fn expected(rule: &Bounds<Duration>) -> String {
        format!(
            "a duration from {} to {}",
            show_duration(rule.min),
            show_duration(rule.max)
        )
    }
    fn show(&self) -> String {
        show_duration(*self)
    }
}

/// `7d`, `1h`, `10m`, `20s`, `250ms`: the largest unit that divides the duration.
pub fn show_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        0 => "0s".to_owned(),
        // Days only past one, so that "24h" stays as people write it.
        ms if ms % 86_400_000 == 0 && ms > 86_400_000 => format!("{}d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

impl Value for IpAddr {
    type Rule = ();
    fn from_toml(value: &toml::Value, _: &()) -> Option<IpAddr> {
        value.as_str()?.parse().ok()
    }
    fn from_text(text: &str, _: &()) -> Option<IpAddr> {
        text.trim().parse().ok()
    }
    fn expected(_: &()) -> String {
        "an IP address such as \"0.0.0.0\", \"::\" or \"127.0.0.1\"".to_owned()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for bool {
    type Rule = ();
    const SWITCH: bool = true;
    fn from_toml(value: &toml::Value, _: &()) -> Option<bool> {
        value.as_bool()
    }
    fn from_text(text: &str, _: &()) -> Option<bool> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        }
    }
    fn expected(_: &()) -> String {
        "true or false".to_owned()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// A path: not empty, no NUL byte (the kernel could never open it).
impl Value for PathBuf {
    type Rule = ();
    const EMPTY_IS_NONE: bool = true;
    fn from_toml(value: &toml::Value, rule: &()) -> Option<PathBuf> {
        PathBuf::from_text(value.as_str()?, rule)
    }
    fn from_text(text: &str, _: &()) -> Option<PathBuf> {
        (!text.is_empty() && !text.contains('\0')).then(|| PathBuf::from(text))
    }
    fn expected(_: &()) -> String {
        "a file or directory path".to_owned()
    }
    fn show(&self) -> String {
        self.display().to_string()
    }
}

/// A string that must pass a check; `expected` says what passes.
#[derive(Clone, Copy)]
pub struct Text {
    valid: fn(&str) -> bool,
    expected: &'static str,
}

impl Value for String {
    type Rule = Text;
    fn from_toml(value: &toml::Value, rule: &Text) -> Option<String> {
        String::from_text(value.as_str()?, rule)
    }
    fn from_text(text: &str, rule: &Text) -> Option<String> {
        (rule.valid)(text).then(|| text.to_owned())
    }
    fn expected(rule: &Text) -> String {
        rule.expected.to_owned()
    }
    fn show(&self) -> String {
        self.clone()
    }
}

/// An optional setting: absent from the file means unset (and so does `""` where
/// [`Value::EMPTY_IS_NONE`]); when given it must be valid.
impl<T: Value> Value for Option<T> {
    type Rule = T::Rule;
    fn from_toml(value: &toml::Value, rule: &T::Rule) -> Option<Option<T>> {
        if T::EMPTY_IS_NONE && value.as_str() == Some("") {
            return Some(None);
        }
        T::from_toml(value, rule).map(Some)
    }
    fn from_text(text: &str, rule: &T::Rule) -> Option<Option<T>> {
        if T::EMPTY_IS_NONE && text.is_empty() {
            return Some(None);
        }
        T::from_text(text, rule).map(Some)
    }
    fn expected(rule: &T::Rule) -> String {
        match T::EMPTY_IS_NONE {
            true => format!("{}, or \"\" for none", T::expected(rule)),
            false => T::expected(rule),
        }
    }
    fn show(&self) -> String {
        self.as_ref().map_or_else(|| "none".to_owned(), T::show)
    }
}

/// A list of checked strings: a TOML array, or comma-separated text.
#[derive(Clone, Copy)]
pub struct List {
    item: Text,
    max: usize,
    expected: &'static str,
}

impl Value for Vec<String> {
    type Rule = List;
    fn from_toml(value: &toml::Value, rule: &List) -> Option<Vec<String>> {
        let items = value.as_array()?;
        (items.len() <= rule.max).then_some(())?;
        items
            .iter()
            .map(|item| String::from_toml(item, &rule.item))
            .collect()
    }
    fn from_text(text: &str, rule: &List) -> Option<Vec<String>> {
        let items: Vec<&str> = match text.trim() {
            "" => Vec::new(),
            text => text.split(',').map(str::trim).collect(),
        };
        (items.len() <= rule.max).then_some(())?;
        items
            .into_iter()
            .map(|item| String::from_text(item, &rule.item))
            .collect()
    }
    fn expected(rule: &List) -> String {
        rule.expected.to_owned()
    }
    fn show(&self) -> String {
        format!("[{}]", self.join(", "))
    }
}

/// Choices derive their names from `clap::ValueEnum` (kebab-case), so the file, the flag and
/// the message spell them alike.
macro_rules! choice_value {
    ($($ty:ty),*) => {$(
        impl Value for $ty {
            type Rule = ();
            fn from_toml(value: &toml::Value, rule: &()) -> Option<$ty> {
                <$ty>::from_text(value.as_str()?, rule)
            }
            fn from_text(text: &str, _: &()) -> Option<$ty> {
                <$ty as clap::ValueEnum>::from_str(text.trim(), false).ok()
            }
            fn expected(_: &()) -> String {
                let names: Vec<String> = <$ty as clap::ValueEnum>::value_variants()
                    .iter()
                    .filter_map(|v| clap::ValueEnum::to_possible_value(v))
                    .map(|v| format!("\"{}\"", v.get_name()))
                    .collect();
                format!("one of {}", names.join(", "))
            }
            fn show(&self) -> String {
                clap::ValueEnum::to_possible_value(self)
                    .map(|v| v.get_name().to_owned())
                    .unwrap_or_default()
            }
        }
    )*};
}
choice_value!(LogLevel, ServePolicy);
