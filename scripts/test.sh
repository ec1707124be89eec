#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, unit and fixture
# tests, and the end-to-end tests in network namespaces (root needed).
set -euo pipefail
cd "$(dirname "$0")/.."
# Every package the scripts may ask for installs together on this Debian
# (whatever is installed here now), and the check does catch a conflict.
scripts/deps.sh --resolve
if scripts/deps.sh --resolve busybox >/dev/null 2>&1; then
  echo "deps.sh --resolve missed the busybox/busybox-static conflict" >&2
  exit 1
fi
scripts/deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -q -- -D warnings
# The end-to-end tests drive these binaries (found in target/debug).
cargo build --workspace --bins -q
cargo test --workspace -q
# The crypto crate without ring: the pure-Rust backend alone.
cargo test -p switchd-crypto --no-default-features -q
echo "all tests passed"
