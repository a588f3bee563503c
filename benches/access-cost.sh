#!/usr/bin/env bash
# What an access policy costs the proxy per core: conduit-proxy without a policy and with one of
# GRANTS grants per service over POLICY_SERVICES more services (every request from 127.0.0.1 tries
# every grant of its service before the last one lets it in: the worst case), side by side in one
# run of the shared harness (../../shared/tools/peer-bench/proxy.sh; nginx, haproxy and Caddy run
# too, for scale): TLS 1.3 P-256, each proxy pinned to one core, wrk and the nginx upstream on the
# other. Prints the harness's table, then the median requests per proxy CPU-second of each and the
# ratio.
#
# Usage: benches/access-cost.sh   (knobs: GRANTS=100 POLICY_SERVICES=1000 DUR=10 RUNS=5 CONNS=64)
# Needs: apt-get install caddy nginx haproxy wrk nghttp2-client
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
BENCH=$SHARED/tools/peer-bench
export OUT=${OUT:-$ROOT/target/bench/access}
export RUNS=${RUNS:-5} TESTS=${TESTS:-h1-1k} ED_RUNS=0
GRANTS=${GRANTS:-100} POLICY_SERVICES=${POLICY_SERVICES:-1000}
mkdir -p "$OUT"
for c in caddy nginx haproxy wrk h2load taskset openssl curl; do
  command -v "$c" >/dev/null || { echo "missing $c: apt-get install caddy nginx haproxy wrk nghttp2-client" >&2; exit 1; }
done
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p conduit-examples --bin proxy_only
PROXY=$ROOT/target/release/proxy_only
ARGS="--listen 127.0.0.1:\$PORT --cert \$CERT --key \$KEY --route \$VHOST=\$UPSTREAM --health-path /1k"
export CANDIDATES="conduit=$PROXY $ARGS
policy=$PROXY $ARGS --policy $GRANTS --policy-services $POLICY_SERVICES"
"$BENCH/proxy.sh" | tee "$OUT/table.md"

echo
echo "policy: $GRANTS grants per service, $((POLICY_SERVICES + 1)) services; median of $RUNS runs, requests per proxy CPU-second"
awk -F'\t' '
  function med(s,   n, i, j, t, a) { n = split(s, a, " "); if (n == 0) return 0
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)] }
  { split($1, nm, "-"); if ($10 != "-" && $10 != "") v[nm[1]] = v[nm[1]] " " $10; if ($3 != "fail") r[nm[1]] = r[nm[1]] " " $3 }
  END { c = med(v["conduit"]); p = med(v["policy"]); n = med(v["nginx"])
    printf "| proxy | req/s per core | req/s | × without |\n|---|---|---|---|\n"
    printf "| conduit, no policy | %d | %d | 1.00 |\n", c, med(r["conduit"])
    printf "| conduit, policy | %d | %d | %.3f |\n", p, med(r["policy"]), (c ? p / c : 0)
    printf "| nginx (no policy) | %d | %d | %.3f |\n", n, med(r["nginx"]), (c ? n / c : 0)
    printf "\ncost of the policy: %.1f %% of requests per core\n", (c ? (1 - p / c) * 100 : 0) }' "$OUT/raw.tsv"
