//! ntfy and webhook deliveries: one HTTP(S) POST per alert change.
//!
//! Each `[[notify]]` endpoint has its own task and bounded queue ([`spawn`]): the rules engine
//! only `try_send`s, so an endpoint that is slow, down or hanging can delay nothing but its
//! own deliveries; when its queue is full, new alerts for it are dropped and logged. Each
//! attempt has a deadline (`timeout`); a failed one is retried `retries` times after pauses
//! that double from 1 s (capped at 1 min), then given up with a log line and a
//! `notification_failed` event.
//!
//! HTTPS goes through rustls (ring) with the system's CA certificates
//! (`/etc/ssl/certs`, read once by rustls-native-certs).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Alert, AlertState, Board};
use crate::config::alerting::{Notifier, NotifyKind};
use crate::events::Severity;
use crate::hub::Hub;

/// Alerts waiting for one endpoint; beyond this they are dropped (and logged).
pub const QUEUE: usize = 32;
/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Answer bodies are not used; reading stops after this much.
const MAX_ANSWER: usize = 64 * 1024;

/// An HTTP/1.1 client for http:// and https:// URLs.
pub type Client = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(String),
    #[error("the endpoint answered {0}")]
    Status(hyper::StatusCode),
    #[error("cannot build the request: {0}")]
    Build(String),
}

/// A client trusting the system's CA certificates. Reads them from disk: call it once.
pub fn client() -> Client {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config())
        .https_or_http()
        .enable_http1()
        .build();
    HyperClient::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https)
}

/// rustls with the ring provider (the one the server side uses) and the system's CA
/// certificates, for HTTPS notifications and `mqtts://`.
pub fn tls_config() -> tokio_rustls::rustls::ClientConfig {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for err in &found.errors {
        tracing::warn!("system CA certificates: {err}");
    }
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!("no system CA certificates found: https:// notifications will fail");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// ntfy's priorities: 3 default, 4 high, 5 urgent.
fn ntfy_priority(notifier: &Notifier, alert: &Alert) -> u8 {
    if let Some(priority) = notifier.priority {
        return priority;
    }
    match (alert.state, alert.severity) {
        (AlertState::Firing, Severity::Critical) => 5,
        (AlertState::Firing, Severity::Warning) => 4,
        _ => 3,
    }
}

/// ntfy shows tags that name an emoji as that emoji.
fn ntfy_tags(notifier: &Notifier, alert: &Alert) -> String {
    let emoji = match (alert.state, alert.severity) {
        (AlertState::Cleared, _) => "white_check_mark",
        (AlertState::Test, _) => "bell",
        (AlertState::Firing, Severity::Critical) => "rotating_light",
        (AlertState::Firing, Severity::Warning) => "warning",
        (AlertState::Firing, Severity::Info) => "information_source",
    };
    let mut tags = vec![emoji.to_owned()];
    tags.extend(notifier.tags.iter().cloned());
    tags.join(",")
}

/// Header values must be visible ASCII: other characters become `?`.
fn ascii(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The request one delivery sends.
pub fn request(notifier: &Notifier, alert: &Alert) -> Result<Request<Full<Bytes>>, DeliveryError> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(notifier.url.clone())
        .header(
            hyper::header::USER_AGENT,
            concat!("pistats/", env!("CARGO_PKG_VERSION")),
        );
    let body = match notifier.kind {
        NotifyKind::Ntfy => {
            builder = builder
                .header(CONTENT_TYPE, "text/plain; charset=utf-8")
                .header("Title", ascii(&alert.title()))
                .header("Priority", ntfy_priority(notifier, alert).to_string())
                .header("Tags", ascii(&ntfy_tags(notifier, alert)));
            Bytes::from(alert.message.clone())
        }
        NotifyKind::Webhook => {
            builder = builder.header(CONTENT_TYPE, "application/json");
            Bytes::from(
                serde_json::to_vec(&alert.payload())
                    .map_err(|e| DeliveryError::Build(e.to_string()))?,
            )
        }
    };
    if let Some(token) = &notifier.token {
        let value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| DeliveryError::Build("the token is not a valid header value".into()))?;
        builder = builder.header(AUTHORIZATION, value);
    }
    let mut request = builder
        .body(Full::new(body))
        .map_err(|e| DeliveryError::Build(e.to_string()))?;
    for (name, value) in &notifier.headers {
        let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
            DeliveryError::Build(format!("header {name} is not a valid header value"))
        })?;
        value.set_sensitive(true);
        request.headers_mut().insert(name.clone(), value);
    }
    Ok(request)
}

/// One attempt: success is any 2xx answer within the notifier's timeout.
pub async fn deliver(
    client: &Client,
    notifier: &Notifier,
    alert: &Alert,
) -> Result<(), DeliveryError> {
    let request = request(notifier, alert)?;
    let attempt = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| DeliveryError::Request(describe(&e)))?;
        let status = response.status();
        // Read (a bounded part of) the answer so the connection can be reused.
        let _ = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await;
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status))
        }
    };
    tokio::time::timeout(notifier.timeout, attempt)
        .await
        .map_err(|_| DeliveryError::Timeout(notifier.timeout))?
}

/// The error and its causes, on one line (hyper's own message is only "client error").
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Pause before attempt `n` (1-based retries): 1 s, 2 s, 4 s… at most [`MAX_BACKOFF`].
pub fn backoff(retry: u32) -> Duration {
    Duration::from_secs(1u64 << retry.saturating_sub(1).min(6)).min(MAX_BACKOFF)
}

/// Delivers with retries; returns how many attempts it took, or the last error. Stops early
/// (with that error) when `cancel` fires.
pub async fn deliver_with_retries(
    client: &Client,
    notifier: &Notifier,
    alert: &Alert,
    cancel: &CancellationToken,
) -> Result<u32, DeliveryError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = tokio::select! {
            result = deliver(client, notifier, alert) => result,
            () = cancel.cancelled() => Err(DeliveryError::Request("pistats is stopping".into())),
        };
        match result {
            Ok(()) => return Ok(attempt),
            Err(err) if attempt > notifier.retries || cancel.is_cancelled() => return Err(err),
            Err(err) => {
                tracing::debug!(
                    "notifier {}: attempt {attempt} failed ({err}), retrying",
                    notifier.name
                );
                tokio::select! {
                    () = tokio::time::sleep(backoff(attempt)) => {}
                    () = cancel.cancelled() => return Err(err),
                }
            }
        }
    }
}

/// The queue of one endpoint.
#[derive(Debug, Clone)]
pub struct Sender {
    pub name: String,
    tx: mpsc::Sender<Alert>,
}

impl Sender {
    /// Queues `alert` without waiting; a full queue drops it (logged, and an event).
    pub fn offer(&self, alert: Alert, hub: &Hub) {
        if let Err(mpsc::error::TrySendError::Full(alert)) = self.tx.try_send(alert) {
            let reason = format!("queue of {QUEUE} full");
            tracing::warn!(
                "notifier {}: {reason}, dropped alert {}",
                self.name,
                alert.rule
            );
            Board::record_delivery_failure(hub, &self.name, &alert, &reason);
        }
    }
}

/// Starts the delivery task of one endpoint.
pub fn spawn(
    notifier: Notifier,
    client: Client,
    hub: Arc<Hub>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Sender {
    let (tx, mut rx) = mpsc::channel::<Alert>(QUEUE);
    let name = notifier.name.clone();
    tracker.spawn(async move {
        loop {
            let alert = tokio::select! {
                alert = rx.recv() => match alert { Some(a) => a, None => break },
                () = cancel.cancelled() => break,
            };
            match deliver_with_retries(&client, &notifier, &alert, &cancel).await {
                Ok(attempts) => {
                    tracing::info!(
                        "notifier {}: sent {} {} ({attempts} attempt(s))",
                        notifier.name,
                        alert.rule,
                        alert.state.as_str()
                    );
                    hub.alerts.delivered(&notifier.name);
                }
                Err(err) => {
                    let reason = format!("{err} (after {} attempt(s))", notifier.retries + 1);
                    tracing::warn!(
                        notifier = notifier.name.as_str(),
                        alert = alert.rule.as_str(),
                        "notifier {}: cannot send {} {}: {reason}",
                        notifier.name,
                        alert.rule,
                        alert.state.as_str()
                    );
                    Board::record_delivery_failure(&hub, &notifier.name, &alert, &reason);
                }
            }
        }
    });
    Sender { name, tx }
}

/// When the test message of `pistats notify-test` was made.
pub fn test_alert(host: &str) -> Alert {
    Alert {
        rule: "test".into(),
        metric: "test".into(),
        state: AlertState::Test,
        reminder: false,
        value: None,
        threshold: None,
        severity: Severity::Info,
        host: host.to_owned(),
        time: SystemTime::now(),
        message: format!("Test notification from pistats on {host}: notifications work."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let pauses: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn header_text_is_ascii() {
        assert_eq!(ascii("küche 81 °C"), "k?che 81 ?C");
    }
}
