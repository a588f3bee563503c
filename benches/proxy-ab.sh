#!/usr/bin/env bash
# Before/after of two `conduit` builds, side by side: both gateways (`conduit serve`, shipped
# defaults, as in benches/proxy-vs-peers.sh) run at once on the server core, each loaded by its
# own wrk / h2load on the client core with half the connections, for the same seconds. Whatever
# the machine does meanwhile (a neighbour on the host, frequency, the page cache) falls on both,
# so their ratio holds still where two runs one after the other drift by ±10 % (a same-build
# A/A pair reads 0.99-1.01). Prints, per run, requests per proxy CPU-second of A and B and B/A,
# then the median B/A per test. Sharing the core, the two also share its caches, so a change in
# memory traffic weighs more here than with one gateway alone: measured on one change set,
# h1 1 KiB read +6.5 % here and +4 % in alternating runs alone (h2: +9 % alone). Use it to
# tell a change from noise, and runs alone (or benches/proxy-vs-peers.sh) for the figure. The peers' harness (../../shared/tools/peer-bench) provides
# the certificates, the nginx upstream and the pinning.
#
# Usage: benches/proxy-ab.sh CONDUIT_A CONDUIT_B   (knobs: TESTS="h1-1k h2-1k hs" RUNS=3 DUR=8
#        CONNS=64; SHARED=path to shared/)
# Build a before binary with: git worktree add /tmp/before REV && cargo build --release
#        --manifest-path /tmp/before/Cargo.toml --target-dir target/before -p conduit-examples --bin conduit
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
[ $# -eq 2 ] || { echo "usage: $0 CONDUIT_A CONDUIT_B" >&2; exit 2; }
A=$(realpath "$1") B=$(realpath "$2")
export OUT=${OUT:-$ROOT/target/bench/proxy-ab}
TESTS=${TESTS:-"h1-1k h2-1k hs"} RUNS=${RUNS:-3} DUR=${DUR:-8} CONNS=${CONNS:-64}
# lib.sh reads its own name for OUT's default; ours is set.
source "$SHARED/tools/peer-bench/lib.sh"
source "$ROOT/benches/proxy-lib.sh"
for c in nginx wrk h2load taskset openssl curl; do
  command -v "$c" >/dev/null || { echo "missing $c: apt-get install nginx wrk nghttp2-client" >&2; exit 1; }
done
proxy_upstream
# wrk keeps its TLS session across reconnects; this shim drops it so that "hs" is a full
# handshake per request (as in the peers' harness).
cc -shared -fPIC -O2 -o "$OUT/noresume.so" -x c - -ldl <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
typedef struct ssl_st SSL;
int SSL_set_session(SSL *s, void *session);
int SSL_clear(SSL *s) {
  static int (*real)(SSL *);
  if (!real) real = (int (*)(SSL *)) dlsym(RTLD_NEXT, "SSL_clear");
  SSL_set_session(s, 0);
  return real(s);
}
EOF
start a "$SERVER_CORE" "bash $ROOT/benches/serve-candidate.sh $A 18543 $OUT/pki/leaf-p256.key $VHOST $UPSTREAM"
start b "$SERVER_CORE" "bash $ROOT/benches/serve-candidate.sh $B 18553 $OUT/pki/leaf-p256.key $VHOST $UPSTREAM"
for port in 18543 18553; do
  wait_served "$port" || { echo "the gateway on :$port never served (see $OUT/a.log, $OUT/b.log)" >&2; exit 1; }
done

load() { # load TEST PORT: one client's share of the connections, on the client core
  local half=$((CONNS / 2)) url=https://127.0.0.1:$2
  case $1 in
    h1-1k) on "$CLIENT_CORE" wrk -t1 -c"$half" -d"${DUR}s" -H "Host: $VHOST" "$url/1k" ;;
    h2-1k) on "$CLIENT_CORE" h2load -t1 -c"$half" -m1 -D "$DUR" -H ":authority: $VHOST" "$url/1k" ;;
    hs) on "$CLIENT_CORE" env LD_PRELOAD="$OUT/noresume.so" wrk -t1 -c"$half" -d"${DUR}s" -H "Host: $VHOST" -H 'Connection: close' "$url/1k" ;;
    *) echo "unknown test $1 (h1-1k, h2-1k, hs)" >&2; return 1 ;;
  esac
}
rate() { awk '/Requests\/sec:/ {print $2} /^finished in/ {print $4 + 0}' "$1"; }
errors() { awk '/Non-2xx/ {b += $NF} /Socket errors/ {gsub(/,/, ""); b += $4 + $6 + $8 + $10}
  /^requests:/ {for (i = 1; i < NF; i++) if ($(i + 1) ~ /^(failed|errored|timeout)/) b += $i} END {print b + 0}' "$1"; }

: > "$OUT/ab.tsv"
echo "| test | run | A req/core | B req/core | B/A |"
echo "|---|---|---|---|---|"
for r in $(seq "$RUNS"); do for t in $TESTS; do
  ta=$(ticks "${PID_OF[a]}"); tb=$(ticks "${PID_OF[b]}")
  load "$t" 18543 > "$OUT/$t-$r-a.txt" 2>&1 & la=$!
  load "$t" 18553 > "$OUT/$t-$r-b.txt" 2>&1 & lb=$!
  wait "$la" "$lb"
  ta=$(( $(ticks "${PID_OF[a]}") - ta )); tb=$(( $(ticks "${PID_OF[b]}") - tb ))
  for s in a b; do
    [ "$(errors "$OUT/$t-$r-$s.txt")" = 0 ] && [ -n "$(rate "$OUT/$t-$r-$s.txt")" ] ||
      { echo "$t run $r: gateway $s answered with errors (see $OUT/$t-$r-$s.txt)" >&2; exit 1; }
  done
  awk -v t="$t" -v r="$r" -v ra="$(rate "$OUT/$t-$r-a.txt")" -v rb="$(rate "$OUT/$t-$r-b.txt")" \
      -v ta="$ta" -v tb="$tb" -v hz="$HZ" -v d="$DUR" 'BEGIN {
    pa = ra * d * hz / ta; pb = rb * d * hz / tb
    printf "| %s | %d | %d | %d | %.3f |\n", t, r, pa, pb, pb / pa
    printf "%s\t%.4f\n", t, pb / pa >> ENVIRON["OUT"] "/ab.tsv" }'
done; done
echo
echo "median B/A: $(sort -k1,1 -k2,2g "$OUT/ab.tsv" | awk -F'\t' '{v[$1] = v[$1] " " $2; n[$1]++}
  END {for (t in v) {split(v[t], a, " "); printf "%s %.3f  ", t, a[int((n[t] + 1) / 2)]}}')"
echo "(A = $A, B = $B; per proxy CPU-second, both gateways on core $SERVER_CORE at once, ${DUR}s per run)"
