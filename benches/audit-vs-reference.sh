#!/usr/bin/env bash
# Durable sealed appends per second: conduit-audit (AuditLog: JSONL + CapsuleSink, group
# commit, $CONCURRENCY concurrent writers, default 1024) against the Capsule reference (qp-capsule 1.5.4, Python,
# CapsuleChain.seal_and_store), the same kind of events, in one run. Prints both and the ratio,
# and conduit's full-verification rate.
#   [CONCURRENCY=1024] benches/audit-vs-reference.sh [N_RUST] [N_PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
n_rust=${1:-50000}
n_py=${2:-1000}
command -v capsule >/dev/null || python3 -m pip install --quiet 'qp-capsule[storage]==1.5.4' greenlet
# PROFILE=dev builds and runs the debug binaries (the smoke check in scripts/test.sh); figures
# are meaningful only with the default, release.
PROFILE=${PROFILE:-release}; BIN=$PWD/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
cargo build --profile "$PROFILE" --locked --quiet -p conduit-benches --bin audit-load
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
rust=$("$BIN/audit-load" "$work/rust" "$n_rust" "${CONCURRENCY:-1024}")
mkdir -p "$work/py"; "$BIN/audit-load" "$work/py" 1 1 >/dev/null  # makes key + keyring.json
rm -f "$work/py/capsules.db"
py=$(QUANTUMPIPES_DATA_DIR="$work/py" python3 scripts/capsule-reference.py bench "$work/py/capsules.db" "$work/py" "$n_py")
r=$(awk '/sealed_per_second/ {print $2}' <<<"$rust")
v=$(awk '/verified_per_second/ {print $2}' <<<"$rust")
p=$(awk '/sealed_per_second/ {print $2}' <<<"$py")
printf 'conduit-audit sealed/s   %12.1f   (%s events, group commit, %s writers)\n' "$r" "$n_rust" "${CONCURRENCY:-1024}"
printf 'reference     sealed/s   %12.1f   (%s events)\n' "$p" "$n_py"
printf 'ratio                    %12.1fx\n' "$(awk -v a="$r" -v b="$p" 'BEGIN {print a / b}')"
printf 'conduit full verify/s    %12.1f\n' "$v"
