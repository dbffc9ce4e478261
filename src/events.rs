//! The events timeline: what happened to the Pi and to pistats, newest 2,000 kept.
//!
//! A [`Detector`] turns consecutive [`Sample`]s (the same ones history records) and the facts
//! known at start-up into [`Event`]s; it is pure (no clock, no I/O), so every rule is tested with
//! sequences of samples. An [`EventLog`] numbers them (`seq`, monotonic and persisted, so order
//! survives wall-clock steps) and keeps the newest [`EVENT_CAPACITY`].
//!
//! ```no_run
//! # use std::time::{Duration, SystemTime};
//! use pistats::events::{Detector, DetectorConfig, EventLog, StartupFacts};
//! use pistats::history::Sample;
//! let mut log = EventLog::new(pistats::events::EVENT_CAPACITY);
//! let mut detector = Detector::new(DetectorConfig::default());
//! let facts = StartupFacts { wall: SystemTime::now(), version: "0.1.0".into(), boot_id: None, previous: None };
//! for event in detector.startup(&facts) { log.push(event); }
//! // Every tick:
//! let sample = Sample::new(Duration::from_secs(1), SystemTime::now());
//! for event in detector.observe(&sample) { log.push(event); }
//! // GET /api/v1/events?since=…&limit=…
//! let json = serde_json::to_vec(&log.query(None, 100)).unwrap();
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::history::Sample;

/// How many events the log keeps (the oldest go first).
pub const EVENT_CAPACITY: usize = 2000;

macro_rules! kinds {
    ($($variant:ident = $name:literal,)*) => {
        /// What happened. The names are stable: alert rules, scripts and the state file use them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventKind {
            $($variant,)*
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }

            pub fn from_name(name: &str) -> Option<EventKind> {
                match name {
                    $($name => Some(EventKind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

kinds! {
    UndervoltageDetected = "undervoltage_detected",
    UndervoltageCleared = "undervoltage_cleared",
    ThrottledSet = "throttled_set",
    ThrottledCleared = "throttled_cleared",
    FrequencyCappedSet = "frequency_capped_set",
    FrequencyCappedCleared = "frequency_capped_cleared",
    SoftTempLimitSet = "soft_temperature_limit_set",
    SoftTempLimitCleared = "soft_temperature_limit_cleared",
    TemperatureHigh = "temperature_high",
    TemperatureNormal = "temperature_normal",
    MountFull = "mount_full",
    MountOk = "mount_ok",
    InterfaceConnected = "interface_connected",
    InterfaceDisconnected = "interface_disconnected",
    Started = "started",
    StoppedCleanly = "stopped",
    UncleanStop = "unclean_stop",
    Rebooted = "rebooted",
    ClockStepped = "clock_stepped",
    AlertFiring = "alert_firing",
    AlertCleared = "alert_cleared",
    NotificationFailed = "notification_failed",
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_code(code: u8) -> Option<Severity> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .get(usize::from(code))
            .copied()
    }
}

/// A value attached to an event (the measured temperature, the interface, the step…).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventValue {
    Number(f64),
    Text(String),
}

/// An event's named values, in name order. A `BTreeMap` allocates a node with room for 11
/// entries (about 600 bytes here) for the first one, and an event has one to three: with the
/// timeline's 2,000 events kept, that node was most of the timeline's memory. A sorted boxed
/// slice of exactly the entries costs a tenth of it; serialized, it is the same JSON object.
/// The names the detector and the alerts use are not allocated per event ([`Key`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventValues(Box<[(Key, EventValue)]>);

/// The value names pistats itself gives, so that an event's keys point at these instead of
/// each holding a small allocation (32 bytes with glibc's smallest chunk, for a 9-byte name).
const KNOWN_KEYS: &[&str] = &[
    "alert",
    "boot_id",
    "interface",
    "last_saved",
    "level",
    "metric",
    "mountpoint",
    "notifier",
    "previous_boot_id",
    "reason",
    "step_seconds",
    "temperature",
    "threshold",
    "throttled",
    "used_percent",
    "value",
    "version",
    "warning",
];

/// A value's name: one of [`KNOWN_KEYS`] (no allocation) or any other (a state file written
/// by a newer version, a caller's own).
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Known(u8),
    Other(Box<str>),
}

impl Key {
    fn new(name: String) -> Key {
        match KNOWN_KEYS.iter().position(|k| *k == name) {
            Some(i) => Key::Known(i as u8),
            None => Key::Other(name.into_boxed_str()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Key::Known(i) => KNOWN_KEYS[usize::from(*i)],
            Key::Other(name) => name,
        }
    }
}

impl EventValues {
    pub fn new() -> EventValues {
        EventValues(Box::default())
    }

    /// Sets `key` (replacing a value it had).
    pub fn insert(&mut self, key: String, value: EventValue) {
        match self
            .0
            .binary_search_by(|(k, _)| k.as_str().cmp(key.as_str()))
        {
            Ok(i) => self.0[i].1 = value,
            Err(i) => {
                // Events live long and gain their values at birth: exactly the entries, no
                // spare room.
                let mut entries = std::mem::take(&mut self.0).into_vec();
                entries.insert(i, (Key::new(key), value));
                self.0 = entries.into_boxed_slice();
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&EventValue> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &EventValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl std::ops::Index<&str> for EventValues {
    type Output = EventValue;

    /// Panics when `key` is not set, like a map's index.
    fn index(&self, key: &str) -> &EventValue {
        self.get(key)
            .unwrap_or_else(|| panic!("no event value {key:?}"))
    }
}

impl Serialize for EventValues {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// One entry of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Wall time when it was seen (as the clock said then).
    pub t: SystemTime,
    /// Position in the timeline, assigned by [`EventLog::push`]; orders events whatever the
    /// wall clock did.
    pub seq: u64,
    pub kind: EventKind,
    pub severity: Severity,
    pub message: String,
    pub values: EventValues,
}

impl Event {
    fn new(t: SystemTime, kind: EventKind, severity: Severity, message: String) -> Event {
        Event {
            t,
            seq: 0,
            kind,
            severity,
            message,
            values: EventValues::new(),
        }
    }

    fn with(mut self, key: &str, value: impl Into<EventValue>) -> Event {
        self.values.insert(key.to_owned(), value.into());
        self
    }
}

impl From<f64> for EventValue {
    fn from(v: f64) -> Self {
        EventValue::Number(v)
    }
}

impl From<String> for EventValue {
    fn from(v: String) -> Self {
        EventValue::Text(v)
    }
}

impl From<&str> for EventValue {
    fn from(v: &str) -> Self {
        EventValue::Text(v.to_owned())
    }
}

/// JSON: `{"t":"2026-11-26T02:31:10.123000+00:00","t_ms":…,"seq":…,"kind":"…","severity":"…",
/// "message":"…","values":{…}}`.
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(7))?;
        map.serialize_entry("t", &crate::stats::wire::iso8601(self.t))?;
        map.serialize_entry("t_ms", &crate::history::unix_ms(self.t))?;
        map.serialize_entry("seq", &self.seq)?;
        map.serialize_entry("kind", &self.kind)?;
        map.serialize_entry("severity", &self.severity)?;
        map.serialize_entry("message", &self.message)?;
        map.serialize_entry("values", &self.values)?;
        map.end()
    }
}

/// The newest events, numbered.
#[derive(Debug, Clone)]
pub struct EventLog {
    events: VecDeque<Event>,
    capacity: usize,
    next_seq: u64,
}

impl EventLog {
    pub fn new(capacity: usize) -> EventLog {
        EventLog {
            events: VecDeque::with_capacity(capacity),
            capacity,
            next_seq: 1,
        }
    }

    /// Numbers `event` and appends it, dropping the oldest when full.
    pub fn push(&mut self, mut event: Event) -> &Event {
        event.seq = self.next_seq;
        self.next_seq += 1;
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
        self.events.back().expect("just pushed")
    }

    /// Restores an already numbered event (from the store); keeps `seq` increasing.
    pub(crate) fn restore(&mut self, event: Event) {
        if self.events.back().is_some_and(|last| last.seq >= event.seq) {
            return;
        }
        self.next_seq = event.seq + 1;
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    pub(crate) fn set_next_seq(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq);
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Event> + ExactSizeIterator {
        self.events.iter()
    }

    /// Events numbered after `seq`, oldest first: how a consumer (alerts, a WebSocket stream)
    /// catches up from the last one it saw.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = &Event> {
        let start = self.events.partition_point(|e| e.seq <= seq);
        self.events.range(start..)
    }

    /// `GET /api/v1/events?since=…&limit=…`: the newest `limit` events at or after `since`
    /// (wall time), newest last. Serializes as `{"events":[…]}`.
    pub fn query(&self, since: Option<SystemTime>, limit: usize) -> EventsView<'_> {
        let mut picked: Vec<&Event> = self
            .events
            .iter()
            .rev()
            .filter(|e| since.is_none_or(|since| e.t >= since))
            .take(limit)
            .collect();
        picked.reverse();
        EventsView { events: picked }
    }
}

/// The answer to an events query.
#[derive(Debug, Serialize)]
pub struct EventsView<'a> {
    pub events: Vec<&'a Event>,
}

/// Levels the detector watches. Defaults: 80 °C, 90 % full, 5-point hysteresis, 2 s clock step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// Temperature at or above which `temperature_high` is recorded, °C.
    pub temperature_warning: f64,
    /// `temperature_normal` once at or below `temperature_warning − temperature_hysteresis`.
    pub temperature_hysteresis: f64,
    /// Fill at or above which a mount is `mount_full`, percent.
    pub mount_fill_percent: f64,
    pub mount_hysteresis: f64,
    /// Disagreement between wall and monotonic clock over one tick that counts as a step.
    pub clock_step: Duration,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            temperature_warning: 80.0,
            temperature_hysteresis: 5.0,
            mount_fill_percent: 90.0,
            mount_hysteresis: 5.0,
            clock_step: Duration::from_secs(2),
        }
    }
}

/// What the daemon knows when it starts: its boot id and what the store says about the last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupFacts {
    pub wall: SystemTime,
    pub version: String,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: Option<String>,
    /// `None` on a first start (no state).
    pub previous: Option<PreviousRun>,
}

/// The last run, as the store found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousRun {
    /// The last run removed its running marker on the way out.
    pub clean: bool,
    pub boot_id: Option<String>,
    /// Wall time of its last saved state.
    pub last_saved: Option<SystemTime>,
}

/// The `get_throttled` bits that have events: (bit, set kind, cleared kind, severity, what).
const THROTTLE_BITS: [(u32, EventKind, EventKind, Severity, &str); 4] = [
    (
        0,
        EventKind::UndervoltageDetected,
        EventKind::UndervoltageCleared,
        Severity::Critical,
        "Under-voltage",
    ),
    (
        1,
        EventKind::FrequencyCappedSet,
        EventKind::FrequencyCappedCleared,
        Severity::Warning,
        "ARM frequency capping",
    ),
    (
        2,
        EventKind::ThrottledSet,
        EventKind::ThrottledCleared,
        Severity::Warning,
        "Throttling",
    ),
    (
        3,
        EventKind::SoftTempLimitSet,
        EventKind::SoftTempLimitCleared,
        Severity::Warning,
        "Soft temperature limit",
    ),
];

/// Turns samples into events. Holds only the previous state; no clock, no I/O.
#[derive(Debug, Clone)]
pub struct Detector {
    config: DetectorConfig,
    last: Option<(Duration, SystemTime)>,
    throttled: Option<u32>,
    temperature_high: bool,
    full_mounts: Vec<String>,
    link: Option<(String, bool)>,
}

impl Detector {
    pub fn new(config: DetectorConfig) -> Detector {
        Detector {
            config,
            last: None,
            throttled: None,
            temperature_high: false,
            full_mounts: Vec::new(),
            link: None,
        }
    }

    /// Events of a start: `rebooted` (boot id changed), `unclean_stop` (the last run did not
    /// stop cleanly), then `started`.
    pub fn startup(&self, facts: &StartupFacts) -> Vec<Event> {
        let mut events = Vec::new();
        if let Some(previous) = &facts.previous {
            if let (Some(was), Some(now)) = (&previous.boot_id, &facts.boot_id) {
                if was != now {
                    events.push(
                        Event::new(
                            facts.wall,
                            EventKind::Rebooted,
                            Severity::Info,
                            "System rebooted".into(),
                        )
                        .with("previous_boot_id", was.as_str())
                        .with("boot_id", now.as_str()),
                    );
                }
            }
            if !previous.clean {
                let mut event = Event::new(
                    facts.wall,
                    EventKind::UncleanStop,
                    Severity::Warning,
                    match previous.last_saved {
                        Some(t) => format!(
                            "pistats restarted after an unclean stop (state last saved {})",
                            crate::stats::wire::iso8601(t)
                        ),
                        None => "pistats restarted after an unclean stop".into(),
                    },
                );
                if let Some(t) = previous.last_saved {
                    event = event.with("last_saved", crate::stats::wire::iso8601(t));
                }
                events.push(event);
            }
        }
        events.push(
            Event::new(
                facts.wall,
                EventKind::Started,
                Severity::Info,
                format!("pistats {} started", facts.version),
            )
            .with("version", facts.version.as_str()),
        );
        events
    }

    /// The event of a clean stop.
    pub fn stopping(&self, wall: SystemTime) -> Event {
        Event::new(
            wall,
            EventKind::StoppedCleanly,
            Severity::Info,
            "pistats stopped".into(),
        )
    }

    /// Events between the previous sample and this one, in a fixed order: clock, throttle bits,
    /// temperature, mounts, interface. Conditions already present at the first sample are
    /// reported (a start during under-voltage is news); their absence is not.
    pub fn observe(&mut self, sample: &Sample) -> Vec<Event> {
        let mut events = Vec::new();
        let t = sample.wall;
        self.clock(sample, &mut events);
        if let Some(now) = sample.throttled {
            self.throttle(t, now, &mut events);
        }
        if let Some(temp) = sample.temperature.filter(|v| v.is_finite()) {
            self.temperature(t, temp, &mut events);
        }
        self.mounts(sample, &mut events);
        if let Some(link) = &sample.link {
            let changed = match &self.link {
                Some((iface, was)) => iface != &link.interface || *was != link.connected,
                None => !link.connected,
            };
            if changed {
                let (kind, severity, what) = if link.connected {
                    (EventKind::InterfaceConnected, Severity::Info, "connected")
                } else {
                    (
                        EventKind::InterfaceDisconnected,
                        Severity::Warning,
                        "disconnected",
                    )
                };
                let mut event = Event::new(
                    t,
                    kind,
                    severity,
                    match &link.reason {
                        Some(reason) => format!("{} {what} ({reason})", link.interface),
                        None => format!("{} {what}", link.interface),
                    },
                )
                .with("interface", link.interface.as_str());
                if let Some(reason) = &link.reason {
                    event = event.with("reason", reason.as_str());
                }
                events.push(event);
            }
            // Copied only when it changes: the same interface tick after tick allocates nothing.
            if changed || self.link.is_none() {
                self.link = Some((link.interface.clone(), link.connected));
            }
        }
        events
    }

    fn clock(&mut self, sample: &Sample, events: &mut Vec<Event>) {
        if let Some((mono, wall)) = self.last {
            let mono_ms = sample.mono.saturating_sub(mono).as_millis() as i128;
            let wall_ms = match sample.wall.duration_since(wall) {
                Ok(d) => d.as_millis() as i128,
                Err(e) => -(e.duration().as_millis() as i128),
            };
            let step_ms = wall_ms - mono_ms;
            if step_ms.unsigned_abs() > self.config.clock_step.as_millis() {
                let seconds = step_ms as f64 / 1000.0;
                let direction = if step_ms > 0 { "forward" } else { "backward" };
                events.push(
                    Event::new(
                        sample.wall,
                        EventKind::ClockStepped,
                        Severity::Info,
                        format!("Wall clock stepped {direction} by {:.1} s", seconds.abs()),
                    )
                    .with("step_seconds", seconds)
                    .with(
                        "from",
                        crate::stats::wire::iso8601(wall + sample.mono.saturating_sub(mono)),
                    ),
                );
            }
        }
        self.last = Some((sample.mono, sample.wall));
    }

    fn throttle(&mut self, t: SystemTime, now: u32, events: &mut Vec<Event>) {
        let prev = self.throttled;
        for (bit, set, cleared, severity, what) in THROTTLE_BITS {
            let is = now & (1 << bit) != 0;
            let was = prev.is_some_and(|p| p & (1 << bit) != 0);
            // The sticky "occurred" bit (16 + bit) newly set while the live bit is clear: it came
            // and went between two readings.
            let blip = prev.is_some_and(|p| p & (1 << (bit + 16)) == 0)
                && now & (1 << (bit + 16)) != 0
                && !is
                && !was;
            let values = |e: Event| e.with("throttled", format!("{now:#x}"));
            if (is && !was) || blip {
                let note = if blip {
                    " (briefly, between two readings)"
                } else {
                    ""
                };
                events.push(values(Event::new(
                    t,
                    set,
                    severity,
                    format!("{what} detected{note}"),
                )));
            }
            if (was && !is) || blip {
                events.push(values(Event::new(
                    t,
                    cleared,
                    Severity::Info,
                    format!("{what} cleared"),
                )));
            }
        }
        self.throttled = Some(now);
    }

    fn temperature(&mut self, t: SystemTime, temp: f64, events: &mut Vec<Event>) {
        let warning = self.config.temperature_warning;
        if !self.temperature_high && temp >= warning {
            self.temperature_high = true;
            events.push(
                Event::new(
                    t,
                    EventKind::TemperatureHigh,
                    Severity::Warning,
                    format!("Temperature {temp:.1} °C, at or above the {warning} °C warning level"),
                )
                .with("temperature", temp)
                .with("warning", warning),
            );
        } else if self.temperature_high && temp <= warning - self.config.temperature_hysteresis {
            self.temperature_high = false;
            events.push(
                Event::new(
                    t,
                    EventKind::TemperatureNormal,
                    Severity::Info,
                    format!("Temperature back to {temp:.1} °C"),
                )
                .with("temperature", temp)
                .with("warning", warning),
            );
        }
    }

    fn mounts(&mut self, sample: &Sample, events: &mut Vec<Event>) {
        let level = self.config.mount_fill_percent;
        for mount in &sample.mounts {
            let used = mount.used_percent;
            if !used.is_finite() {
                continue;
            }
            let full = self.full_mounts.contains(&mount.mountpoint);
            if !full && used >= level {
                self.full_mounts.push(mount.mountpoint.clone());
                events.push(
                    Event::new(
                        sample.wall,
                        EventKind::MountFull,
                        Severity::Warning,
                        format!(
                            "{} is {used:.1} % full (warning level {level} %)",
                            mount.mountpoint
                        ),
                    )
                    .with("mountpoint", mount.mountpoint.as_str())
                    .with("used_percent", used)
                    .with("level", level),
                );
            } else if full && used <= level - self.config.mount_hysteresis {
                self.full_mounts.retain(|m| m != &mount.mountpoint);
                events.push(
                    Event::new(
                        sample.wall,
                        EventKind::MountOk,
                        Severity::Info,
                        format!("{} back to {used:.1} % full", mount.mountpoint),
                    )
                    .with("mountpoint", mount.mountpoint.as_str())
                    .with("used_percent", used)
                    .with("level", level),
                );
            }
        }
        // A mount that went away is forgotten (an empty list is a failed reading, not no mounts).
        if !sample.mounts.is_empty() {
            self.full_mounts
                .retain(|m| sample.mounts.iter().any(|s| &s.mountpoint == m));
        }
    }
}

/// A `since=` value that is not RFC 3339.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an RFC 3339 time (like 2026-11-26T03:00:00Z): {0:?}")]
pub struct TimeParseError(pub String);

/// Parses RFC 3339 (`2026-11-26T03:00:00Z`, `…T03:00:00.5+01:00`), for `since=`.
pub fn parse_rfc3339(s: &str) -> Result<SystemTime, TimeParseError> {
    let err = || TimeParseError(s.to_owned());
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, TimeParseError> {
        let part = b.get(r).ok_or_else(err)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(err());
        }
        Ok(part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(err());
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(err());
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(err());
        }
        let digits = &s[start..i.min(start + 9)];
        nanos = digits.parse::<u32>().map_err(|_| err())? * 10u32.pow(9 - digits.len() as u32);
    }
    let offset = match b.get(i..) {
        Some(b"Z") | Some(b"z") => 0,
        Some([sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]) => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return Err(err());
            }
            let h = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
            let m = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
            if h > 23 || m > 59 {
                return Err(err());
            }
            let o = h * 3600 + m * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return Err(err()),
    };
    // Howard Hinnant's days-from-civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let secs = u64::try_from(secs).map_err(|_| err())?;
    Ok(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests;
