#!/usr/bin/env bash
# conduit-proxy against nginx, haproxy and Caddy (Debian packages), in one run, through the shared
# harness (../../shared/tools/peer-bench/proxy.sh): TLS 1.3 with a P-256 leaf (and an Ed25519 leaf
# for handshakes), each proxy pinned to one core, wrk / h2load and an nginx upstream on the other
# core. Tests: HTTP/1.1 1 KiB keep-alive, HTTP/1.1 100 KiB, a new TLS handshake per request
# (no resumption), HTTP/2 1 KiB. Prints the harness's table, then requests per proxy CPU-second,
# p99 latency and the ratios of conduit (`conduit serve`, as users run it) to nginx, haproxy and Caddy.
#
# Usage: benches/proxy-vs-peers.sh   (knobs: DUR RUNS CONNS TESTS, see proxy.sh; SHARED=path;
#        ENGINE=1 also runs the proxy engine alone)
# Needs: apt-get install caddy nginx haproxy wrk nghttp2-client
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
BENCH=$SHARED/tools/peer-bench
export OUT=${OUT:-$ROOT/target/bench/proxy}
mkdir -p "$OUT"
for c in caddy nginx haproxy wrk h2load taskset openssl curl; do
  command -v "$c" >/dev/null || { echo "missing $c: apt-get install caddy nginx haproxy wrk nghttp2-client" >&2; exit 1; }
done
# PROFILE=dev builds and runs the debug binaries (the smoke check in scripts/test.sh); figures
# are meaningful only with the default, release.
PROFILE=${PROFILE:-release}; BIN=$ROOT/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
cargo build --profile "$PROFILE" --quiet --manifest-path "$ROOT/Cargo.toml" -p conduit-examples --bin conduit --bin proxy_only
# The contract: TLS on 127.0.0.1:$PORT with $CERT/$KEY, Host $VHOST → http://$UPSTREAM. The
# upstream (nginx serving files) has no /health; its /1k is the health path, as for the peers.
# "conduit" is the gateway as users run it (`conduit serve`, shipped defaults, its own CA's
# certificate; the harness's readiness line reads "000 FAILED" for it because that curl trusts
# only the harness's CA), with its access log on as shipped (the harness's nginx has
# access_log off); ENGINE=1 adds "engine", the proxy engine alone (proxy_only with the
# harness's certificate, no access log), to show what the gateway around it costs.
CANDIDATES="conduit=bash $ROOT/benches/serve-candidate.sh $BIN/conduit \$PORT \$KEY \$VHOST \$UPSTREAM"
if [ "${ENGINE:-0}" = 1 ]; then
  CANDIDATES="$CANDIDATES
engine=$BIN/proxy_only --listen 127.0.0.1:\$PORT --cert \$CERT --key \$KEY --route \$VHOST=\$UPSTREAM --health-path /1k"
fi
export CANDIDATES
"$BENCH/proxy.sh" | tee "$OUT/table.md"

echo
echo "Median over runs of requests per proxy CPU-second (req/s ÷ proxy CPU share) and p99 latency (ms; h2load gives none)"
echo "(conduit: \`conduit serve\` as users run it; engine: proxy_only, with ENGINE=1)"
echo "| test | conduit req/core | engine | nginx | haproxy | Caddy | × nginx | × haproxy | × Caddy | engine × nginx | p99 conduit | p99 nginx |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
awk -F'\t' '
  function med(key,   n, i, j, t, a) { n = split(vals[key], a, " "); if (n == 0) return 0
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return a[int((n + 1) / 2)] }
  { split($1, nm, "-"); name = nm[1]; leaf = nm[2]; if (name == "direct") next
    key = name "|" $2 "|" leaf; if ($10 != "-" && $10 != "") vals[key] = vals[key] " " $10
    if ($5 != "-" && $5 != "") p99[key] = p99[key] " " $5; tests[$2 "|" leaf] = 1 }
  END { for (t in tests) { split(t, tl, "|"); c = med("conduit|" t); e = med("engine|" t); n = med("nginx|" t); h = med("haproxy|" t); y = med("caddy|" t)
      vals["pc"] = p99["conduit|" t]; pc = med("pc"); vals["pn"] = p99["nginx|" t]; pn = med("pn")
      printf "| %s (%s) | %d | %s | %d | %d | %d | %.2f | %.2f | %.2f | %s | %s | %s |\n", tl[1], tl[2], c, (e ? e : "-"), n, h, y,
        (n ? c / n : 0), (h ? c / h : 0), (y ? c / y : 0), (e && n ? sprintf("%.2f", e / n) : "-"), (pc ? pc : "-"), (pn ? pn : "-") } }' "$OUT/raw.tsv" | sort
