//! systemd integration through `sd_notify`: readiness, status lines, watchdog and stopping.
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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

/// Keeps STATUS= current and pets the watchdog while the collector is producing snapshots.
/// If the collector stalls, the pings stop and systemd restarts the service
/// (`WatchdogSec=` in the unit).
pub async fn run(hub: Arc<Hub>, mut status: watch::Receiver<String>, cancel: CancellationToken) {
    let watchdog = sd_notify::watchdog_enabled();
    let period = watchdog.map_or(STATUS_REFRESH, |w| (w / 2).min(STATUS_REFRESH));
    let mut ticker = tokio::time::interval(period);
    let mut last_status = String::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
            changed = status.changed() => if changed.is_err() { return },
        }
        if watchdog.is_some() {
            if hub.is_fresh() {
                notify(&[NotifyState::Watchdog]);
            } else {
                tracing::warn!("collector is not producing snapshots; withholding watchdog ping");
            }
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
