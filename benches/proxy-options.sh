#!/usr/bin/env bash
# What the proxy's options cost per core: conduit-proxy plain and with each of VARIANTS, side by
# side in one run of the shared harness (../../shared/tools/peer-bench/proxy.sh; nginx, haproxy and
# Caddy run too, for scale): TLS 1.3 P-256, each proxy pinned to one core, wrk and the nginx upstream
# on the other. Prints the harness's table, then the median requests per proxy CPU-second of each
# and its ratio to plain.
#
# The default variants:
#   policy  an access policy of GRANTS grants per service over POLICY_SERVICES more services; every
#           request (from 127.0.0.1) is let in by the last grant of its service
#   logged  the access log on (one JSON line per request, as `conduit serve` ships it)
#
# Usage: benches/proxy-options.sh   (knobs: GRANTS=100 POLICY_SERVICES=1000 DUR=10 RUNS=5
#        CONNS=64 TESTS=h1-1k VARIANTS='name=extra proxy_only flags' one per line,
#        PROXY_BIN=path of another proxy_only build)
# Needs: apt-get install caddy nginx haproxy wrk nghttp2-client
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
BENCH=$SHARED/tools/peer-bench
export OUT=${OUT:-$ROOT/target/bench/options}
export RUNS=${RUNS:-5} TESTS=${TESTS:-h1-1k} ED_RUNS=0
GRANTS=${GRANTS:-100} POLICY_SERVICES=${POLICY_SERVICES:-1000}
VARIANTS=${VARIANTS:-"policy=--policy $GRANTS --policy-services $POLICY_SERVICES
logged=--access-log $OUT/access.log"}
mkdir -p "$OUT"
for c in caddy nginx haproxy wrk h2load taskset openssl curl; do
  command -v "$c" >/dev/null || { echo "missing $c: apt-get install caddy nginx haproxy wrk nghttp2-client" >&2; exit 1; }
done
# PROXY_BIN: another proxy_only build (an earlier commit's, for a before/after comparison).
if [ -z "${PROXY_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p conduit-examples --bin proxy_only
fi
PROXY=${PROXY_BIN:-$ROOT/target/release/proxy_only}
ARGS="--listen 127.0.0.1:\$PORT --cert \$CERT --key \$KEY --route \$VHOST=\$UPSTREAM --health-path /1k"
CANDIDATES="conduit=$PROXY $ARGS"
while IFS= read -r v; do
  [ -n "$v" ] && CANDIDATES="$CANDIDATES
${v%%=*}=$PROXY $ARGS ${v#*=}"
done <<< "$VARIANTS"
export CANDIDATES
"$BENCH/proxy.sh" | tee "$OUT/table.md"

echo
echo "median of $RUNS runs, requests per proxy CPU-second; policy = $GRANTS grants per service, $((POLICY_SERVICES + 1)) services"
awk -F'\t' -v names="$(printf '%s\n' "$VARIANTS" | sed -n 's/=.*//p' | tr '\n' ' ')" '
  function med(s,   n, i, j, t, a) { n = split(s, a, " "); if (n == 0) return 0
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)] }
  { split($1, nm, "-"); if ($10 != "-" && $10 != "") v[nm[1]] = v[nm[1]] " " $10
    if ($3 != "fail") r[nm[1]] = r[nm[1]] " " $3; if ($5 != "-") p[nm[1]] = p[nm[1]] " " $5 }
  END { c = med(v["conduit"])
    printf "| proxy | req/s per core | req/s | p99 ms | × plain |\n|---|---|---|---|---|\n"
    printf "| conduit, plain | %d | %d | %s | 1.000 |\n", c, med(r["conduit"]), med(p["conduit"])
    k = split(names, ns, " ")
    for (i = 1; i <= k; i++) { x = med(v[ns[i]])
      printf "| conduit, %s | %d | %d | %s | %.3f |\n", ns[i], x, med(r[ns[i]]), med(p[ns[i]]), (c ? x / c : 0) }
    printf "| nginx | %d | %d | %s | %.3f |\n", med(v["nginx"]), med(r["nginx"]), med(p["nginx"]), (c ? med(v["nginx"]) / c : 0) }' "$OUT/raw.tsv"
