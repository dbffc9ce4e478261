//! MQTT: a state document every `interval`, alert states as they change, an availability
//! topic with a last will, and Home Assistant discovery.
//!
//! Topics, under `topic` (default `pistats/HOSTNAME`):
//!
//! | topic                  | payload                                             | retained |
//! |------------------------|-----------------------------------------------------|----------|
//! | `…/availability`       | `online`; the broker sends `offline` (last will) when pistats goes away | yes |
//! | `…/state`              | JSON: cpu, memory, swap, temperature, disk_root, load1, uptime, undervoltage, throttled, alerts | no |
//! | `…/alert/NAME`         | `ON` while the rule fires, else `OFF`               | yes      |
//!
//! Discovery configs (retained) go to `PREFIX/sensor/NODE/OBJECT/config` and
//! `PREFIX/binary_sensor/NODE/OBJECT/config`, so Home Assistant's MQTT integration shows the
//! Pi as one device (board model, pistats version) with its sensors, without any YAML. NODE is
//! the client id (`pistats-HOSTNAME`).
//!
//! The task never waits on the broker from the collector's side: it reads the hub's latest
//! snapshot on its own schedule and queues with `try_publish`. A broker that is down is
//! retried with growing pauses (1 s to 30 s), logged once per outage.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS, Transport};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::alerting::Mqtt;
use crate::hub::Hub;
use crate::stats::model::StatsDocument;

/// Requests queued for the broker; beyond this, new publishes are dropped until it drains.
const QUEUE: usize = 256;
const KEEP_ALIVE: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Topic names derived from the configuration and the host.
#[derive(Debug, Clone)]
pub struct Topics {
    pub base: String,
    pub node: String,
    pub prefix: String,
}

impl Topics {
    pub fn new(mqtt: &Mqtt, hostname: &str) -> Topics {
        let host = sanitize(hostname);
        Topics {
            base: mqtt
                .topic
                .clone()
                .unwrap_or_else(|| format!("pistats/{host}")),
            node: mqtt
                .client_id
                .clone()
                .unwrap_or_else(|| format!("pistats-{host}")),
            prefix: mqtt.discovery_prefix.clone(),
        }
    }

    pub fn availability(&self) -> String {
        format!("{}/availability", self.base)
    }

    pub fn state(&self) -> String {
        format!("{}/state", self.base)
    }

    pub fn alert(&self, name: &str) -> String {
        format!("{}/alert/{name}", self.base)
    }
}

/// Letters, digits, `_` and `-` only (topic levels and Home Assistant ids).
fn sanitize(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "pi".to_owned()
    } else {
        clean
    }
}

fn on_off(flag: bool) -> &'static str {
    if flag {
        "ON"
    } else {
        "OFF"
    }
}

/// The state document: typed values rounded for display, `null` when unknown.
pub fn state_document(doc: &StatsDocument, alerts: &[(String, bool)]) -> serde_json::Value {
    let round = |v: f64| (v * 10.0).round() / 10.0;
    let throttle = doc.pi.as_ref().and_then(|pi| pi.throttled);
    let alerts: serde_json::Map<String, serde_json::Value> = alerts
        .iter()
        .map(|(name, firing)| (name.clone(), json!(on_off(*firing))))
        .collect();
    json!({
        "cpu": round(doc.cpu.usage_percent),
        "memory": doc.memory.map(|m| round(m.used_percent())),
        "swap": doc.memory.map(|m| round(m.swap_used_percent())),
        "temperature": doc.temperature.pi_cpu_celsius.map(round),
        "disk_root": doc.disk.root_usage_percent().map(round),
        "load1": doc.system.load_average.map(|l| l[0]),
        "uptime": doc.system.uptime.as_secs(),
        "undervoltage": throttle.and_then(|t| t.under_voltage).map(on_off),
        "throttled": throttle.map(|t| on_off(t.throttled)),
        "alerts": alerts,
        "time": crate::stats::wire::iso8601(doc.collected_at),
    })
}

/// Home Assistant discovery configs: `(topic, JSON)` for every sensor, binary sensor and alert.
pub fn discovery(
    topics: &Topics,
    doc: &StatsDocument,
    alerts: &[String],
) -> Vec<(String, serde_json::Value)> {
    let hostname = doc.system.hostname.as_deref().unwrap_or("pistats");
    let device = json!({
        "identifiers": [topics.node],
        "name": hostname,
        "manufacturer": if doc.pi.is_some() { "Raspberry Pi Ltd" } else { "pistats" },
        "model": doc.system.model.as_deref().unwrap_or("unknown"),
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let origin = json!({ "name": "pistats", "sw_version": env!("CARGO_PKG_VERSION") });
    let mut configs = Vec::new();
    let mut add = |component: &str, object: &str, mut config: serde_json::Value| {
        let fields = config.as_object_mut().expect("an object");
        fields.insert(
            "unique_id".into(),
            json!(format!("{}_{object}", topics.node)),
        );
        fields.insert(
            "object_id".into(),
            json!(format!("{}_{object}", topics.node)),
        );
        fields.insert("availability_topic".into(), json!(topics.availability()));
        fields.insert("device".into(), device.clone());
        fields.insert("origin".into(), origin.clone());
        fields
            .entry("state_topic")
            .or_insert_with(|| json!(topics.state()));
        configs.push((
            format!(
                "{}/{component}/{}/{object}/config",
                topics.prefix, topics.node
            ),
            config,
        ));
    };
    // (state key, name, unit, device class, icon)
    type Sensor = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
    );
    let sensors: [Sensor; 7] = [
        ("cpu", "CPU", Some("%"), None, "mdi:cpu-64-bit"),
        (
            "temperature",
            "Temperature",
            Some("°C"),
            Some("temperature"),
            "mdi:thermometer",
        ),
        ("memory", "Memory", Some("%"), None, "mdi:memory"),
        ("disk_root", "Root disk", Some("%"), None, "mdi:harddisk"),
        ("load1", "Load", None, None, "mdi:gauge"),
        (
            "uptime",
            "Uptime",
            Some("s"),
            Some("duration"),
            "mdi:timer-outline",
        ),
        ("swap", "Swap", Some("%"), None, "mdi:swap-horizontal"),
    ];
    for (key, name, unit, class, icon) in sensors {
        let mut config = json!({
            "name": name,
            "value_template": format!("{{{{ value_json.{key} }}}}"),
            "state_class": if key == "uptime" { "total_increasing" } else { "measurement" },
            "icon": icon,
        });
        if let Some(unit) = unit {
            config["unit_of_measurement"] = json!(unit);
        }
        if let Some(class) = class {
            config["device_class"] = json!(class);
        }
        if key == "uptime" {
            config["entity_category"] = json!("diagnostic");
        }
        add("sensor", key, config);
    }
    for (key, name) in [("undervoltage", "Undervoltage"), ("throttled", "Throttled")] {
        add(
            "binary_sensor",
            key,
            json!({
                "name": name,
                "device_class": "problem",
                "value_template": format!("{{{{ value_json.{key} }}}}"),
                "payload_on": "ON",
                "payload_off": "OFF",
            }),
        );
    }
    for alert in alerts {
        add(
            "binary_sensor",
            &format!("alert_{alert}"),
            json!({
                "name": format!("Alert {alert}"),
                "device_class": "problem",
                "state_topic": topics.alert(alert),
                "payload_on": "ON",
                "payload_off": "OFF",
            }),
        );
    }
    configs
}

/// Connection options: client id, last will, credentials, TLS with the system's CAs.
fn options(mqtt: &Mqtt, topics: &Topics) -> MqttOptions {
    let mut options = MqttOptions::new(topics.node.clone(), mqtt.host.clone(), mqtt.port);
    options.set_keep_alive(KEEP_ALIVE);
    options.set_clean_session(true);
    options.set_last_will(LastWill::new(
        topics.availability(),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(user) = &mqtt.username {
        let password = mqtt.password.as_ref().map_or("", |p| p.expose());
        options.set_credentials(user.clone(), password.to_owned());
    }
    if mqtt.tls {
        options.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(super::notify::tls_config())),
        ));
    }
    options
}

fn publish(client: &AsyncClient, topic: String, retain: bool, payload: impl Into<Vec<u8>>) {
    if let Err(err) = client.try_publish(topic.clone(), QoS::AtLeastOnce, retain, payload) {
        tracing::debug!("mqtt: {topic} not queued: {err}");
    }
}

/// Starts the MQTT publisher.
pub fn spawn(
    mqtt: Mqtt,
    hub: Arc<Hub>,
    alerts: Vec<String>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    tracker.spawn(async move {
        // The hostname and board model come with the first snapshot.
        let mut snapshots = hub.subscribe();
        let first = loop {
            if let Some(snapshot) = snapshots.borrow_and_update().clone() {
                break snapshot;
            }
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                () = cancel.cancelled() => return,
            }
        };
        let hostname = first
            .document
            .system
            .hostname
            .as_deref()
            .unwrap_or("pistats")
            .to_owned();
        let topics = Topics::new(&mqtt, &hostname);
        let (client, eventloop) = AsyncClient::new(options(&mqtt, &topics), QUEUE);
        tracing::info!(
            "mqtt: publishing to {}:{} under {} every {}",
            mqtt.host,
            mqtt.port,
            topics.base,
            crate::config::show_duration(mqtt.interval)
        );
        run(mqtt, topics, hub, alerts, client, eventloop, cancel).await;
    });
}

async fn run(
    mqtt: Mqtt,
    topics: Topics,
    hub: Arc<Hub>,
    alerts: Vec<String>,
    client: AsyncClient,
    mut eventloop: EventLoop,
    cancel: CancellationToken,
) {
    let board = hub.alerts.clone();
    let mut changes = board.subscribe();
    let mut ticker = tokio::time::interval(mqtt.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connected = false;
    let mut failures: u32 = 0;
    let publish_state = |client: &AsyncClient| {
        if let Some(snapshot) = hub.latest() {
            let doc = state_document(&snapshot.document, &board.firing());
            publish(client, topics.state(), false, doc.to_string());
        }
    };
    let publish_alerts = |client: &AsyncClient| {
        for (name, firing) in board.firing() {
            publish(client, topics.alert(&name), true, on_off(firing));
        }
    };
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if failures > 0 {
                        tracing::info!("mqtt: connected again to {}:{}", mqtt.host, mqtt.port);
                    } else {
                        tracing::info!("mqtt: connected to {}:{}", mqtt.host, mqtt.port);
                    }
                    connected = true;
                    failures = 0;
                    board.set_mqtt_connected(true);
                    publish(&client, topics.availability(), true, "online");
                    if mqtt.discovery {
                        if let Some(snapshot) = hub.latest() {
                            for (topic, config) in discovery(&topics, &snapshot.document, &alerts) {
                                publish(&client, topic, true, config.to_string());
                            }
                        }
                    }
                    publish_alerts(&client);
                    publish_state(&client);
                }
                Ok(_) => {}
                Err(err) => {
                    if connected || failures == 0 {
                        tracing::warn!("mqtt: broker {}:{}: {err}; retrying", mqtt.host, mqtt.port);
                    }
                    connected = false;
                    board.set_mqtt_connected(false);
                    failures = failures.saturating_add(1);
                    let pause = Duration::from_secs(1u64 << failures.min(5).saturating_sub(1))
                        .min(MAX_BACKOFF);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = cancel.cancelled() => break,
                    }
                }
            },
            _ = ticker.tick() => if connected { publish_state(&client) },
            changed = changes.changed() => {
                if changed.is_err() { break }
                if connected {
                    publish_alerts(&client);
                    publish_state(&client);
                }
            }
        }
    }
    // A clean stop: say so (the last will is only for a crash), then disconnect.
    if connected {
        publish(&client, topics.availability(), true, "offline");
        let _ = client.try_disconnect();
        let flush = async {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Outgoing(rumqttc::Outgoing::Disconnect) = event {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
    }
}

/// `pistats notify-test`: connects, publishes a test message under the base topic and waits
/// for the broker to acknowledge it.
pub async fn test(mqtt: &Mqtt, hostname: &str) -> Result<(), String> {
    let topics = Topics::new(mqtt, hostname);
    let mut options = options(mqtt, &topics);
    // Not the daemon's client id: the broker would disconnect a running daemon.
    options.set_client_id(format!("{}-test", topics.node));
    options.set_last_will(LastWill::new(
        format!("{}/test", topics.base),
        "",
        QoS::AtMostOnce,
        false,
    ));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    let message = format!("Test message from pistats on {hostname}");
    client
        .try_publish(
            format!("{}/test", topics.base),
            QoS::AtLeastOnce,
            false,
            message,
        )
        .map_err(|e| e.to_string())?;
    let wait = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(err) => return Err(err.to_string()),
            }
        }
    };
    let result = tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| Err("no answer from the broker within 10s".to_owned()));
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
    result
}
