//! The one-port server: WebSocket feed at `/` and `/ws`, REST (`/api/v1/*`), health,
//! Prometheus metrics and the dashboard's static files.
//!
//! `server` accepts connections and bounds each one (caps, deadlines); `admission` holds the
//! caps; `hosts` answers only requests for this machine's names; `static_files` resolves
//! dashboard paths to regular files inside the directory; `ws` runs WebSocket clients and
//! `fanout` writes each document to all of them in one pass;
//! `deflate` negotiates `permessage-deflate` and compresses a document once for all of them;
//! `client_log` keeps per-client log lines within a budget; `tls` is the optional rustls layer;
//! `encoding` negotiates gzip, entity tags and ranges for the static files and the API.

/// Logs a line about one client with its address as fields: the journal fields
/// `CLIENT_ADDR` and `CLIENT_PORT` (`journalctl -u pistats CLIENT_ADDR=192.0.2.7`). Fields of
/// the event, not of a span per connection: a span costs every connection a slot in the log
/// registry, and the registry keeps the slots of a burst's peak for ever.
macro_rules! client_event {
    ($level:ident, $addr:expr, $($arg:tt)+) => {
        match $addr {
            Some(addr) => {
                let addr: std::net::SocketAddr = addr;
                tracing::$level!(client_addr = %addr.ip(), client_port = addr.port(), $($arg)+)
            }
            None => tracing::$level!($($arg)+),
        }
    };
}

mod admission;
mod client_log;
mod deflate;
mod encoding;
mod fanout;
mod hosts;
mod server;
mod static_files;
pub mod tls;
mod ws;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warp::http::{header, HeaderValue, Response, StatusCode};
use warp::{Filter, Rejection, Reply};

pub use admission::{Admission, Connections, FdBudget, MAX_HTTP_CONNECTIONS};
pub use deflate::compress as deflate;
pub use hosts::AllowedHosts;
pub use server::{serve, HEADER_READ_TIMEOUT, IDLE_TIMEOUT};
pub use ws::text_frame;

use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::{self, OwnMetrics};

/// Longest history a single request may ask for.
const MAX_HISTORY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Most points a `range=` answer holds (neighbours are merged to fit): a chart's width. Also
/// the default and the most that `points=` may ask for.
const MAX_RANGE_POINTS: usize = 1500;
/// `limit=` of `/api/v1/events`: default and most (the log keeps 2,000).
const DEFAULT_EVENTS_LIMIT: usize = 100;
const MAX_EVENTS_LIMIT: usize = crate::events::EVENT_CAPACITY;

/// Shown at `/` when no dashboard directory is installed.
const FALLBACK_PAGE: &str = "<!doctype html><meta charset=utf-8><title>pistats</title>\
<h1>pistats</h1><p>The dashboard files were not found (see <code>assets_dir</code>). \
The feed is at <code>ws://HOST:PORT/</code> and the API at <a href=/api/v1/stats>/api/v1/stats</a>.</p>";

/// Everything a request handler needs.
pub struct AppState {
    pub hub: Arc<Hub>,
    pub config: Arc<Config>,
    pub admission: Arc<Admission>,
    /// Cancelled when this listener closes: WebSocket sessions then send close frames.
    pub listener_closed: CancellationToken,
    /// The WebSocket sessions, so closing the listener can wait for their close frames.
    pub sessions: TaskTracker,
    /// Set when the port speaks HTTPS/WSS.
    pub tls: Option<tls::TlsAcceptor>,
    /// Connections hyper owns, capped globally and per address.
    pub connections: Arc<Connections>,
    /// The names a request's `Host` may carry (DNS-rebinding defence).
    pub allowed_hosts: AllowedHosts,
    /// Budget for per-client log lines.
    pub client_log: client_log::ClientLog,
    /// The WebSocket sessions the broadcaster writes each document to.
    fanout: Arc<fanout::Fanout>,
}

impl AppState {
    /// State for a listener: client limits from `config`, lowered to what the process's
    /// file-descriptor limit can really hold.
    pub fn new(
        hub: Arc<Hub>,
        config: Arc<Config>,
        listener_closed: CancellationToken,
        sessions: TaskTracker,
        tls: Option<tls::TlsAcceptor>,
    ) -> AppState {
        let budget = FdBudget::current();
        let max_clients = config.max_clients.min(budget.connections);
        if max_clients < config.max_clients {
            tracing::warn!(
                "max_clients lowered from {} to {max_clients}: the open-file limit leaves room \
                 for {} connections",
                config.max_clients,
                budget.connections
            );
        }
        let max_connections = budget
            .connections
            .min(max_clients.saturating_add(MAX_HTTP_CONNECTIONS));
        AppState {
            admission: Admission::new(hub.clone(), max_clients, config.max_clients_per_ip),
            connections: Connections::new(max_connections, config.max_clients_per_ip),
            allowed_hosts: AllowedHosts::of_this_machine(&[]),
            client_log: Default::default(),
            fanout: Arc::new(fanout::Fanout::new(fanout::Pings::new(
                config.interval,
                config.ping_interval,
                config.ping_timeout,
            ))),
            hub,
            config,
            listener_closed,
            sessions,
            tls,
        }
    }
}

/// Why a request was refused, mapped to a status code in [`recover`].
#[derive(Debug)]
enum Refusal {
    Unauthorized,
    ForeignOrigin,
    ForeignHost,
    BadHandshake,
    TooManyClients,
    TooManyFromAddress,
}

impl warp::reject::Reject for Refusal {}

/// All routes of the server.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let authorized = with_state
        .clone()
        .and(token_filter())
        .and_then(|state: Arc<AppState>, token: Option<String>| async move {
            if token_accepted(&state.config, token.as_deref()) {
                Ok(())
            } else {
                Err(warp::reject::custom(Refusal::Unauthorized))
            }
        })
        .untuple_one();

    let ws_path = warp::path::end().or(warp::path!("ws")).unify();
    // Refusals of an upgrade are answered by `ws::upgrade` itself, so that they cannot fall
    // through to the dashboard page that `/` serves to plain GETs.
    let websocket = ws_path
        .and(ws::handshake())
        .and(token_filter())
        .and(with_state.clone())
        .and(peer_addr())
        .and(warp::header::headers_cloned())
        .then(ws::upgrade);

    let stats = warp::path!("api" / "v1" / "stats")
        .and(warp::get())
        .and(authorized.clone())
        .and(with_state.clone())
        .then(|state: Arc<AppState>| async move {
            match state.hub.latest_full(full_wait(&state)).await {
                Some(snapshot) => json_response(StatusCode::OK, snapshot.json()),
                None => not_ready(),
            }
        });

    let history = warp::path!("api" / "v1" / "history")
        .and(warp::get())
        .and(authorized.clone())
        .and(with_state.clone())
        .and(warp::query::<HashMap<String, String>>())
        .map(|state: Arc<AppState>, query: HashMap<String, String>| {
            if let Some(range) = query.get("range") {
                return history_range(
                    &state,
                    range,
                    query.get("points").map(String::as_str),
                    query.contains_key("seconds"),
                );
            }
            if query.contains_key("points") {
                return error_response(StatusCode::BAD_REQUEST, "points needs range");
            }
            let window = match query.get("seconds").map(|s| s.parse::<u64>()) {
                None => state.config.history,
                Some(Ok(seconds)) => Duration::from_secs(seconds).min(MAX_HISTORY_WINDOW),
                Some(Err(_)) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        "seconds must be a whole number",
                    )
                }
            };
            let body = serde_json::json!({
                "interval_ms": state.hub.interval().as_millis() as u64,
                "points": state.hub.history(window),
            });
            json_response(StatusCode::OK, Bytes::from(body.to_string()))
        });

    let events = warp::path!("api" / "v1" / "events")
        .and(warp::get())
        .and(authorized.clone())
        .and(with_state.clone())
        .and(warp::query::<HashMap<String, String>>())
        .map(|state: Arc<AppState>, query: HashMap<String, String>| {
            let since = match query.get("since").map(|s| crate::events::parse_rfc3339(s)) {
                None => None,
                Some(Ok(since)) => Some(since),
                Some(Err(err)) => return error_response(StatusCode::BAD_REQUEST, &err.to_string()),
            };
            let limit = match query.get("limit").map(|s| s.parse::<usize>()) {
                None => DEFAULT_EVENTS_LIMIT,
                Some(Ok(limit)) if (1..=MAX_EVENTS_LIMIT).contains(&limit) => limit,
                Some(_) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        &format!("limit must be a number from 1 to {MAX_EVENTS_LIMIT}"),
                    )
                }
            };
            json_response(StatusCode::OK, state.hub.events_json(since, limit))
        });

    // Open to everyone (load balancers and uptime checkers carry no token); with a token
    // configured, the client count and version are shown only to requests that carry it.
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .and(with_state.clone())
        .and(token_filter())
        .map(|state: Arc<AppState>, token: Option<String>| {
            let age = state.hub.snapshot_age();
            let fresh = state.hub.is_fresh();
            // Sources the latest collection could not read: still serving, but partly blind.
            let degraded: Vec<&str> = state.hub.latest().map_or_else(Vec::new, |s| {
                s.document.degraded.iter().map(|d| d.as_str()).collect()
            });
            let status = match (fresh, degraded.is_empty()) {
                (false, _) => "stale",
                (true, true) => "ok",
                (true, false) => "degraded",
            };
            let mut body = serde_json::json!({
                "status": status,
                "degraded": degraded,
                "snapshot_age_ms": age.map(|a| a.as_millis() as u64),
            });
            if token_accepted(&state.config, token.as_deref()) {
                body["clients"] = state.hub.clients().into();
                body["version"] = env!("CARGO_PKG_VERSION").into();
            }
            let status = if fresh {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(status, Bytes::from(body.to_string()))
        });

    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(authorized.clone())
        .and(with_state.clone())
        .then(|state: Arc<AppState>| async move {
            let Some(snapshot) = state.hub.latest_full(full_wait(&state)).await else {
                return not_ready();
            };
            let mut body = metrics::render(&snapshot.document, &own_metrics(&state, &snapshot));
            body.push_str(&metrics::render_alerts(&state.hub.alerts.firing()));
            Response::builder()
                .header(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )
                .body(Bytes::from(body))
                .expect("valid response")
        });

    let alerts = warp::path!("api" / "v1" / "alerts")
        .and(warp::get())
        .and(authorized.clone())
        .and(with_state.clone())
        .map(|state: Arc<AppState>| {
            let body = state.hub.alerts.to_json().to_string();
            json_response(StatusCode::OK, Bytes::from(body))
        });

    let assets = static_files::Assets::new(state.config.resolved_assets_dir());
    let other_methods = other_methods(assets.clone());
    let static_files = static_files(assets);
    let host_checked = with_state
        .clone()
        .and(warp::header::optional::<String>("host"))
        .and(peer_addr())
        .and_then(
            |state: Arc<AppState>, host: Option<String>, remote: Option<SocketAddr>| async move {
                match host {
                    Some(host) if !state.allowed_hosts.allows(&host) => {
                        if state.client_log.allow() {
                            client_event!(
                            warn,
                            remote,
                            "refused a request for host {host:?} (not one of this machine's names)"
                        );
                        }
                        Err(warp::reject::custom(Refusal::ForeignHost))
                    }
                    _ => Ok(()),
                }
            },
        )
        .untuple_one();

    // Every API answer is a `Response<Bytes>`, gzip'd here when accepted and large enough.
    let api = warp::header::optional::<String>("accept-encoding")
        .and(
            stats
                .or(history)
                .unify()
                .or(events)
                .unify()
                .or(healthz)
                .unify()
                .or(metrics)
                .unify()
                .or(alerts)
                .unify(),
        )
        .then(encoding::api);

    host_checked
        .and(other_methods.or(websocket).unify().or(api).or(static_files))
        .recover(recover)
        .with(warp::reply::with::header(
            header::X_CONTENT_TYPE_OPTIONS,
            "nosniff",
        ))
        .with(warp::reply::with::header(
            header::REFERRER_POLICY,
            "no-referrer",
        ))
}

/// `points=` of `GET /api/v1/history?range=…`: a whole number from 1 to [`MAX_RANGE_POINTS`].
fn parse_range_points(points: Option<&str>) -> Option<usize> {
    match points {
        None => Some(MAX_RANGE_POINTS),
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_RANGE_POINTS).contains(n)),
    }
}

/// `GET /api/v1/history?range=…[&points=N]`: the tier that keeps the range, min/mean/max per
/// point, neighbours merged to at most N points (a chart asks for about its width in pixels:
/// a smaller reply to send, parse and draw).
fn history_range(
    state: &AppState,
    range: &str,
    points: Option<&str>,
    with_seconds: bool,
) -> Response<Bytes> {
    if with_seconds {
        return error_response(StatusCode::BAD_REQUEST, "give range or seconds, not both");
    }
    let range = match range.parse::<crate::history::Range>() {
        Ok(range) => range,
        Err(err) => return error_response(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    let Some(max_points) = parse_range_points(points) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            &format!("points must be a whole number from 1 to {MAX_RANGE_POINTS}"),
        );
    };
    match state.hub.history_range(range, max_points) {
        Some(view) => match serde_json::to_vec(&view) {
            Ok(body) => json_response(StatusCode::OK, Bytes::from(body)),
            Err(err) => {
                tracing::error!("cannot serialize history: {err}");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot serialize history",
                )
            }
        },
        None => error_response(StatusCode::SERVICE_UNAVAILABLE, "history is not ready yet"),
    }
}

fn own_metrics(state: &AppState, snapshot: &crate::hub::Snapshot) -> OwnMetrics {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &state.hub.counters;
    OwnMetrics {
        clients: c.clients.load(Relaxed),
        collection_seconds: snapshot.collection_time.as_secs_f64(),
        collections_total: c.collections.load(Relaxed),
        dropped_slow_clients_total: c.dropped_slow_clients.load(Relaxed),
        refused_clients_total: c.refused_clients.load(Relaxed),
        start_time_seconds: crate::hub::unix_millis(state.hub.started) as f64 / 1000.0,
    }
}

/// Answers every method but GET and HEAD: `405` with `Allow` on a resource that exists,
/// `404` on a path that does not.
fn other_methods(
    assets: static_files::Assets,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::method().and(warp::path::full()).and_then(
        move |method: warp::http::Method, path: warp::path::FullPath| {
            let assets = assets.clone();
            async move {
                if method == warp::http::Method::GET {
                    return Err(warp::reject::not_found());
                }
                const ROUTES: &[&str] = &[
                    "/",
                    "/ws",
                    "/api/v1/stats",
                    "/api/v1/history",
                    "/healthz",
                    "/metrics",
                ];
                let path = path.as_str();
                let exists = ROUTES.contains(&path)
                    || assets.resolve(path.trim_start_matches('/')).await.is_some();
                let mut response = if exists {
                    error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                } else {
                    error_response(StatusCode::NOT_FOUND, "not found")
                };
                if exists {
                    response
                        .headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                }
                Ok(response.into_response())
            }
        },
    )
}

/// The dashboard: `index.html` at `/`, other files by name, only regular files inside the
/// directory (see [`static_files::Assets`]), gzip'd when accepted, with entity tags.
fn static_files(
    assets: static_files::Assets,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                       style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'";
    if !assets.found() {
        tracing::warn!("dashboard directory not found; serving a placeholder page at /");
    }
    let root = {
        let assets = assets.clone();
        warp::get()
            .and(warp::path::end())
            .and(warp::header::headers_cloned())
            .and_then(move |headers: warp::http::HeaderMap| {
                let assets = assets.clone();
                async move {
                    if !assets.found() {
                        return Ok(Response::builder()
                            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
                            .body(Bytes::from_static(FALLBACK_PAGE.as_bytes()))
                            .expect("valid response")
                            .into_response());
                    }
                    match assets.entry("index.html").await {
                        Some(entry) => Ok(static_files::respond(&entry, &headers).into_response()),
                        None => Err(warp::reject::not_found()),
                    }
                }
            })
    };
    let files = warp::get()
        .and(warp::path::tail())
        .and(warp::header::headers_cloned())
        .and_then(
            move |path: warp::path::Tail, headers: warp::http::HeaderMap| {
                let assets = assets.clone();
                async move {
                    match assets.entry(path.as_str()).await {
                        Some(entry) => Ok(static_files::respond(&entry, &headers).into_response()),
                        None => Err(warp::reject::not_found()),
                    }
                }
            },
        );
    root.or(files)
        .unify()
        .map(|mut response: warp::reply::Response| {
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            response
        })
}

/// Token from `Authorization: Bearer …` or, for browsers' WebSocket API, `?token=…`.
fn token_filter() -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(
            warp::query::<HashMap<String, String>>()
                .or(warp::any().map(HashMap::new))
                .unify(),
        )
        .map(|auth: Option<String>, query: HashMap<String, String>| {
            auth.as_deref()
                .and_then(bearer_token)
                .or_else(|| query.get("token").cloned())
        })
}

/// The credentials of an `Authorization: Bearer …` header; the scheme name is
/// case-insensitive (RFC 9110 §11.1).
fn bearer_token(authorization: &str) -> Option<String> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Whether a request carrying `token` may use the API and the feed.
fn token_accepted(config: &Config, token: Option<&str>) -> bool {
    match &config.token {
        Some(expected) => token.is_some_and(|t| constant_time_eq(t, expected)),
        None => true,
    }
}

/// Compares without an early exit, so response time does not reveal the matching prefix.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Bytes> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .expect("valid response")
}

fn error_response(status: StatusCode, message: &str) -> Response<Bytes> {
    json_response(
        status,
        Bytes::from(serde_json::json!({ "error": message }).to_string()),
    )
}

/// Longest a REST or `/metrics` reader waits for the full tick it asked for. At the default
/// 1 s interval the next tick comes first; with long intervals the reader gets the latest
/// snapshot rather than waiting minutes (well inside Prometheus's 10 s scrape timeout).
const MAX_FULL_WAIT: Duration = Duration::from_secs(5);

/// How long a reader waits for the next (full) tick: one interval and a margin for the
/// collection itself, at most [`MAX_FULL_WAIT`].
fn full_wait(state: &AppState) -> Duration {
    (state.hub.interval() + Duration::from_millis(500)).min(MAX_FULL_WAIT)
}

fn not_ready() -> Response<Bytes> {
    error_response(StatusCode::SERVICE_UNAVAILABLE, "no snapshot collected yet")
}

async fn recover(rejection: Rejection) -> Result<Response<Bytes>, Infallible> {
    if let Some(refusal) = rejection.find::<Refusal>() {
        return Ok(refusal_response(refusal));
    }
    let (status, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "not found")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        (StatusCode::BAD_REQUEST, "invalid query string")
    } else {
        tracing::debug!("unhandled rejection: {rejection:?}");
        (StatusCode::BAD_REQUEST, "bad request")
    };
    Ok(error_response(status, message))
}

fn refusal_response(refusal: &Refusal) -> Response<Bytes> {
    let (status, message) = match refusal {
        Refusal::Unauthorized => (StatusCode::UNAUTHORIZED, "missing or wrong access token"),
        Refusal::ForeignOrigin => (StatusCode::FORBIDDEN, "origin not allowed"),
        Refusal::BadHandshake => (StatusCode::BAD_REQUEST, "malformed Sec-WebSocket-Key"),
        Refusal::ForeignHost => (
            StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer to that host name",
        ),
        Refusal::TooManyClients => (StatusCode::SERVICE_UNAVAILABLE, "too many clients"),
        Refusal::TooManyFromAddress => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many clients from this address",
        ),
    };
    let mut response = error_response(status, message);
    let headers = response.headers_mut();
    match refusal {
        Refusal::Unauthorized => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pistats\""),
            );
        }
        Refusal::TooManyClients | Refusal::TooManyFromAddress => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        }
        Refusal::ForeignOrigin | Refusal::ForeignHost | Refusal::BadHandshake => {}
    }
    response
}

/// The connection's peer address, set by [`serve`].
fn peer_addr() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<server::Peer>().map(|peer: Option<server::Peer>| peer.map(|p| p.0))
}

/// Describes a peer for logs.
fn peer(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "unknown peer".to_owned(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(bearer_token("bearer abc").as_deref(), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc ").as_deref(), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn range_points_are_bounded() {
        assert_eq!(parse_range_points(None), Some(MAX_RANGE_POINTS));
        assert_eq!(parse_range_points(Some("1")), Some(1));
        assert_eq!(parse_range_points(Some("412")), Some(412));
        assert_eq!(parse_range_points(Some("1500")), Some(1500));
        for bad in [
            "0",
            "1501",
            "-3",
            "",
            "12.5",
            "4e2",
            "lots",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_range_points(Some(bad)), None, "{bad:?}");
        }
    }
}
