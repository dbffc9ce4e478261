//! Alerts: rules checked every tick against the latest snapshot ([`rules`]), their firing and
//! clearing recorded as events, shown at `/api/v1/alerts` and `/metrics`, and sent to ntfy,
//! webhooks ([`notify`]) and MQTT with Home Assistant discovery ([`mqtt`]).
//!
//! The rules run on the collector thread after each publish, for microseconds, and hand alerts
//! to bounded queues without waiting, so nothing it does (an endpoint down or hanging, a broker
//! away) can slow the collector or the WebSocket feed.
//!
//! Without `[[alert]]` tables there are no rules: the built-in defaults alert on nothing, so a
//! `cargo run` or a container stays quiet; the Debian package's config.toml enables the
//! Pi-aware rules (undervoltage, throttling, heat, a full root file system, memory, an
//! unclean restart).

pub mod mqtt;
pub mod notify;
pub mod rules;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::alerting::{Condition, Rule};
use crate::config::{show_duration, Config};
use crate::events::{Event, EventKind, EventLog, EventValue, EventValues, Severity};
use crate::hub::Hub;
use rules::{Change, Engine, Facts};

/// Alert events kept for `/api/v1/alerts` until the shared timeline takes them.
const EVENTS_KEPT: usize = 200;

/// What a notification says about a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Cleared,
    /// `pistats notify-test`.
    Test,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Cleared => "cleared",
            AlertState::Test => "test",
        }
    }
}

/// One notification: a rule fired, reminded or cleared.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub rule: String,
    pub metric: String,
    pub state: AlertState,
    /// A `repeat` reminder of an alert still firing.
    pub reminder: bool,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub severity: Severity,
    pub host: String,
    pub time: SystemTime,
    /// One human sentence.
    pub message: String,
}

impl Alert {
    fn new(rule: &Rule, change: Change, value: f64, host: &str, time: SystemTime) -> Alert {
        let (state, reminder) = match change {
            Change::Firing => (AlertState::Firing, false),
            Change::Reminder => (AlertState::Firing, true),
            Change::Cleared => (AlertState::Cleared, false),
        };
        let threshold = match rule.condition {
            Condition::Above { level, .. } | Condition::Below { level, .. } => Some(level),
            Condition::Set => None,
        };
        Alert {
            rule: rule.name.clone(),
            metric: rule.metric.name().to_owned(),
            state,
            reminder,
            value: (!rule.metric.is_flag()).then_some(value),
            threshold,
            severity: rule.severity,
            host: host.to_owned(),
            time,
            message: describe(rule, change, value, host),
        }
    }

    /// `pi-kitchen: temperature firing`.
    pub fn title(&self) -> String {
        let state = if self.reminder {
            "still firing"
        } else {
            self.state.as_str()
        };
        format!("{}: {} {state}", self.host, self.rule)
    }

    /// The webhook's JSON body.
    pub fn payload(&self) -> serde_json::Value {
        serde_json::json!({
            "alert": self.rule,
            "state": self.state.as_str(),
            "reminder": self.reminder,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "severity": self.severity,
            "host": self.host,
            "time": crate::stats::wire::iso8601(self.time),
            "message": self.message,
        })
    }
}

/// "temperature is 81.2 °C (at or above 80 °C for 1m)".
fn describe(rule: &Rule, change: Change, value: f64, host: &str) -> String {
    let (_, _, unit) = rule.metric.range();
    let what = match &rule.metric {
        crate::config::alerting::Metric::Disk { mount } => format!("disk {mount}"),
        metric => metric.name().replace('_', " "),
    };
    let held = if rule.for_.is_zero() {
        String::new()
    } else {
        format!(" for {}", show_duration(rule.for_))
    };
    let sentence = match (change, rule.condition) {
        (Change::Cleared, Condition::Set) => format!("{what} is no longer set"),
        (_, Condition::Set) => format!("{what} is set{held}"),
        (Change::Cleared, _) => format!("{what} is back to {value:.1}{unit}"),
        (_, Condition::Above { level, .. }) => {
            format!("{what} is {value:.1}{unit} (at or above {level}{unit}{held})")
        }
        (_, Condition::Below { level, .. }) => {
            format!("{what} is {value:.1}{unit} (at or below {level}{unit}{held})")
        }
    };
    let head = match change {
        Change::Firing => "firing",
        Change::Reminder => "still firing",
        Change::Cleared => "cleared",
    };
    format!("[{host}] {} {head}: {sentence}", rule.name)
}

/// A rule as `/api/v1/alerts` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    pub name: String,
    pub metric: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    pub condition: Condition,
    pub for_seconds: f64,
    pub repeat_seconds: Option<f64>,
    pub severity: Severity,
    /// `ok`, `pending` or `firing`.
    pub state: &'static str,
    /// When it entered the state (pending or firing), ISO 8601.
    pub since: Option<String>,
    pub value: Option<f64>,
    /// The instant behind `since`: while it stays the same, so does the text (the wall clock
    /// and the monotonic clock drift apart by microseconds from tick to tick).
    #[serde(skip)]
    since_at: Option<Instant>,
}

impl RuleView {
    /// A rule in the `ok` state, with no value yet.
    fn new(rule: &Rule) -> RuleView {
        RuleView {
            name: rule.name.clone(),
            metric: rule.metric.name().to_owned(),
            mount: match &rule.metric {
                crate::config::alerting::Metric::Disk { mount } => Some(mount.clone()),
                _ => None,
            },
            condition: rule.condition,
            for_seconds: rule.for_.as_secs_f64(),
            repeat_seconds: rule.repeat.map(|r| r.as_secs_f64()),
            severity: rule.severity,
            state: "ok",
            since: None,
            value: None,
            since_at: None,
        }
    }
}

/// Counts of one notifier's deliveries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Deliveries {
    pub sent: u64,
    pub failed: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct BoardState {
    rules: Vec<RuleView>,
    events: Option<EventLog>,
    notifiers: BTreeMap<String, Deliveries>,
    mqtt_connected: Option<bool>,
}

/// The alerts' current state, shared with the HTTP server (`/api/v1/alerts`, `/metrics`) and
/// the MQTT publisher. Cheap to read; written once per tick.
#[derive(Debug)]
pub struct Board {
    state: Mutex<BoardState>,
    /// Bumped on every firing or clearing, so the MQTT publisher sends at once.
    changed: watch::Sender<u64>,
}

impl Default for Board {
    fn default() -> Board {
        Board {
            state: Mutex::default(),
            changed: watch::Sender::new(0),
        }
    }
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `(name, firing)` of every rule, for `/metrics` and MQTT.
    pub fn firing(&self) -> Vec<(String, bool)> {
        self.lock()
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.state == "firing"))
            .collect()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Alert events after `seq`, oldest first (for the events timeline to take over).
    pub fn events_after(&self, seq: u64) -> Vec<Event> {
        self.lock()
            .events
            .as_ref()
            .map_or_else(Vec::new, |log| log.after(seq).cloned().collect())
    }

    /// The `/api/v1/alerts` document.
    pub fn to_json(&self) -> serde_json::Value {
        let state = self.lock();
        let events: Vec<&Event> = state
            .events
            .as_ref()
            .map_or_else(Vec::new, |l| l.iter().collect());
        serde_json::json!({
            "alerts": state.rules,
            "events": events,
            "notifiers": state.notifiers,
            "mqtt": state.mqtt_connected.map(|connected| serde_json::json!({ "connected": connected })),
        })
    }

    fn record(&self, event: Event) {
        let mut state = self.lock();
        state
            .events
            .get_or_insert_with(|| EventLog::new(EVENTS_KEPT))
            .push(event);
    }

    /// Shows the engine's rules as they stand. Every tick: the views are updated in place,
    /// and a `since` text is written only when its instant changes, so a tick allocates nothing.
    fn show(&self, engine: &Engine, wall: SystemTime, mono: Instant) {
        let mut board = self.lock();
        let rules = engine.rules();
        let same_rules = board.rules.len() == rules.len()
            && board.rules.iter().zip(rules).all(|(v, r)| v.name == r.name);
        if !same_rules {
            board.rules = rules.iter().map(RuleView::new).collect();
        }
        let since = |at: Instant| {
            let ago = mono.saturating_duration_since(at);
            crate::stats::wire::iso8601(wall.checked_sub(ago).unwrap_or(wall))
        };
        let current = engine.states().iter().zip(engine.values());
        for (view, (state, value)) in board.rules.iter_mut().zip(current) {
            view.state = state.name();
            view.value = *value;
            if view.since_at != state.since() {
                view.since_at = state.since();
                view.since = view.since_at.map(since);
            }
        }
    }

    fn delivered(&self, notifier: &str) {
        let mut state = self.lock();
        state.notifiers.entry(notifier.to_owned()).or_default().sent += 1;
    }

    /// Counts a notification that could not be delivered and makes its event.
    fn delivery_failed(&self, notifier: &str, alert: &Alert, reason: &str) -> Event {
        {
            let mut state = self.lock();
            let entry = state.notifiers.entry(notifier.to_owned()).or_default();
            entry.failed += 1;
            entry.last_error = Some(reason.to_owned());
        }
        let mut event = Event {
            t: SystemTime::now(),
            seq: 0,
            kind: EventKind::NotificationFailed,
            severity: Severity::Warning,
            message: format!(
                "notifier {notifier} could not send {} {}: {reason}",
                alert.rule,
                alert.state.as_str()
            ),
            values: EventValues::new(),
        };
        event
            .values
            .insert("notifier".into(), EventValue::Text(notifier.to_owned()));
        event
            .values
            .insert("alert".into(), EventValue::Text(alert.rule.clone()));
        event
    }

    /// A notification that could not be delivered: counted per notifier, and its
    /// `notification_failed` event goes into the events timeline (`/api/v1/events`, the
    /// dashboard) as well as the alerts' own list, like firing and clearing.
    fn record_delivery_failure(hub: &Hub, notifier: &str, alert: &Alert, reason: &str) {
        let event = hub.alerts.delivery_failed(notifier, alert, reason);
        hub.record_events([event.clone()]);
        hub.alerts.record(event);
    }

    fn set_mqtt_connected(&self, connected: bool) {
        self.lock().mqtt_connected = Some(connected);
    }
}

fn event_of(alert: &Alert) -> Event {
    let kind = match alert.state {
        AlertState::Cleared => EventKind::AlertCleared,
        _ => EventKind::AlertFiring,
    };
    let severity = match alert.state {
        AlertState::Cleared => Severity::Info,
        _ => alert.severity,
    };
    let mut values = EventValues::new();
    values.insert("alert".into(), EventValue::Text(alert.rule.clone()));
    values.insert("metric".into(), EventValue::Text(alert.metric.clone()));
    if let Some(v) = alert.value {
        values.insert("value".into(), EventValue::Number(v));
    }
    if let Some(t) = alert.threshold {
        values.insert("threshold".into(), EventValue::Number(t));
    }
    Event {
        t: alert.time,
        seq: 0,
        kind,
        severity,
        message: alert.message.clone(),
        values,
    }
}

/// Starts the alerts subsystem: the rules task, one delivery task per notifier and the MQTT
/// publisher. `facts` are what the start-up knows: `unclean_restart` comes from the state
/// file's running marker (`history::store::Restored::previous`), once the daemon loads it.
pub fn spawn(
    config: &Config,
    hub: &Arc<Hub>,
    facts: Facts,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let alerting = &config.alerting;
    let board = hub.alerts.clone();
    if alerting.rules.is_empty() && alerting.mqtt.is_none() {
        return;
    }
    let client = (!alerting.notifiers.is_empty()).then(notify::client);
    let senders: Vec<notify::Sender> = alerting
        .notifiers
        .iter()
        .map(|n| {
            notify::spawn(
                n.clone(),
                client.clone().expect("made when there are notifiers"),
                hub.clone(),
                cancel.clone(),
                tracker,
            )
        })
        .collect();
    if let Some(mqtt) = &alerting.mqtt {
        let names = alerting.rules.iter().map(|r| r.name.clone()).collect();
        mqtt::spawn(mqtt.clone(), hub.clone(), names, cancel.clone(), tracker);
    }
    let mut engine = Engine::new(alerting.rules.clone());
    tracing::info!(
        "alerts: {} rule(s), {} notifier(s){}",
        alerting.rules.len(),
        senders.len(),
        if alerting.mqtt.is_some() {
            ", MQTT"
        } else {
            ""
        }
    );
    let mut timeline = hub.subscribe_events();
    let mut facts = facts;
    // The newest timeline event already looked at: the history subsystem records
    // `unclean_stop` when it restores the state of a run that did not stop cleanly.
    let mut seen = 0;
    // Checked on the collector thread right after each publish (see `Hub::on_tick`): the
    // rules' `for` and `repeat` durations count from the tick's own time, and firing and
    // clearing are recorded at the tick that decides them, without waking a task per tick.
    let observer = hub.on_tick(Box::new(move |hub, snapshot| {
        if timeline.has_changed().unwrap_or(false) {
            timeline.borrow_and_update();
            for event in hub.events_after(seen) {
                seen = event.seq;
                // Restored events of earlier runs are older than this process.
                if event.kind == EventKind::UncleanStop && event.t >= hub.started {
                    facts.unclean_restart = true;
                }
            }
        }
        let doc = &snapshot.document;
        let changes = engine.observe(snapshot.collected_at, doc, &facts);
        // A restart is a moment, not a condition: it shows on the first tick only.
        facts.unclean_restart = false;
        board.show(&engine, doc.collected_at, snapshot.collected_at);
        if changes.is_empty() {
            return;
        }
        let host = doc.system.hostname.as_deref().unwrap_or("pistats");
        for change in changes {
            let rule = &engine.rules()[change.rule];
            let alert = Alert::new(rule, change.change, change.value, host, doc.collected_at);
            tracing::info!(alert = alert.rule.as_str(), "alert {}", alert.message);
            if change.change != Change::Reminder {
                let event = event_of(&alert);
                hub.record_events([event.clone()]);
                board.record(event);
            }
            // An unclean restart has nothing to clear: say it once.
            let quiet = change.change == Change::Cleared
                && rule.metric == crate::config::alerting::Metric::UncleanRestart;
            if !quiet {
                for sender in &senders {
                    sender.offer(alert.clone(), hub);
                }
            }
        }
        board.changed.send_modify(|n| *n += 1);
    }));
    // The rules stop with the daemon; the senders go with the observer, which closes the
    // notifiers' queues.
    let hub = hub.clone();
    tracker.spawn(async move {
        cancel.cancelled().await;
        hub.stop_observing(observer);
    });
}

/// `pistats notify-test`: one test message through every notifier (one attempt each, no
/// retries, so the answer is quick); `(name, result)` per destination, in file order.
pub async fn notify_test(
    alerting: &crate::config::alerting::Alerting,
) -> Vec<(String, Result<(), String>)> {
    let host = sysinfo::System::host_name().unwrap_or_else(|| "pistats".to_owned());
    let alert = notify::test_alert(&host);
    let mut results = Vec::new();
    if !alerting.notifiers.is_empty() {
        let client = notify::client();
        for notifier in &alerting.notifiers {
            let result = notify::deliver(&client, notifier, &alert)
                .await
                .map_err(|e| e.to_string());
            results.push((notifier.name.clone(), result));
        }
    }
    if let Some(mqtt) = &alerting.mqtt {
        let result = mqtt::test(mqtt, &host).await;
        results.push((format!("mqtt {}:{}", mqtt.host, mqtt.port), result));
    }
    results
}
