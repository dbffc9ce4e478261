//! The rules engine: pure, no clock and no I/O. Each tick the caller reads every rule's value
//! from the typed snapshot ([`read`]) and hands the values with the tick's monotonic time to
//! [`Engine::evaluate`], which answers what changed.
//!
//! A rule is `ok`, `pending` (its condition holds, for less than `for`) or `firing`. A firing
//! alert clears only once the value passes the `clear` level, so a value hovering at the line
//! does not flap; while firing, `repeat` asks for a reminder every so often. A value that could
//! not be read this tick (sensor gone, `/proc` unreadable) neither fires nor clears: a pending
//! rule starts over, a firing one stays firing.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::alerting::{Condition, Metric, Rule};
use crate::stats::model::StatsDocument;

/// Facts that come from outside the snapshot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    /// The previous run of pistats ended without a clean stop (true on the first tick only).
    pub unclean_restart: bool,
}

/// A rule's value in this snapshot: a number, or 1/0 for a flag; `None` when unknown.
pub fn read(metric: &Metric, doc: &StatsDocument, facts: &Facts) -> Option<f64> {
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let throttle = || doc.pi.as_ref().and_then(|pi| pi.throttled);
    let wifi = || {
        doc.connectivity
            .as_ref()
            .filter(|c| c.connected)
            .and_then(|c| c.wifi.as_ref())
    };
    match metric {
        Metric::Cpu => Some(doc.cpu.usage_percent).filter(|v| v.is_finite()),
        Metric::Memory => doc.memory.map(|m| m.used_percent()),
        Metric::Swap => doc.memory.map(|m| m.swap_used_percent()),
        Metric::Temperature => doc.temperature.pi_cpu_celsius,
        Metric::Load1 => doc.system.load_average.map(|l| l[0]),
        Metric::Disk { mount } => doc
            .disk
            .partitions
            .as_deref()?
            .iter()
            .find(|p| *p.mountpoint == **mount)
            .map(|p| p.used_percent()),
        Metric::InterfaceDown => doc.connectivity.as_ref().map(|c| flag(!c.connected)),
        // Unknown, not bad, while the interface is down or not wireless: a link that drops is
        // `interface_down`'s business, and a firing signal alert neither clears nor fires again
        // on a reconnect flap (unknown values keep a rule where it is).
        Metric::WifiSignal => wifi().and_then(|w| w.signal_dbm).map(f64::from),
        Metric::WifiQuality => wifi().and_then(|w| w.quality_percent).map(f64::from),
        Metric::Undervoltage => throttle().and_then(|t| t.under_voltage).map(flag),
        Metric::Throttled => throttle().map(|t| flag(t.throttled)),
        Metric::FrequencyCapped => throttle().map(|t| flag(t.arm_frequency_capped)),
        Metric::SoftTemperatureLimit => throttle().map(|t| flag(t.soft_temperature_limit)),
        Metric::UncleanRestart => Some(flag(facts.unclean_restart)),
    }
}

/// Where a rule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Ok,
    /// The condition holds since `since`, not yet for `for`.
    Pending {
        since: Instant,
    },
    /// Fired at `since`; the last notification (first or reminder) went out at `notified`.
    Firing {
        since: Instant,
        notified: Instant,
    },
}

impl State {
    /// When the rule entered this state; `None` while it is `ok`.
    pub fn since(&self) -> Option<Instant> {
        match self {
            State::Ok => None,
            State::Pending { since } | State::Firing { since, .. } => Some(*since),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Pending { .. } => "pending",
            State::Firing { .. } => "firing",
        }
    }

    pub fn is_firing(&self) -> bool {
        matches!(self, State::Firing { .. })
    }
}

/// What a tick changed for one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Firing,
    /// Still firing, `repeat` after the last notification.
    Reminder,
    Cleared,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// Index into the rules.
    pub rule: usize,
    pub change: Change,
    /// The value that caused it.
    pub value: f64,
}

/// Every rule with its state.
#[derive(Debug, Clone)]
pub struct Engine {
    rules: Vec<Rule>,
    states: Vec<State>,
    values: Vec<Option<f64>>,
    /// The values being read, kept between ticks so that a tick allocates nothing.
    reading: Vec<Option<f64>>,
}

impl Engine {
    pub fn new(rules: Vec<Rule>) -> Engine {
        let n = rules.len();
        Engine {
            rules,
            states: vec![State::Ok; n],
            values: vec![None; n],
            reading: Vec::with_capacity(n),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn states(&self) -> &[State] {
        &self.states
    }

    /// The values of the last evaluation.
    pub fn values(&self) -> &[Option<f64>] {
        &self.values
    }

    /// Reads every rule's value from `doc` and evaluates them.
    pub fn observe(&mut self, now: Instant, doc: &StatsDocument, facts: &Facts) -> Vec<Transition> {
        let mut reading = std::mem::take(&mut self.reading);
        reading.clear();
        reading.extend(self.rules.iter().map(|r| read(&r.metric, doc, facts)));
        let changes = self.evaluate(now, &reading);
        self.reading = reading;
        changes
    }

    /// Advances every rule with this tick's value (`values[i]` for rule `i`) at `now`.
    pub fn evaluate(&mut self, now: Instant, values: &[Option<f64>]) -> Vec<Transition> {
        let mut changes = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let value = values.get(i).copied().flatten().filter(|v| !v.is_nan());
            self.values[i] = value;
            let state = &mut self.states[i];
            let Some(value) = value else {
                if let State::Pending { .. } = state {
                    *state = State::Ok;
                }
                continue;
            };
            let change = step(rule, state, now, value);
            if let Some(change) = change {
                changes.push(Transition {
                    rule: i,
                    change,
                    value,
                });
            }
        }
        changes
    }
}

fn holds(condition: &Condition, value: f64) -> bool {
    match *condition {
        Condition::Above { level, .. } => value >= level,
        Condition::Below { level, .. } => value <= level,
        Condition::Set => value >= 0.5,
    }
}

fn cleared(condition: &Condition, value: f64) -> bool {
    match *condition {
        Condition::Above { clear, .. } => value < clear,
        Condition::Below { clear, .. } => value > clear,
        Condition::Set => value < 0.5,
    }
}

fn step(rule: &Rule, state: &mut State, now: Instant, value: f64) -> Option<Change> {
    let elapsed = |since: Instant| now.saturating_duration_since(since);
    match *state {
        State::Ok | State::Pending { .. } if !holds(&rule.condition, value) => {
            *state = State::Ok;
            None
        }
        State::Ok if rule.for_ > Duration::ZERO => {
            *state = State::Pending { since: now };
            None
        }
        State::Pending { since } if elapsed(since) < rule.for_ => None,
        State::Ok | State::Pending { .. } => {
            *state = State::Firing {
                since: now,
                notified: now,
            };
            Some(Change::Firing)
        }
        State::Firing { .. } if cleared(&rule.condition, value) => {
            *state = State::Ok;
            Some(Change::Cleared)
        }
        State::Firing { since, notified } => match rule.repeat {
            Some(repeat) if elapsed(notified) >= repeat => {
                *state = State::Firing {
                    since,
                    notified: now,
                };
                Some(Change::Reminder)
            }
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests;
