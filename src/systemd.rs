//! systemd integration through `sd_notify`: readiness, status lines, watchdog and stopping.
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;

/// Least time between two STATUS= lines sent for a client count change, so a burst of
/// connections is one line, not thousands.
const STATUS_REFRESH: Duration = Duration::from_secs(5);

/// How soon a withheld watchdog ping is tried again. The next regular ping (`WatchdogSec=`/2
/// later) would land on systemd's deadline, so a collector that recovers from a stall of a
/// few seconds would still get the service killed.
const PING_RETRY: Duration = Duration::from_secs(1);

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
///
/// Nothing here runs on a timer but the watchdog ping (every `WatchdogSec=`/2, as sd_notify(3)
/// advises, and every [`PING_RETRY`] while withheld): the status line is sent when the daemon's status changes, and when the client
/// count changes (at most every [`STATUS_REFRESH`]), so an idle daemon without a watchdog is
/// never woken for it.
async fn run(hub: Arc<Hub>, mut status: watch::Receiver<String>, cancel: CancellationToken) {
    let watchdog = sd_notify::watchdog_enabled();
    let mut pings = watchdog.map(|w| tokio::time::interval(w / 2));
    let retry = watchdog.map_or(PING_RETRY, retry_after);
    let mut health = Health::Starting;
    let mut last_status = String::new();
    let mut last_sent: Option<Instant> = None;
    // When the status line is to be looked at again for a client count change; the first
    // line (with the count) goes out at once.
    let mut due = Some(Instant::now());
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = async { pings.as_mut().expect("guarded").tick().await }, if pings.is_some() => {
                if health.check(&hub) {
                    notify(&[NotifyState::Watchdog]);
                } else if let Some(pings) = pings.as_mut() {
                    pings.reset_after(retry);
                }
                continue;
            }
            changed = status.changed() => if changed.is_err() { return },
            () = hub.counters.clients_changed.notified(), if due.is_none() => {
                let at = last_sent.map_or_else(Instant::now, |t| t + STATUS_REFRESH);
                due = Some(at.max(Instant::now()));
                continue;
            }
            () = sleep_until(due), if due.is_some() => {}
        }
        due = None;
        let line = format!(
            "{}; {} client(s)",
            *status.borrow_and_update(),
            hub.clients()
        );
        if line != last_status {
            notify(&[NotifyState::Status(&line)]);
            last_status = line;
            last_sent = Some(Instant::now());
        }
    }
}

/// When to look again after withholding a ping, for a watchdog of `watchdog_sec`: soon, but
/// never later than the regular period.
fn retry_after(watchdog_sec: Duration) -> Duration {
    PING_RETRY.min(watchdog_sec / 2)
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
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

    /// A withheld ping is retried well before systemd's deadline, whatever `WatchdogSec=`.
    #[test]
    fn withheld_pings_are_retried_before_the_deadline() {
        let packaged = Duration::from_secs(30);
        assert_eq!(retry_after(packaged), PING_RETRY);
        assert!(retry_after(packaged) * 4 < packaged / 2);
        let short = Duration::from_millis(500);
        assert_eq!(retry_after(short), short / 2);
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
