#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (the real daemon on loopback), then the
# suites that need real outside components, each installing what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

cargo test --locked --all-targets
