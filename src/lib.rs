//! pistats: Raspberry Pi system statistics over WebSocket, REST, Prometheus and a dashboard.
//!
//! # Module map
//!
//! | module       | subsystem                                                            |
//! |--------------|----------------------------------------------------------------------|
//! | [`cli`]      | command line: serve, `snapshot`, `check-config`, `network`           |
//! | [`config`]   | strict TOML config + env/CLI overrides, `DEFAULT_*` values           |
//! | [`stats`]    | collector: typed snapshot ([`stats::model`]), JSON ([`stats::wire`]) |
//! | [`hub`]      | collection thread, serialize-once broadcast (`watch`), history ring  |
//! | [`http`]     | one port: WebSocket feed, REST, health, metrics, dashboard, TLS      |
//! | [`metrics`]  | Prometheus families of the latest snapshot, text exposition format   |
//! | [`netwatch`] | connectivity of the watched interface (NetworkManager or kernel)     |
//! | [`systemd`]  | sd_notify readiness, status and watchdog                             |
//! | [`daemon`]   | wiring and lifecycle: listener policy, signals, shutdown             |

pub mod cli;
pub mod config;
pub mod daemon;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod netwatch;
pub mod stats;
pub mod systemd;
