#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (the real daemon on loopback, a real
# Prometheus server), then the dashboard in real headless Chromium. Each part installs what it
# needs (idempotently; run as root on a fresh Debian 12 machine).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

echo "== installing Prometheus for tests/prometheus.rs"
bash tests/prometheus-setup.sh

echo "== cargo test"
cargo test --locked --all-targets

echo "== dashboard in headless Chromium"
bash tests/browser/run.sh
