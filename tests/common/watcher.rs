//! `netwatch::run` in the test's own process, against the bus at a given address: the
//! watcher's view of the interface, observed without the rest of the daemon.

use std::time::Duration;

use pistats::netwatch;
use pistats::stats::model::Connectivity;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::WAIT;

/// `netwatch::run` reads the bus address from the environment, which is per process: watchers
/// take turns, each holding this lock while it runs.
static ENV_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Watcher {
    pub rx: watch::Receiver<Connectivity>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _env: tokio::sync::MutexGuard<'static, ()>,
}

impl Watcher {
    /// Starts `netwatch::run` for `interface` against the system bus at `address`, once no
    /// other watcher of this test binary runs.
    pub async fn start(address: &str, interface: &str) -> Watcher {
        let env = ENV_LOCK.lock().await;
        // RUST_LOG's `target=level` directives, as the daemon reads them; errors otherwise.
        let filter = std::env::var("RUST_LOG")
            .ok()
            .and_then(|s| s.parse::<Targets>().ok())
            .unwrap_or_else(|| Targets::new().with_default(tracing::Level::ERROR));
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_test_writer())
            .try_init();
        std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", address);
        let (tx, rx) = watch::channel(Connectivity {
            source: "none",
            interface: interface.to_owned(),
            state: "unknown".into(),
            ..Connectivity::default()
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(netwatch::run(interface.to_owned(), tx, cancel.clone()));
        Watcher {
            rx,
            cancel,
            task,
            _env: env,
        }
    }

    /// Waits for a view matching `pred`, failing with the last one seen.
    pub async fn until(
        &mut self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&Connectivity) -> bool,
    ) -> Connectivity {
        let found = tokio::time::timeout(limit, self.rx.wait_for(|c| pred(c)))
            .await
            .ok()
            .and_then(|r| r.ok().map(|c| c.clone()));
        found.unwrap_or_else(|| panic!("no {what} within {limit:?}; last: {:?}", *self.rx.borrow()))
    }

    /// Cancels the watcher and waits for it to finish.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("netwatch::run stops when cancelled")
            .unwrap();
    }
}

/// The view comes from NetworkManager.
pub fn nm(c: &Connectivity) -> bool {
    c.source == "networkmanager"
}
