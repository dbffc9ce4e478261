//! The serving daemon: starts each subsystem through its `spawn` face, wires them together
//! and owns their lifecycle.
//!
//! Every long-lived subsystem starts the same way, `module::spawn(config/deps, cancel,
//! tracker)`, and hands back what the others need (a channel, a shared handle, its result).
//! All of them stop when the one cancellation token fires (SIGTERM/SIGINT, or the listener
//! failing) and the daemon waits for all of them through the one task tracker. A new
//! subsystem is one more `spawn` line in [`run`].
//!
//! ```text
//! signals ──cancel──▶ everything
//! netwatch ──Connectivity──▶ hub (collector thread), listener
//! hub ──snapshots──▶ listener (HTTP/WebSocket clients), systemd notifier, history, alerts
//! history ──tiers, events──▶ hub records (HTTP queries, event followers)
//! alerts ──try_send──▶ ntfy/webhook queues, MQTT publisher
//! listener ──status line──▶ systemd notifier
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::http::tls::{Tls, TlsError};
use crate::http::FdBudget;
use crate::listener::BindError;
use crate::{alerts, history, hub, listener, netwatch, signals, systemd};

/// How long shutdown waits for the subsystems once they were told to stop. Each stops within
/// a tick or a listener close; one stuck in a system call (a hung `/sys` read) must not hold
/// the process until systemd kills it.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("the listener supervisor failed: {0}")]
    Listener(tokio::task::JoinError),
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config, config_file: Option<PathBuf>) -> Result<(), DaemonError> {
    let config = Arc::new(config);
    // Certificate problems are configuration errors: report them before anything starts.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Tls::load(cert, key)?),
        _ => None,
    };
    raise_fd_limit();
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    signals::spawn(tls.clone(), cancel.clone(), &tracker).map_err(DaemonError::Signal)?;
    log_start(&config, config_file, &tls);

    let connectivity = netwatch::spawn(&config, cancel.clone(), &tracker);
    let hub = hub::spawn(&config, connectivity.clone(), cancel.clone(), &tracker);
    history::spawn(&config, &hub, cancel.clone(), &tracker);
    alerts::spawn(
        &config,
        &hub,
        alerts::rules::Facts::default(),
        cancel.clone(),
        &tracker,
    );
    let (status_tx, status) = watch::channel(String::from("starting"));
    systemd::spawn(&hub, status, cancel.clone(), &tracker);
    let listener = listener::spawn(
        &config,
        tls,
        &hub,
        connectivity,
        status_tx,
        cancel.clone(),
        &tracker,
    );

    // The listener supervisor ends when `cancel` fires, or first with a bind error.
    let result = match listener.await {
        Ok(result) => result.map_err(DaemonError::from),
        Err(err) => Err(DaemonError::Listener(err)),
    };
    systemd::stopping();
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} subsystem task(s) still running after {SHUTDOWN_TIMEOUT:?}; exiting anyway",
            tracker.len()
        );
    }
    tracing::info!("pistats stopped");
    result
}

fn log_start(config: &Config, config_file: Option<PathBuf>, tls: &Option<Tls>) {
    tracing::info!(
        "pistats {} starting: interval {:?}, serve {:?} (interface {}), config {}, dashboard {}",
        env!("CARGO_PKG_VERSION"),
        config.interval,
        config.serve,
        config.interface,
        config_file.map_or_else(
            || "built-in defaults".to_owned(),
            |p| p.display().to_string()
        ),
        config
            .resolved_assets_dir()
            .map_or_else(|| "not found".to_owned(), |p| p.display().to_string()),
    );
    if let Some(tls) = tls {
        tracing::info!(
            "TLS on: https:// and wss:// only (certificate {}; SIGHUP reloads it)",
            tls.certificate_path().display()
        );
    }
}

/// glibc's malloc arenas allowed (`MALLOC_ARENA_MAX` in the environment wins).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_ARENAS: i32 = 1;

/// Caps glibc's malloc arenas, before the runtime starts its threads. By default each thread
/// that allocates under contention gets an arena of its own (up to 8 per core) and clients
/// coming and going scatter their buffers over all of them: RSS after 30,000 connections
/// settles near 20 MiB instead of 17 MiB with one arena, at the same CPU cost (see
/// docs/benchmarks.md). Other C libraries allocate differently and are left alone.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no allocation is in flight on
        // another thread yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

/// Each client is a file descriptor; systemd's default soft limit (1024) would refuse
/// connections before `max_clients` does. So the soft limit is raised here, the process scan's
/// kept-open `/proc/PID/stat` files are held to their share of [`FdBudget`], and the
/// connection caps (`AppState::new`) are derived from what remains.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("cannot raise the open-file limit to {}", limit.rlim_max);
            }
        }
    }
    let budget = FdBudget::current();
    // sysinfo keeps no process files any more, but its first use would take half the limit.
    sysinfo::set_open_files_limit(0);
    crate::stats::processes::set_kept_files_limit(budget.sysinfo);
}
