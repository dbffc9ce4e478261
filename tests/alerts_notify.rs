//! ntfy and webhook deliveries against a real HTTP server on loopback (hyper, in the test):
//! the request each kind sends, retries after 500s, a deadline for an endpoint that never
//! answers, and a daemon whose endpoint hangs still feeding its WebSocket clients.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use pistats::alerts::notify::{self, DeliveryError};
use pistats::alerts::{Alert, AlertState};
use pistats::config::alerting::Notifier;
use pistats::config::Config;
use pistats::events::Severity;
use tokio_util::sync::CancellationToken;

/// What the endpoint does with one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Reads the request and never answers.
    Hang,
}

#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: hyper::HeaderMap,
    body: Bytes,
}

/// An HTTP/1.1 server on 127.0.0.1 answering requests in the order of `script` (the last
/// answer repeats) and recording them.
struct Endpoint {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Endpoint {
    async fn start(script: Vec<Answer>) -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let script = Arc::new(script);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        let script = script.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let n = {
                                let mut log = log.lock().unwrap();
                                log.push(Received {
                                    method: parts.method.to_string(),
                                    path: parts.uri.path().to_owned(),
                                    headers: parts.headers,
                                    body,
                                });
                                log.len()
                            };
                            let answer = script[(n - 1).min(script.len() - 1)];
                            match answer {
                                Answer::Status(code) => Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(code)
                                        .body(Full::new(Bytes::from_static(b"{}")))
                                        .unwrap(),
                                ),
                                Answer::Hang => std::future::pending().await,
                            }
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Endpoint { addr, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// A notifier as the config file declares it (through the real parser).
fn notifier(table: &str) -> Notifier {
    let config = Config::from_toml(&format!("[[notify]]\n{table}"), Path::new("t.toml")).unwrap();
    config.alerting.notifiers[0].clone()
}

fn firing() -> Alert {
    Alert {
        rule: "hot".into(),
        metric: "temperature".into(),
        state: AlertState::Firing,
        reminder: false,
        value: Some(81.5),
        threshold: Some(80.0),
        severity: Severity::Critical,
        host: "pi-kitchen".into(),
        time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000),
        message: "[pi-kitchen] hot firing: temperature is 81.5°C (at or above 80°C)".into(),
    }
}

fn header(r: &Received, name: &str) -> String {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {name} header in {:?}", r.headers))
}

#[tokio::test]
async fn ntfy_posts_text_with_title_priority_tags_and_token() {
    let endpoint = Endpoint::start(vec![Answer::Status(200)]).await;
    let n = notifier(&format!(
        "kind = \"ntfy\"\nurl = \"http://{}/pi-alerts\"\ntoken = \"tk_secret\"\ntags = [\"pi\"]",
        endpoint.addr
    ));
    let client = notify::client();
    notify::deliver(&client, &n, &firing()).await.unwrap();
    let got = endpoint.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/pi-alerts"));
    assert_eq!(header(r, "authorization"), "Bearer tk_secret");
    assert_eq!(header(r, "title"), "pi-kitchen: hot firing");
    assert_eq!(header(r, "priority"), "5", "critical is ntfy's urgent");
    assert_eq!(header(r, "tags"), "rotating_light,pi");
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap(),
        firing().message,
        "the body is the message, UTF-8 intact"
    );

    // Clearing: default priority, a check mark.
    let mut cleared = firing();
    cleared.state = AlertState::Cleared;
    notify::deliver(&client, &n, &cleared).await.unwrap();
    let r = &endpoint.received()[1];
    assert_eq!(header(r, "priority"), "3");
    assert_eq!(header(r, "tags"), "white_check_mark,pi");
}

#[tokio::test]
async fn webhook_posts_json_with_bearer_and_extra_headers() {
    let endpoint = Endpoint::start(vec![Answer::Status(204)]).await;
    let n = notifier(&format!(
        "kind = \"webhook\"\nurl = \"http://{}/hook?x=1\"\ntoken = \"abc\"\nheaders = {{ X-Api-Key = \"k-1\", X-Source = \"pi\" }}",
        endpoint.addr
    ));
    notify::deliver(&notify::client(), &n, &firing())
        .await
        .unwrap();
    let r = &endpoint.received()[0];
    assert_eq!(r.path, "/hook");
    assert_eq!(header(r, "content-type"), "application/json");
    assert_eq!(header(r, "authorization"), "Bearer abc");
    assert_eq!(header(r, "x-api-key"), "k-1");
    assert_eq!(header(r, "x-source"), "pi");
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["alert"], "hot");
    assert_eq!(body["state"], "firing");
    assert_eq!(body["value"], 81.5);
    assert_eq!(body["threshold"], 80.0);
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["host"], "pi-kitchen");
    assert_eq!(body["time"], "2026-05-28T20:26:40.000000+00:00");
    assert_eq!(body["metric"], "temperature");
}

#[tokio::test]
async fn a_500_is_retried_with_backoff_until_it_succeeds() {
    let endpoint = Endpoint::start(vec![
        Answer::Status(500),
        Answer::Status(503),
        Answer::Status(200),
    ])
    .await;
    let n = notifier(&format!(
        "kind = \"webhook\"\nurl = \"http://{}/\"\nretries = 3",
        endpoint.addr
    ));
    let attempts =
        notify::deliver_with_retries(&notify::client(), &n, &firing(), &CancellationToken::new())
            .await
            .unwrap();
    assert_eq!(attempts, 3);
    let got = endpoint.received();
    assert_eq!(got.len(), 3);
    // Every attempt carries the same alert.
    assert!(got.windows(2).all(|w| w[0].body == w[1].body));
}

#[tokio::test]
async fn retries_end_with_the_last_error() {
    let endpoint = Endpoint::start(vec![Answer::Status(500)]).await;
    let n = notifier(&format!(
        "kind = \"ntfy\"\nurl = \"http://{}/t\"\nretries = 1",
        endpoint.addr
    ));
    let err =
        notify::deliver_with_retries(&notify::client(), &n, &firing(), &CancellationToken::new())
            .await
            .unwrap_err();
    assert!(
        matches!(
            err,
            DeliveryError::Status(StatusCode::INTERNAL_SERVER_ERROR)
        ),
        "{err}"
    );
    assert_eq!(endpoint.received().len(), 2, "first attempt and one retry");
}

#[tokio::test]
async fn an_endpoint_that_never_answers_times_out() {
    let endpoint = Endpoint::start(vec![Answer::Hang]).await;
    let n = notifier(&format!(
        "kind = \"webhook\"\nurl = \"http://{}/\"\ntimeout = \"1s\"\nretries = 0",
        endpoint.addr
    ));
    let err = notify::deliver(&notify::client(), &n, &firing())
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Timeout(_)), "{err}");
    assert_eq!(endpoint.received().len(), 1, "the request did arrive");
}

#[tokio::test]
async fn nothing_listening_is_a_request_error() {
    let port = common::free_port();
    let n = notifier(&format!(
        "kind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/\"\nretries = 0"
    ));
    let err = notify::deliver(&notify::client(), &n, &firing())
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Request(_)), "{err}");
    assert!(err.to_string().contains("onnection refused"), "{err}");
}

/// A rule that fires on the first tick, delivered to an endpoint that hangs: WebSocket
/// clients keep getting every document, the alert shows in /api/v1/alerts and /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_hold_back_the_feed() {
    let endpoint = Endpoint::start(vec![Answer::Hang]).await;
    let config = format!(
        "interval = \"250ms\"\n\n[[alert]]\nname = \"always\"\nmetric = \"cpu\"\nabove = 0\n\n\
         [[notify]]\nkind = \"webhook\"\nurl = \"http://{}/hook\"\ntimeout = \"5m\"\nretries = 0\n\
         token = \"tk-never-shown\"\nheaders = {{ X-Key = \"hdr-never-shown\" }}\n",
        endpoint.addr
    );
    let daemon =
        tokio::task::spawn_blocking(move || common::Daemon::start_with_config(&config, &[]))
            .await
            .unwrap();
    assert!(
        common::eventually_async(common::WAIT, || !endpoint.received().is_empty()).await,
        "the alert was not delivered"
    );
    let mut ws = common::connect(&daemon.ws_url("/")).await;
    let mut stamps = Vec::new();
    for _ in 0..8 {
        let doc = common::next_doc(&mut ws).await;
        stamps.push(doc["timestamp"].as_str().unwrap().to_owned());
    }
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "documents repeat or go back: {stamps:?}"
    );
    // The delivery is still hanging (one request, never answered) while the feed went on.
    assert_eq!(endpoint.received().len(), 1);

    let addr = daemon.addr;
    let (alerts, metrics) = tokio::task::spawn_blocking(move || {
        (
            common::http_get(addr, "/api/v1/alerts", &[]).json(),
            common::http_get(addr, "/metrics", &[]).body,
        )
    })
    .await
    .unwrap();
    assert_eq!(alerts["alerts"][0]["name"], "always");
    assert_eq!(alerts["alerts"][0]["state"], "firing");
    assert_eq!(alerts["events"][0]["kind"], "alert_firing");
    assert!(
        metrics.contains("pistats_alert_firing{alert=\"always\"} 1"),
        "{metrics}"
    );
    // The endpoint got the secrets; the API and the log never show them.
    assert_eq!(
        endpoint.received()[0].headers["authorization"],
        "Bearer tk-never-shown"
    );
    let shown = format!("{alerts} {:?}", daemon.log());
    assert!(!shown.contains("never-shown"), "{shown}");
    drop(daemon);
}

/// `pistats notify-test` sends one message per endpoint, prints each result and exits 0 only
/// when every one succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_reports_each_endpoint() {
    let good = Endpoint::start(vec![Answer::Status(200)]).await;
    let bad = Endpoint::start(vec![Answer::Status(500)]).await;
    let run = |config: String| async move {
        tokio::task::spawn_blocking(move || {
            let mut file = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut file, config.as_bytes()).unwrap();
            let out = std::process::Command::new(common::BIN)
                .arg("notify-test")
                .arg("--config")
                .arg(file.path())
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        })
        .await
        .unwrap()
    };
    let good_table = format!(
        "[[notify]]\nname = \"phone\"\nkind = \"ntfy\"\nurl = \"http://{}/t\"\n",
        good.addr
    );
    let bad_table = format!(
        "[[notify]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://{}/h\"\n",
        bad.addr
    );
    let (code, out) = run(format!("{good_table}\n{bad_table}")).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("phone: OK"), "{out}");
    assert!(
        out.contains("hook: FAILED: the endpoint answered 500"),
        "{out}"
    );
    assert_eq!(bad.received().len(), 1, "a test is one attempt, no retries");
    let test: serde_json::Value = serde_json::from_slice(&bad.received()[0].body).unwrap();
    assert_eq!(test["state"], "test");

    let (code, out) = run(good_table).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(good.received().len(), 2);
    assert!(std::str::from_utf8(&good.received()[1].body)
        .unwrap()
        .contains("notifications work"));

    let (code, _) = run(String::new()).await;
    assert_eq!(code, Some(1), "nothing to test is a failure");
}

/// A notification that cannot be delivered is an event in the timeline (`/api/v1/events`,
/// which the dashboard shows) and in the alerts' own list, and is counted per notifier; the
/// token stays out of all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_is_an_event_in_the_timeline() {
    let endpoint = Endpoint::start(vec![Answer::Status(500)]).await;
    // No `for`: the alert fires on the first tick, while the history subsystem may still be
    // restoring its timeline; those first events must not be lost when it installs it.
    let config = format!(
        "interval = \"250ms\"\n\n[[alert]]\nname = \"always\"\nmetric = \"cpu\"\nabove = 0\n\
         \n[[notify]]\nkind = \"webhook\"\nurl = \"http://{}/hook\"\nretries = 0\n\
         token = \"tk-never-shown\"\n",
        endpoint.addr
    );
    let daemon =
        tokio::task::spawn_blocking(move || common::Daemon::start_with_config(&config, &[]))
            .await
            .unwrap();
    let addr = daemon.addr;
    let failed_event = |events: &serde_json::Value| {
        events["events"].as_array().and_then(|list| {
            list.iter()
                .find(|e| e["kind"] == "notification_failed")
                .cloned()
        })
    };
    let timeline = tokio::task::spawn_blocking(move || {
        common::eventually(common::WAIT, || {
            failed_event(&common::http_get(addr, "/api/v1/events", &[]).json())
        })
    })
    .await
    .unwrap();
    let timeline = timeline.unwrap_or_else(|| {
        panic!(
            "no notification_failed event in /api/v1/events: {}\n{}",
            common::http_get(addr, "/api/v1/events", &[]).body,
            daemon.log().join("\n")
        )
    });
    assert_eq!(timeline["severity"], "warning", "{timeline}");
    assert_eq!(timeline["values"]["alert"], "always", "{timeline}");
    assert!(
        timeline["message"].as_str().unwrap().contains("500"),
        "{timeline}"
    );
    assert_eq!(endpoint.received().len(), 1, "retries = 0: one attempt");
    let events =
        tokio::task::spawn_blocking(move || common::http_get(addr, "/api/v1/events", &[]).json())
            .await
            .unwrap();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    let position = |kind: &str| {
        kinds
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_else(|| panic!("no {kind} event: {kinds:?}"))
    };
    assert!(
        position("started") < position("alert_firing")
            && position("alert_firing") < position("notification_failed"),
        "started, then the firing, then its failed delivery: {kinds:?}"
    );

    let alerts =
        tokio::task::spawn_blocking(move || common::http_get(addr, "/api/v1/alerts", &[]).json())
            .await
            .unwrap();
    let own = failed_event(&alerts).expect("no notification_failed event in /api/v1/alerts");
    assert_eq!(own["message"], timeline["message"], "{own} vs {timeline}");
    assert_eq!(own["t_ms"], timeline["t_ms"], "{own} vs {timeline}");
    let notifier = timeline["values"]["notifier"].as_str().unwrap();
    assert!(
        alerts["notifiers"][notifier]["failed"].as_u64() >= Some(1),
        "{alerts}"
    );
    let shown = format!("{timeline} {alerts} {:?}", daemon.log());
    assert!(!shown.contains("never-shown"), "{shown}");
    drop(daemon);
}
