//! pistats: Raspberry Pi system statistics over WebSocket, REST, Prometheus and a dashboard.
//!
//! # Module map
//!
//! | module       | subsystem                                                            |
//! |--------------|----------------------------------------------------------------------|
//! | [`cli`]      | command line: serve, `snapshot`, `check-config`, `network`           |
//! | [`config`]   | strict TOML config + env/CLI overrides, `DEFAULT_*` values           |
//! | [`stats`]    | collector: typed snapshot ([`stats::model`]), JSON ([`stats::wire`]) |
//! | [`hub`]      | collector thread, serialize-at-most-once broadcast (`watch`), history ring, records |
//! | [`history`]  | a year of downsampled history (older buckets compressed, kept in a file in `state_dir`, not RAM), bytes written per disk per day, its state file, the subsystem that records and saves it |
//! | [`events`]   | events timeline and the detector that turns samples into events      |
//! | [`alerts`]   | alert rules every tick; ntfy, webhook and MQTT (Home Assistant)      |
//! | [`http`]     | one port: WebSocket feed, REST, health, metrics, dashboard, TLS      |
//! | [`metrics`]  | Prometheus families of the latest snapshot, text exposition format   |
//! | [`netwatch`] | connectivity of the watched interface (NetworkManager or kernel)     |
//! | [`listener`] | opens, moves and closes the listener as the serve policy requires    |
//! | [`systemd`]  | sd_notify readiness, status and watchdog                             |
//! | [`signals`]  | SIGTERM/SIGINT shut down, SIGHUP reloads the TLS certificate         |
//! | [`daemon`]   | starts every subsystem through its `spawn`, joins them at shutdown   |
//!
//! Each long-lived subsystem (hub, history, alerts, netwatch, listener, systemd, signals) starts through one
//! face, `spawn(config/deps, cancel, tracker)`; [`daemon::run`] lists them in order.

pub mod alerts;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod events;
pub mod history;
pub mod http;
pub mod hub;
pub mod listener;
pub mod metrics;
pub mod netwatch;
pub mod signals;
pub mod stats;
pub mod systemd;
