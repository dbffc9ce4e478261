//! MQTT against a real Mosquitto (Debian's, installed by tests/mqtt-setup.sh) started by the
//! test on a free loopback port: Home Assistant discovery retained and well-formed, state
//! updates, alert states, the last will when pistats is killed, and reconnection after the
//! broker restarts.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A mosquitto broker on 127.0.0.1:`port`, killed on drop.
struct Broker {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start(port: u16) -> Broker {
        let mosquitto = common::need_tool("mosquitto", "bash tests/mqtt-setup.sh");
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        let child = Command::new(mosquitto)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let up = common::eventually(common::WAIT, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "mosquitto did not listen on {port}");
        Broker { child, _dir: dir }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Clone)]
struct Message {
    topic: String,
    payload: String,
    retain: bool,
}

/// A subscriber to `#`, recording every message.
struct Subscriber {
    messages: Arc<Mutex<Vec<Message>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    async fn start(port: u16, name: &str) -> Subscriber {
        let options = MqttOptions::new(name, "127.0.0.1", port);
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        client.subscribe("#", QoS::AtLeastOnce).await.unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let log = messages.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => log.lock().unwrap().push(Message {
                        topic: p.topic.clone(),
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        retain: p.retain,
                    }),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Subscriber { messages, task }
    }

    fn messages(&self) -> Vec<Message> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until a message matches `check`; fails the test after [`common::WAIT`].
    async fn wait_for(&self, what: &str, check: impl Fn(&Message) -> bool) -> Message {
        let limit = tokio::time::Instant::now() + common::WAIT * 2;
        loop {
            if let Some(m) = self.messages().into_iter().find(&check) {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < limit,
                "no {what}; got {:#?}",
                self.messages()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until pistats announces `payload` ("online" or "offline") on its availability
    /// topic.
    async fn wait_for_availability(&self, payload: &str) -> Message {
        self.wait_for(payload, |m| {
            m.topic == "test/pi/availability" && m.payload == payload
        })
        .await
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config(port: u16) -> String {
    format!(
        "interval = \"250ms\"\n\n[[alert]]\nname = \"always\"\nmetric = \"cpu\"\nabove = 0\n\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"pistats-test\"\n\
         topic = \"test/pi\"\ninterval = \"1s\"\n"
    )
}

async fn start_daemon(port: u16) -> common::Daemon {
    let config = config(port);
    tokio::task::spawn_blocking(move || common::Daemon::start_with_config(&config, &[]))
        .await
        .unwrap()
}

/// A broker on a free port, pistats publishing to it, and a subscriber that has seen pistats
/// announce itself online.
async fn online_daemon() -> (Broker, common::Daemon, Subscriber) {
    let port = common::free_port();
    let broker = Broker::start(port);
    let daemon = start_daemon(port).await;
    let sub = Subscriber::start(port, "watcher").await;
    sub.wait_for_availability("online").await;
    (broker, daemon, sub)
}

/// The state documents received so far.
fn states(sub: &Subscriber) -> Vec<serde_json::Value> {
    sub.messages()
        .iter()
        .filter(|m| m.topic == "test/pi/state")
        .map(|m| serde_json::from_str(&m.payload).expect("state is JSON"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: bash tests/mqtt-setup.sh"]
async fn discovery_state_alerts_and_reconnect() {
    let port = common::free_port();
    let mut broker = Broker::start(port);
    let daemon = start_daemon(port).await;

    // A first subscriber sees the state arrive (discovery goes out before it, on connect).
    let live = Subscriber::start(port, "live").await;
    live.wait_for("state document", |m| m.topic == "test/pi/state")
        .await;
    let state = &states(&live)[0];
    assert!(state["cpu"].is_number(), "{state}");
    assert!(state["memory"].is_number(), "{state}");
    assert!(state["uptime"].is_u64(), "{state}");
    assert_eq!(state["alerts"]["always"], "ON", "{state}");

    // A late subscriber gets what is retained: availability, alert states, discovery.
    let late = Subscriber::start(port, "late").await;
    let online = late
        .wait_for("availability", |m| m.topic == "test/pi/availability")
        .await;
    assert_eq!((online.payload.as_str(), online.retain), ("online", true));
    let alert = late
        .wait_for("alert state", |m| m.topic == "test/pi/alert/always")
        .await;
    assert_eq!((alert.payload.as_str(), alert.retain), ("ON", true));
    late.wait_for("alert discovery", |m| {
        m.topic == "homeassistant/binary_sensor/pistats-test/alert_always/config"
    })
    .await;
    let configs: BTreeMap<String, serde_json::Value> = late
        .messages()
        .iter()
        .filter(|m| m.topic.starts_with("homeassistant/"))
        .map(|m| {
            assert!(m.retain, "{} is not retained", m.topic);
            let json = serde_json::from_str(&m.payload)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", m.topic, m.payload));
            (m.topic.clone(), json)
        })
        .collect();
    let objects: Vec<String> = configs
        .keys()
        .map(|t| {
            let parts: Vec<&str> = t.split('/').collect();
            assert_eq!(parts.len(), 5, "{t}: PREFIX/COMPONENT/NODE/OBJECT/config");
            assert_eq!((parts[2], parts[4]), ("pistats-test", "config"), "{t}");
            format!("{}/{}", parts[1], parts[3])
        })
        .collect();
    for expected in [
        "sensor/cpu",
        "sensor/temperature",
        "sensor/memory",
        "sensor/disk_root",
        "sensor/load1",
        "sensor/uptime",
        "binary_sensor/undervoltage",
        "binary_sensor/throttled",
        "binary_sensor/alert_always",
    ] {
        assert!(
            objects.iter().any(|o| o == expected),
            "{expected} missing from {objects:?}"
        );
    }
    let mut unique_ids = std::collections::BTreeSet::new();
    for (topic, c) in &configs {
        // The fields Home Assistant's MQTT discovery requires or this device relies on.
        assert!(c["name"].is_string(), "{topic}: {c}");
        assert!(
            unique_ids.insert(c["unique_id"].as_str().unwrap().to_owned()),
            "{topic}: duplicate unique_id"
        );
        assert!(
            c["state_topic"].as_str().unwrap().starts_with("test/pi/"),
            "{topic}"
        );
        assert_eq!(c["availability_topic"], "test/pi/availability", "{topic}");
        assert_eq!(c["device"]["identifiers"][0], "pistats-test", "{topic}");
        assert_eq!(c["device"]["sw_version"], VERSION, "{topic}");
        assert!(c["device"]["model"].is_string(), "{topic}");
        if topic.contains("/binary_sensor/") {
            assert_eq!(
                (c["payload_on"].as_str(), c["payload_off"].as_str()),
                (Some("ON"), Some("OFF"))
            );
        }
        // A template reads a key the state document has.
        if let Some(template) = c["value_template"].as_str() {
            let key = template
                .trim_start_matches("{{ value_json.")
                .trim_end_matches(" }}");
            assert!(
                state.get(key).is_some(),
                "{topic}: template {template} reads a key the state lacks: {state}"
            );
        }
    }

    // State keeps coming every interval.
    let before = states(&live).len();
    live.wait_for("more state documents", |_| {
        states(&live).len() >= before + 2
    })
    .await;

    // The broker restarts (losing everything, persistence is off): pistats reconnects and
    // publishes availability, discovery and state again.
    broker.stop();
    drop((live, late));
    let _broker = Broker::start(port);
    let again = Subscriber::start(port, "again").await;
    let online = again
        .wait_for("availability after the restart", |m| {
            m.topic == "test/pi/availability"
        })
        .await;
    assert_eq!(online.payload, "online");
    again
        .wait_for("discovery after the restart", |m| {
            m.topic == "homeassistant/sensor/pistats-test/cpu/config"
        })
        .await;
    again
        .wait_for("state after the restart", |m| m.topic == "test/pi/state")
        .await;
    assert!(daemon
        .log()
        .iter()
        .any(|l| l.contains("mqtt: connected again")));
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: bash tests/mqtt-setup.sh"]
async fn the_last_will_says_offline_when_pistats_is_killed() {
    let (_broker, mut daemon, sub) = online_daemon().await;
    daemon.signal("KILL");
    daemon.wait_exit(common::WAIT);
    sub.wait_for_availability("offline").await;
    // pistats publishes "offline" itself only on a clean stop; after SIGKILL only the broker
    // can have sent it: the last will.
    assert!(!daemon.log().iter().any(|l| l.contains("pistats stopped")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: bash tests/mqtt-setup.sh"]
async fn a_clean_stop_says_offline_itself() {
    let (_broker, mut daemon, sub) = online_daemon().await;
    daemon.signal("TERM");
    let status = daemon
        .wait_exit(common::WAIT)
        .expect("pistats stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    sub.wait_for_availability("offline").await;
    daemon.wait_for_log("pistats stopped");
}

/// `pistats notify-test` publishes a test message to the broker and waits for its
/// acknowledgement; with the broker gone it fails and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs mosquitto: bash tests/mqtt-setup.sh"]
async fn notify_test_publishes_to_the_broker() {
    let port = common::free_port();
    let mut broker = Broker::start(port);
    let sub = Subscriber::start(port, "watcher").await;
    let run = move || {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, config(port).as_bytes()).unwrap();
        let out = Command::new(common::BIN)
            .args(["notify-test", "--config"])
            .arg(file.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = tokio::task::spawn_blocking(run).await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("mqtt 127.0.0.1:{port}: OK")), "{out}");
    let test = sub
        .wait_for("test message", |m| m.topic == "test/pi/test")
        .await;
    assert!(
        test.payload.contains("Test message from pistats"),
        "{}",
        test.payload
    );

    broker.stop();
    let (code, out) = tokio::task::spawn_blocking(run).await.unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAILED"), "{out}");
}
