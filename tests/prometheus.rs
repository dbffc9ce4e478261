//! `/metrics` against the real Prometheus tools: promtool's exposition linter, and a real
//! Prometheus server scraping the real daemon on loopback.
//!
//! Needs Debian's `prometheus` package (promtool included): `bash tests/prometheus-setup.sh`.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{fixtures, free_port, need_tool, try_http_get, Daemon, HttpResponse};
use serde_json::Value;

const STARTUP: Duration = Duration::from_secs(30);
const SCRAPED: Duration = Duration::from_secs(30);

/// Kills and reaps the child when the test ends, also on failure.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `promtool` or `prometheus`, from Debian's prometheus package.
fn tool(name: &str) -> PathBuf {
    need_tool(name, "bash tests/prometheus-setup.sh")
}

/// The real daemon on a free loopback port, collecting every second.
fn start_pistats(args: &[&str]) -> Daemon {
    let mut all = vec!["--interval", "1s"];
    all.extend_from_slice(args);
    Daemon::start(&all)
}

/// The daemon reading the Pi 4 fixture tree and the fake `vcgencmd`.
fn start_pi4_pistats() -> Daemon {
    start_board_pistats("pi4", "vcgencmd")
}

/// The daemon reading the fixture tree of `board` and the fake `vcgencmd` `script`.
fn start_board_pistats(board: &str, script: &str) -> Daemon {
    let vcgencmd = fixtures().join("bin").join(script);
    Daemon::start_on_tree(
        &fixtures().join(board),
        &vcgencmd,
        "",
        &["--interval", "1s"],
    )
}

fn http_get(addr: SocketAddr, target: &str) -> std::io::Result<HttpResponse> {
    try_http_get(addr, target, &[])
}

/// `/metrics` once it has a line starting with `line` (or after [`STARTUP`], to be told).
fn fetch_metrics_with(addr: SocketAddr, line: &str) -> HttpResponse {
    let deadline = Instant::now() + STARTUP;
    loop {
        let r = fetch_metrics(addr);
        if r.body.lines().any(|l| l.starts_with(line)) || Instant::now() > deadline {
            return r;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// `/metrics` once the daemon has collected its first document.
fn fetch_metrics(addr: SocketAddr) -> HttpResponse {
    let deadline = Instant::now() + STARTUP;
    loop {
        match http_get(addr, "/metrics") {
            Ok(r) if r.status == 200 && r.body.contains("pistats_cpu_usage_percent") => return r,
            other if Instant::now() >= deadline => {
                panic!(
                    "no metrics from {addr} in {STARTUP:?}: {:?}",
                    other.map(|r| r.body)
                )
            }
            _ => thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn promtool_check_metrics(text: &str) {
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- exposition ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The result vector of an instant query (empty while nothing has been scraped yet).
fn query(prometheus: SocketAddr, promql: &str) -> Vec<Value> {
    let Ok(r) = http_get(
        prometheus,
        &format!("/api/v1/query?query={}", url_encode(promql)),
    ) else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_str::<Value>(&r.body) else {
        return Vec::new();
    };
    assert_eq!(json["status"], "success", "query {promql}: {}", r.body);
    json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
#[ignore = "needs promtool: lints the exposition (bash tests/prometheus-setup.sh)"]
fn metrics_pass_promtool() {
    let pistats = start_pistats(&[]);
    let r = fetch_metrics(pistats.addr);
    let content_type = r.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        r.headers
    );
    for family in [
        "# TYPE pistats_cpu_usage_percent gauge",
        "# TYPE pistats_network_receive_bytes_total counter",
        "# TYPE pistats_memory_total_bytes gauge",
        "# TYPE pistats_collections_total counter",
        "# TYPE pistats_build_info gauge",
    ] {
        assert!(
            r.body.lines().any(|l| l == family),
            "no {family:?} in\n{}",
            r.body
        );
    }
    promtool_check_metrics(&r.body);
}

#[test]
#[ignore = "needs promtool: lints the exposition (bash tests/prometheus-setup.sh)"]
fn pi_metrics_from_fixture_tree_pass_promtool() {
    let pistats = start_pi4_pistats();
    let r = fetch_metrics(pistats.addr);
    for line in [
        r#"pistats_pi_throttled{flag="under_voltage"} 1"#,
        r#"pistats_pi_throttled{flag="arm_frequency_capped"} 0"#,
        r#"pistats_pi_throttled{flag="throttling_occurred"} 1"#,
        "pistats_pi_core_volts 0.85",
        "pistats_pi_core_clock_hertz 500000000",
        "pistats_pi_undervoltage_detection 1",
        r#"pistats_fan_speed_rpm{fan="gpio_fan",label="fan1"} 5000"#,
        r#"pistats_fan_cooling_state{fan="gpio_fan",label="fan1"} 1"#,
    ] {
        assert!(
            r.body.lines().any(|l| l == line),
            "no {line:?} in\n{}",
            r.body
        );
    }
    promtool_check_metrics(&r.body);
}

/// Byte values come from the fixture's `/proc/meminfo` exactly (not from GiB rounded to two
/// decimals), and sources the fixture tree lacks are reported, not exported as zeros.
#[test]
fn fixture_bytes_are_exact_and_unread_sources_are_degraded() {
    let pistats = start_pi4_pistats();
    let addr = pistats.addr;
    let r = fetch_metrics(addr);
    // MemTotal: 3884096 kB in tests/fixtures/pi4/proc/meminfo.
    for line in [
        "pistats_memory_total_bytes 3977314304",
        "pistats_memory_free_bytes 2797101056",
        "pistats_swap_total_bytes 104853504",
        // btime in tests/fixtures/pi4/proc/stat.
        "pistats_boot_time_seconds 1752395215",
        // The fixture has no /proc/diskstats and no /proc/self/mounts.
        r#"pistats_collection_degraded{source="disk_io"} 1"#,
        r#"pistats_collection_degraded{source="partitions"} 1"#,
        r#"pistats_collection_degraded{source="memory"} 0"#,
    ] {
        assert!(
            r.body.lines().any(|l| l == line),
            "no {line:?} in\n{}",
            r.body
        );
    }
    assert!(!r.body.contains("pistats_disk_read_bytes_total"));
    let health = http_get(addr, "/healthz").unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
    let health: Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    let degraded = health["degraded"].as_array().unwrap();
    assert!(degraded.contains(&Value::from("disk_io")), "{health}");
    assert!(degraded.contains(&Value::from("partitions")), "{health}");
    assert!(!degraded.contains(&Value::from("memory")), "{health}");
}

/// The YAML files shown in docs/prometheus.md, by the path in their first-line comment.
fn documented_files() -> Vec<(String, String)> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/prometheus.md"))
            .unwrap();
    let mut files = Vec::new();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```yaml\n") {
        let block = &rest[start + 8..];
        let end = block.find("```").expect("unterminated code block");
        let text = &block[..end];
        let path = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# /etc/prometheus/"))
            .expect("each YAML block starts with `# /etc/prometheus/NAME`");
        files.push((path.to_owned(), text.to_owned()));
        rest = &block[end + 3..];
    }
    files
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "expected one {from:?} in\n{text}"
    );
    text.replacen(from, to, 1)
}

/// Runs the documented Prometheus setup (config, file_sd targets, alert rules) against two
/// daemons: one reading this machine, one reading the Pi 4 fixture tree. The documented
/// targets are host names of a home network; an extra relabel rule sends the actual scrapes
/// to the loopback daemons, after the documented rules have made the `instance` labels.
#[test]
#[ignore = "needs prometheus and promtool: runs a Prometheus server (bash tests/prometheus-setup.sh)"]
fn prometheus_scrapes_with_documented_config() {
    let prometheus_bin = tool("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let host = start_pistats(&[]);
    let pi = start_pi4_pistats();
    let (host_addr, pi_addr) = (host.addr, pi.addr);
    fetch_metrics(host_addr);
    fetch_metrics(pi_addr);

    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let etc_prefix = format!("{}/", etc.display());
    let files = documented_files();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "prometheus.yml",
            "pistats-targets.yml",
            "pistats-alerts.yml"
        ],
        "docs/prometheus.md YAML blocks"
    );
    for (name, text) in &files {
        let mut text = text.replace("/etc/prometheus/", &etc_prefix);
        match name.as_str() {
            "prometheus.yml" => {
                text = replace_once(
                    &text,
                    "scrape_interval: 15s",
                    "scrape_interval: 1s\n  scrape_timeout: 1s",
                );
                text = replace_once(&text, "evaluation_interval: 15s", "evaluation_interval: 1s");
                assert!(
                    text.trim_end().ends_with("target_label: instance"),
                    "{text}"
                );
                text.push_str(
                    "      - source_labels: [__tmp_loopback]\n        target_label: __address__\n",
                );
            }
            "pistats-targets.yml" => {
                // The first target group (site home) scrapes the Pi, the others this machine.
                let mut groups = text.split("  labels:\n");
                let mut out = groups.next().unwrap().to_owned();
                for (i, group) in groups.enumerate() {
                    let to = if i == 0 { pi_addr } else { host_addr };
                    out.push_str(&format!("  labels:\n    __tmp_loopback: '{to}'\n{group}"));
                }
                text = out;
            }
            _ => {}
        }
        std::fs::write(etc.join(name), text).unwrap();
    }
    let config = etc.join("prometheus.yml");
    let check = Command::new(tool("promtool"))
        .args(["check", "config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let storage = dir.path().join("data");
    let web = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _prometheus = Running(
        Command::new(prometheus_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", storage.display()))
            .arg(format!("--web.listen-address={web}"))
            .arg("--log.level=warn")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus"),
    );

    // Documented targets: kitchen-pi.lan and garage-pi.lan (site home, both the Pi fixture
    // daemon), 192.168.10.21 and "workshop" (site office, this machine's daemon).
    let wanted = [
        r#"pistats_cpu_usage_percent{instance="192.168.10.21",site="office"}"#,
        r#"pistats_network_receive_bytes_total{instance="192.168.10.21",interface="lo"}"#,
        r#"pistats_network_receive_bytes_total{instance="kitchen-pi",interface="eth0"} == 987654321"#,
        r#"pistats_cpu_usage_percent{instance="workshop",site="office"}"#,
        r#"pistats_pi_throttled{instance="kitchen-pi",site="home",flag="under_voltage"} == 1"#,
        r#"pistats_pi_throttled{instance="garage-pi",flag="arm_frequency_capped"} == 0"#,
        r#"ALERTS{alertname="PiUnderVoltage",instance="kitchen-pi"}"#,
        r#"up{job="pistats"} == 1"#,
    ];
    let deadline = Instant::now() + SCRAPED;
    let mut missing: Vec<&str> = wanted.to_vec();
    while !missing.is_empty() && Instant::now() < deadline {
        missing.retain(|q| query(web, q).is_empty());
        thread::sleep(Duration::from_millis(250));
    }
    assert!(
        missing.is_empty(),
        "Prometheus has no samples for {missing:?} after {SCRAPED:?}"
    );

    let up = query(web, r#"up{job="pistats"}"#);
    let mut instances: Vec<&str> = up
        .iter()
        .map(|s| s["metric"]["instance"].as_str().unwrap())
        .collect();
    instances.sort();
    assert_eq!(
        instances,
        ["192.168.10.21", "garage-pi", "kitchen-pi", "workshop"]
    );

    let cpu = query(
        web,
        r#"pistats_cpu_usage_percent{instance="192.168.10.21"}"#,
    );
    let value: f64 = cpu[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!((0.0..=100.0).contains(&value), "cpu usage {value}");
    let build = query(web, r#"pistats_build_info{instance="192.168.10.21"}"#);
    assert_eq!(build[0]["metric"]["version"], env!("CARGO_PKG_VERSION"));
}

/// Every query of docs/grafana-dashboard.json is valid PromQL (checked by promtool as
/// recording rules) and names only metrics the daemon exposes.
#[test]
#[ignore = "needs promtool: checks the dashboard's PromQL (bash tests/prometheus-setup.sh)"]
fn grafana_dashboard_queries_are_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana-dashboard.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("dashboard is JSON");
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let mut exprs = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(list) => list.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");

    // Grafana's variables, as Grafana would expand them.
    let promql: Vec<String> = exprs
        .iter()
        .map(|e| {
            e.replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in promql.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: '{}'\n",
            e.replace('\'', "''")
        ));
    }
    let rules_file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&rules_file, &rules).unwrap();
    let check = Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(&rules_file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "dashboard PromQL rejected: {}{}\n{rules}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The metric names must exist: this machine's daemon plus the Pi boards' cover them all
    // (the Pi 5 has the PMIC, the CM4 an eMMC that reports wear).
    let host = start_pistats(&[]);
    let pi = start_pi4_pistats();
    let pi5 = start_board_pistats("pi5", "vcgencmd-pi5");
    let cm4 = start_board_pistats("cm4", "vcgencmd");
    // No test machine has a Wi-Fi link: the Wi-Fi families come from the exposition of a
    // document collected on the Pi 4 tree whose watched interface has every Wi-Fi figure
    // (the kernel's dBm and NetworkManager's bit rate; `wifi_metrics_pass_promtool` follows a
    // real NetworkManager stand-in).
    let wifi = {
        use pistats::stats::model::{Connectivity, Wifi};
        let config = pistats::config::Config {
            proc_root: fixtures().join("pi4/proc"),
            sys_root: fixtures().join("pi4/sys"),
            vcgencmd: fixtures().join("bin/vcgencmd"),
            ..Default::default()
        };
        let doc = pistats::stats::Collector::new(&config).collect(pistats::stats::Context {
            connected_clients: 0,
            connectivity: Some(std::sync::Arc::new(Connectivity {
                source: "networkmanager",
                interface: "wlan0".into(),
                state: "activated".into(),
                connected: true,
                wifi: Some(Wifi {
                    ssid: Some("home".into()),
                    signal_dbm: Some(-61),
                    quality_percent: Some(70),
                    frequency_mhz: Some(5180),
                    band: Some("5 GHz"),
                    bitrate_kbps: Some(72_200),
                    ..Wifi::default()
                }),
                ..Connectivity::default()
            })),
            full: false,
        });
        pistats::metrics::render(&doc, &Default::default())
    };
    let exposed: String = fetch_metrics(host.addr).body
        + &fetch_metrics(pi.addr).body
        // Today's writes once the history has seen the disks.
        + &fetch_metrics_with(pi5.addr, "pistats_disk_written_today_bytes{").body
        + &fetch_metrics(cm4.addr).body
        + &wifi;
    let families: std::collections::HashSet<&str> = exposed
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(at) = rest.find("pistats_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                families.contains(name.as_str()),
                "dashboard query {e:?} uses {name}, which pistats does not expose"
            );
            rest = &rest[at + name.len()..];
        }
    }
}

/// The Wi-Fi families, from a daemon following a wireless device of the NetworkManager
/// stand-in on a private bus, pass promtool, with base units and the info labels.
#[test]
#[ignore = "needs promtool and dbus-daemon (bash tests/prometheus-setup.sh, bash tests/netwatch-setup.sh)"]
fn wifi_metrics_pass_promtool() {
    use common::nm_standin::*;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bus = common::dbus::Bus::start();
    let _nm = runtime.block_on(async {
        let nm = FakeNm::start(&bus.address, 1).await;
        nm.add_wifi_device("pstw3", ACTIVATED, &[("192.0.2.33", 24)])
            .await;
        let ap = nm
            .add_access_point(Ap {
                ssid: "home \"5G\"",
                bssid: "aa:bb:cc:00:00:05",
                strength: 58,
                frequency_mhz: 5500,
                flags: PRIVACY,
                wpa_flags: 0,
                rsn_flags: RSN_WPA2_WPA3,
            })
            .await;
        nm.associate("pstw3", Some(&ap), 866_700).await;
        nm
    });
    let daemon = common::daemon::Served::start(
        &[],
        &bus.address,
        &["--interface", "pstw3", "--port", "0", "--interval", "250ms"],
    );
    let addr: SocketAddr = daemon.wait_for_events(1, 0).parse().unwrap();
    let wanted = [
        r#"pistats_wifi_quality_percent{interface="pstw3"} 58"#,
        r#"pistats_wifi_bitrate_bytes_per_second{interface="pstw3"} 108337500"#,
        r#"pistats_wifi_frequency_hertz{interface="pstw3"} 5500000000"#,
        r#"pistats_wifi_info{interface="pstw3",ssid="home \"5G\"",bssid="AA:BB:CC:00:00:05",band="5 GHz",security="WPA2/WPA3"} 1"#,
    ];
    // The first document may precede the watcher's first view.
    let deadline = Instant::now() + STARTUP;
    let body = loop {
        let r = fetch_metrics(addr);
        if wanted.iter().all(|w| r.body.lines().any(|l| l == *w)) || Instant::now() > deadline {
            break r.body;
        }
        thread::sleep(Duration::from_millis(100));
    };
    for line in wanted {
        assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
    }
    // NetworkManager gives no dBm: the family is absent rather than made up.
    assert!(!body.contains("pistats_wifi_signal_dbm"), "{body}");
    promtool_check_metrics(&body);
}

/// The Pi 5 tree (fan, RP1 ADC, NVMe, PMIC rails) and the Pi Zero W tree (no under-voltage
/// detector) pass promtool too.
#[test]
#[ignore = "needs promtool: lints the exposition (bash tests/prometheus-setup.sh)"]
fn pi5_and_pi_zero_metrics_pass_promtool() {
    let pi5 = start_board_pistats("pi5", "vcgencmd-pi5");
    // Today's writes are there once the history has seen the disks (the fixture's counters
    // stand still: nothing written today).
    let today = r#"pistats_disk_written_today_bytes{device="nvme0n1"} 0"#;
    let r = fetch_metrics_with(pi5.addr, today);
    for line in [
        today,
        "# TYPE pistats_disk_written_today_bytes gauge",
        r#"pistats_fan_speed_rpm{fan="pwmfan",label="fan1"} 2946"#,
        r#"pistats_fan_cooling_max_state{fan="pwmfan",label="fan1"} 4"#,
        r#"pistats_temperature_celsius{sensor="rp1_adc",label="temp1"} 54.311"#,
        r#"pistats_temperature_celsius{sensor="nvme",label="Composite"} 38.85"#,
        r#"pistats_pi_pmic_volts{rail="EXT5V"} 5.1167"#,
        r#"pistats_pi_pmic_amperes{rail="VDD_CORE"} 0.7044"#,
        r#"pistats_pi_throttled{flag="under_voltage"} 0"#,
        r#"pistats_disk_device_written_bytes_total{device="nvme0n1"} 5023920128"#,
        r#"pistats_mmc_card_info{device="mmcblk0",type="SD",name="SR64G",manufacturer_id="0x000003",oem_id="0x5344",date="08/2023"} 1"#,
    ] {
        assert!(
            r.body.lines().any(|l| l == line),
            "no {line:?} in\n{}",
            r.body
        );
    }
    promtool_check_metrics(&r.body);

    let zero = start_board_pistats("pizerow", "vcgencmd");
    let r = fetch_metrics(zero.addr);
    assert!(
        r.body
            .lines()
            .any(|l| l == "pistats_pi_undervoltage_detection 0"),
        "{}",
        r.body
    );
    assert!(!r.body.contains(r#"flag="under_voltage""#), "{}", r.body);
    assert!(r
        .body
        .contains(r#"pistats_pi_throttled{flag="throttled"} 0"#));
    promtool_check_metrics(&r.body);
}
