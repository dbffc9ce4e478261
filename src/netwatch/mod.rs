//! Connectivity of the watched interface (placeholder until the NetworkManager listener lands).

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::stats::model::Connectivity;

/// Follows `interface` until `cancel` fires, publishing every change on `tx`.
pub async fn run(interface: String, tx: watch::Sender<Connectivity>, cancel: CancellationToken) {
    let _ = tx.send(Connectivity {
        source: "none",
        interface,
        state: "unknown".into(),
        connected: true,
        addresses: Vec::new(),
    });
    cancel.cancelled().await;
}

/// One-shot view of `interface`, for `pistats network`.
pub async fn probe(interface: &str) -> Connectivity {
    Connectivity {
        source: "none",
        interface: interface.to_owned(),
        state: "unknown".into(),
        connected: false,
        addresses: Vec::new(),
    }
}
