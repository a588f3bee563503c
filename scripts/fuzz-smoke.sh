#!/usr/bin/env bash
# Builds every fuzz target (libFuzzer with AddressSanitizer, through cargo-fuzz; on the
# stable toolchain with RUSTC_BOOTSTRAP=1) and runs each for a bounded time: a target that
# no longer builds, or an input that crashes one within the time, fails CI.
# Usage: ./scripts/fuzz-smoke.sh [SECONDS_PER_TARGET]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
cd fuzz
targets=$(cargo fuzz list)
cargo fuzz build
for t in $targets; do
    echo "fuzzing $t for ${secs}s"
    # a fresh corpus directory each run: nothing the previous run found is kept in the tree
    corpus=$(mktemp -d)
    cargo fuzz run "$t" "$corpus" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 3
    rm -rf "$corpus"
done
