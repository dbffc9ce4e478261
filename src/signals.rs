//! Signals: SIGTERM and SIGINT shut the daemon down (by cancelling the token every subsystem
//! watches); SIGHUP (`systemctl reload`) reloads the TLS certificate, the one thing that can
//! change without a restart.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::tls::{Reloaded, Tls};

/// Installs the handlers, then handles signals until `cancel` fires (or a signal fires it).
/// Installing happens before this returns, so a signal sent once start-up went on is never
/// lost to the default action.
pub fn spawn(
    tls: Option<Tls>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tracker.spawn(async move {
        let name = loop {
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = hup.recv() => reload(tls.as_ref()),
                _ = cancel.cancelled() => return,
            }
        };
        tracing::info!("{name} received: shutting down");
        cancel.cancel();
    });
    Ok(())
}

fn reload(tls: Option<&Tls>) {
    let Some(tls) = tls else {
        tracing::info!("SIGHUP received: nothing to reload (TLS is off; settings need a restart)");
        return;
    };
    let path = tls.certificate_path().display();
    match tls.reload() {
        Ok(Reloaded::Changed) => {
            tracing::info!("SIGHUP received: TLS certificate reloaded from {path}")
        }
        Ok(Reloaded::Unchanged) => tracing::warn!(
            "SIGHUP received: {path} holds the certificate already in use (a credential \
             copy is only refreshed by a restart)"
        ),
        Err(err) => tracing::error!("SIGHUP received: {err}; still using the previous certificate"),
    }
}
