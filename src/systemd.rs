//! systemd integration through `sd_notify`: readiness, status lines, watchdog and stopping.
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;

/// How often the STATUS= line is refreshed (only sent when it changed).
const STATUS_REFRESH: Duration = Duration::from_secs(5);

fn notify(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {err}");
    }
}

/// Tells systemd that start-up is complete (listener bound if it should be, first snapshot
/// collected).
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// Starts the notifier: keeps STATUS= current with `status` (plus the client count) and pets
/// the watchdog while the collector is producing snapshots, until `cancel` fires.
pub fn spawn(
    hub: &Arc<Hub>,
    status: watch::Receiver<String>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(run(hub.clone(), status, cancel));
}

/// If the collector stalls, the pings stop and systemd restarts the service
/// (`WatchdogSec=` in the unit).
async fn run(hub: Arc<Hub>, mut status: watch::Receiver<String>, cancel: CancellationToken) {
    let watchdog = sd_notify::watchdog_enabled();
    let period = watchdog.map_or(STATUS_REFRESH, |w| (w / 2).min(STATUS_REFRESH));
    let mut ticker = tokio::time::interval(period);
    let mut health = Health::Starting;
    let mut last_status = String::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
            changed = status.changed() => if changed.is_err() { return },
        }
        if watchdog.is_some() && health.check(&hub) {
            notify(&[NotifyState::Watchdog]);
        }
        let line = format!(
            "{}; {} client(s)",
            *status.borrow_and_update(),
            hub.clients()
        );
        if line != last_status {
            notify(&[NotifyState::Status(&line)]);
            last_status = line;
        }
    }
}

/// The collector as the watchdog sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// No snapshot yet. Nothing to ping for and nothing to warn about: READY=1 waits for
    /// the first snapshot, and `TimeoutStartSec=` covers a collector that never makes one.
    Starting,
    Producing,
    Stalled,
}

impl Health {
    /// Whether the watchdog may be pinged now; logs once when the collector stalls and
    /// once when it recovers.
    fn check(&mut self, hub: &Hub) -> bool {
        let next = match hub.snapshot_age() {
            None => Health::Starting,
            Some(_) if hub.is_fresh() => Health::Producing,
            Some(age) => {
                if *self != Health::Stalled {
                    tracing::warn!(
                        "collector is not producing snapshots; withholding watchdog ping \
                         (the latest is {age:.0?} old)"
                    );
                }
                Health::Stalled
            }
        };
        if *self == Health::Stalled && next == Health::Producing {
            tracing::info!("collector is producing snapshots again; watchdog pings resume");
        }
        *self = next;
        next == Health::Producing
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Instant, SystemTime};

    use super::*;
    use crate::config::Config;
    use crate::hub::Stamp;
    use crate::stats::{Collector, Context};

    fn publish(hub: &Hub, age: Duration) {
        let ctx = Context {
            connected_clients: 0,
            connectivity: None,
            full: true,
        };
        let document = Collector::new(&Config::default()).collect(ctx);
        let stamp = Stamp {
            wall: SystemTime::now(),
            mono: Instant::now()
                .checked_sub(age)
                .expect("uptime longer than the age"),
        };
        hub.publish(document, stamp, Duration::ZERO);
    }

    #[test]
    fn watchdog_waits_for_the_first_snapshot_then_follows_freshness() {
        let hub = Hub::new(Duration::from_secs(1), 0);
        let mut health = Health::Starting;
        // Before the first snapshot: no ping, and not counted as a stall.
        assert!(!health.check(&hub));
        assert_eq!(health, Health::Starting);
        publish(&hub, Duration::ZERO);
        assert!(health.check(&hub));
        assert_eq!(health, Health::Producing);
        // Older than three intervals and a second: stalled, pings withheld.
        publish(&hub, Duration::from_secs(5));
        assert!(!health.check(&hub));
        assert_eq!(health, Health::Stalled);
        assert!(!health.check(&hub));
        publish(&hub, Duration::ZERO);
        assert!(health.check(&hub));
        assert_eq!(health, Health::Producing);
    }
}
