#!/usr/bin/env bash
# The peer benches as a smoke check, seconds each: every bench script builds (debug) and runs
# once against its real peers (the Capsule reference, Knot, nginx, haproxy, Caddy) with tiny
# sizes and durations, so that a change which breaks a bench, its harness or a peer's
# configuration is caught by scripts/test.sh. The figures are printed and never asserted:
# timings of debug builds on a busy CI machine mean nothing. The real figures come from the
# full runs (release, minutes): benches/audit-vs-reference.sh, benches/dns-blast-vs-knot.sh,
# benches/proxy-vs-peers.sh, benches/proxy-latency.sh.
#
# Usage: benches/smoke.sh   (SHARED=path to shared/; needs what those scripts need)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export SHARED=${SHARED:-$ROOT/../shared} PROFILE=dev

echo "-- audit: 400 events, 16 writers, against the reference's 20"
mkdir -p "$ROOT/target/bench/smoke"
CONCURRENCY=16 "$ROOT/benches/audit-vs-reference.sh" 400 20

echo "-- DNS: one round of 1 s against Knot"
OUT=$ROOT/target/bench/smoke/dns "$ROOT/benches/dns-blast-vs-knot.sh" 1 1 | tee "$ROOT/target/bench/smoke/dns.txt"
# Both servers answered: a server that never came up measures 0.
awk -F'|' '$2 + 0 == 1 && ($3 + 0 == 0 || $4 + 0 == 0) { exit 1 }' "$ROOT/target/bench/smoke/dns.txt" ||
    { echo "a DNS server measured nothing (did it start?)" >&2; exit 1; }

echo "-- proxy: \`conduit serve\` and the engine, 1 s per test, against nginx, haproxy and Caddy"
OUT=$ROOT/target/bench/smoke/proxy RUNS=1 ED_RUNS=1 DUR=1 CONNS=8 TESTS="h1-1k h2-1k hs" ENGINE=1 \
    "$ROOT/benches/proxy-vs-peers.sh" > "$ROOT/target/bench/smoke/proxy.txt"
# Every target answered every test: a failed run reads "fail" in the harness's raw table.
if awk -F'\t' '$3 == "fail" || $3 == "" { bad = 1 } END { exit !bad }' "$ROOT/target/bench/smoke/proxy/raw.tsv"; then
    echo "a proxy bench run failed:" >&2
    cat "$ROOT/target/bench/smoke/proxy/raw.tsv" >&2
    exit 1
fi
tail -n 8 "$ROOT/target/bench/smoke/proxy.txt"

echo "-- proxy before/after: the same build twice, side by side, 2 s"
OUT=$ROOT/target/bench/smoke/proxy-ab RUNS=1 DUR=2 CONNS=8 TESTS="h1-1k h2-1k hs" \
    "$ROOT/benches/proxy-ab.sh" "$ROOT/target/debug/conduit" "$ROOT/target/debug/conduit" | tail -n 6

echo "-- proxy latency at the same offered load: conduit and nginx, 1 s, 640 requests/s"
OUT=$ROOT/target/bench/smoke/proxy-latency RUNS=1 DUR=1 RATE_1K=640 RATE_100K=640 RATE_H2=640 \
    "$ROOT/benches/proxy-latency.sh" | tail -n 5
