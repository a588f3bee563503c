#!/usr/bin/env bash
# Latency at the same offered load: `conduit serve` (shipped defaults, as in
# benches/proxy-vs-peers.sh) and nginx (the peers' harness configuration) each pinned to the
# server core in turn, loaded open loop by h2load at a fixed request rate (--rps per
# connection, 64 connections) from the client core. wrk in proxy-vs-peers.sh loads each proxy
# to saturation, where its p99 reflects how much more a faster proxy is asked to serve; here
# both get the same requests per second, below either one's saturation. Prints p50, p90, p99
# and p99.9 of each (from h2load's per-request log), the median over runs, and conduit's p99
# over nginx's. A run that did not reach 99 % of the offered rate is marked "saturated": its
# requests waited for earlier ones (h2load sends the next request of a connection once the
# last answered), and its percentiles understate the wait.
#
# Usage: benches/proxy-latency.sh   (knobs: TESTS="h1-1k h1-100k h2-1k" RUNS=3 DUR=8
#        RATE_1K=32000 RATE_100K=8960 RATE_H2=28000 (requests/s, all connections together);
#        SHARED=path to shared/; PROFILE=dev for the debug build)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
export OUT=${OUT:-$ROOT/target/bench/proxy-latency}
TESTS=${TESTS:-"h1-1k h1-100k h2-1k"} RUNS=${RUNS:-3} DUR=${DUR:-8} CONNS=64
RATE_1K=${RATE_1K:-32000} RATE_100K=${RATE_100K:-8960} RATE_H2=${RATE_H2:-28000}
PROFILE=${PROFILE:-release}; BIN=$ROOT/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
source "$SHARED/tools/peer-bench/lib.sh"
source "$ROOT/benches/proxy-lib.sh"
for c in nginx h2load taskset openssl curl; do
  command -v "$c" >/dev/null || { echo "missing $c: apt-get install nginx nghttp2-client" >&2; exit 1; }
done
cargo build --profile "$PROFILE" --quiet --manifest-path "$ROOT/Cargo.toml" -p conduit-examples --bin conduit
proxy_upstream
# nginx exactly as the peers' harness configures it (its line of peer_configs).
nginx_cmd=$(peer_configs p256 18570 | awk -F'\t' '$1 == "nginx-p256" {print $3}')
declare -A PORT_OF=([conduit]=18573 [nginx]=18571)

serve() { # serve TARGET: start it on the server core and wait until it answers
  local port=${PORT_OF[$1]}
  case $1 in
    conduit) start conduit "$SERVER_CORE" "bash $ROOT/benches/serve-candidate.sh $BIN/conduit $port $OUT/pki/leaf-p256.key $VHOST $UPSTREAM" ;;
    nginx) start nginx "$SERVER_CORE" "$nginx_cmd" ;;
  esac
  wait_served "$port" || { echo "$1 on :$port never served (see $OUT/$1.log)" >&2; exit 1; }
}

halt() { # halt TARGET
  local p=${PID_OF[$1]}
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
  unset "PID_OF[$1]"
}

: > "$OUT/lat.tsv"
echo "| test | run | target | offered/s | achieved/s | p50 ms | p90 ms | p99 ms | p99.9 ms |"
echo "|---|---|---|---|---|---|---|---|---|"
for r in $(seq "$RUNS"); do for target in conduit nginx; do
  serve "$target"
  for t in $TESTS; do
    case $t in
      h1-1k) rate=$RATE_1K proto=--h1 path=1k ;;
      h1-100k) rate=$RATE_100K proto=--h1 path=100k ;;
      h2-1k) rate=$RATE_H2 proto= path=1k ;;
      *) echo "unknown test $t (h1-1k, h1-100k, h2-1k)" >&2; exit 1 ;;
    esac
    log=$OUT/$t-$r-$target.log; rm -f "$log"
    # shellcheck disable=SC2086 # $proto is one flag or none
    on "$CLIENT_CORE" h2load $proto -t2 -c"$CONNS" -m1 --rps $((rate / CONNS)) -D "$DUR" --warm-up-time=1 \
      -H ":authority: $VHOST" --log-file="$log" "https://127.0.0.1:${PORT_OF[$target]}/$path" > "$OUT/$t-$r-$target.txt" 2>&1
    # The log: start (µs), status, duration (µs) per request; status 0 is a request still
    # open when the duration ended (not counted).
    awk '$2 != 0' "$log" | sort -n -k3 | awk -v t="$t" -v r="$r" -v g="$target" -v o=$(( rate / CONNS * CONNS )) -v d="$DUR" '
      $2 != 200 { bad++ } { v[NR] = $3 }
      END { n = NR; a = n / d
        if (!n) { printf "%s: %s answered nothing (see %s)\n", t, g, ENVIRON["OUT"] > "/dev/stderr"; exit 1 }
        s = (a < 0.99 * o || bad) ? " (saturated)" : ""
        if (bad) s = " (" bad " failed)"
        p = sprintf("%.2f\t%.2f\t%.2f\t%.2f", v[int(n*.5)]/1e3, v[int(n*.9)]/1e3, v[int(n*.99)]/1e3, v[int(n*.999)]/1e3)
        printf "%s\t%s\t%s\n", t, g, p >> ENVIRON["OUT"] "/lat.tsv"
        gsub(/\t/, " | ", p); printf "| %s | %d | %s | %d | %d%s | %s |\n", t, r, g, o, a, s, p }'
  done
  halt "$target"
done; done
echo
echo "Median over runs (ms) and conduit's p99 over nginx's (below 1: conduit's tail is shorter)"
echo "| test | conduit p50 | conduit p99 | nginx p50 | nginx p99 | p99 conduit / nginx |"
echo "|---|---|---|---|---|---|"
for t in $TESTS; do
  med() { awk -F'\t' -v t="$t" -v g="$1" -v c="$2" '$1 == t && $2 == g {print $c}' "$OUT/lat.tsv" | sort -g |
    awk '{a[NR] = $1} END {print NR ? a[int((NR + 1) / 2)] : "nan"}'; }
  awk -v t="$t" -v cp50="$(med conduit 3)" -v cp99="$(med conduit 5)" -v np50="$(med nginx 3)" -v np99="$(med nginx 5)" \
    'BEGIN {printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", t, cp50, cp99, np50, np99, (np99 > 0 ? cp99 / np99 : 0)}'
done
