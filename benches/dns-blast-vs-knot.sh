#!/usr/bin/env bash
# The DNS saturation figure alone, quickly: conduit-dns (dns_only) against Knot DNS, each
# server pinned to one core and dns-blast on the other, ROUNDS rounds alternating, in one
# run; QPS per server CPU-second for each and the ratio per round (the median is the figure).
# The data and the Knot configuration are the shared peer bench's (dns.sh, dns-peers.sh).
#   benches/dns-blast-vs-knot.sh [ROUNDS=3] [SECONDS=10]      (SHARED=path to shared/;
#   DNS_BIN=path of another dns_only build, an earlier commit's, for a before/after comparison)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
BENCH=$SHARED/tools/peer-bench
export OUT=${OUT:-$ROOT/target/bench/dns-blast}
mkdir -p "$OUT"
ROUNDS=${1:-3}; BLAST_DUR=${2:-10}
# PROFILE=dev builds and runs the debug binaries (the smoke check in scripts/test.sh); figures
# are meaningful only with the default, release.
PROFILE=${PROFILE:-release}; BIN=$ROOT/target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
[ -n "${DNS_BIN:-}" ] || cargo build --profile "$PROFILE" --quiet --manifest-path "$ROOT/Cargo.toml" -p conduit-examples --bin dns_only
DNS_BIN=${DNS_BIN:-$BIN/dns_only}
cargo build --release --quiet --manifest-path "$SHARED/tools/dns-blast/Cargo.toml" --target-dir "$ROOT/target/dns-blast"
export DOMAIN=internal HOSTS=$OUT/internal.hosts ZONE=$OUT/internal.zone
{ for i in $(seq 0 999); do echo "10.0.$((i/250)).$((i%250+1)) svc$i.internal"; done; } > "$HOSTS"
{ printf '$ORIGIN internal.\n$TTL 60\n@ IN SOA ns.internal. admin.internal. 1 3600 600 86400 60\n@ IN NS ns\nns IN A 127.0.0.1\n'
  awk '{sub(/\.internal$/,"",$2); print $2" IN A "$1}' "$HOSTS"; } > "$ZONE"
awk 'BEGIN{srand(42); for(i=0;i<20000;i++) if (rand()<0.9) printf "svc%d.internal A\n", int(rand()*1000);
     else printf "nosuch%d.internal A\n", int(rand()*100000)}' > "$OUT/queries.txt"
source "$BENCH/lib.sh"
port=18200
blast() { # NAME 'command' -> QPS per server core
  local name=$1 cmd=$2; port=$((port + 1)); export PORT=$port
  start "$name" "$SERVER_CORE" "$cmd"
  for _ in $(seq 50); do dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 svc7.internal 2>/dev/null | grep -q 10.0.0.8 && break; sleep 0.2; done
  local pid=${PID_OF[$name]} t0; t0=$(ticks "$pid")
  local res; res=$(PORT=$port QUERIES=$OUT/queries.txt DUR=$BLAST_DUR SOCKS=4 WINDOW=64 on "$CLIENT_CORE" "$ROOT/target/dns-blast/release/dns-blast" 2>&1 | tail -1)
  local cpu=$(( ( $(ticks "$pid") - t0 ) * 100 / HZ / BLAST_DUR ))
  local qps; qps=$(echo "$res" | awk '{for(i=1;i<NF;i++) if($i=="qps") print $(i+1)}')
  stop_all
  awk -v q="$qps" -v c="$cpu" 'BEGIN{ if (c>0) printf "%d", q*100/c; else print 0 }'
}
echo "| round | conduit QPS/core | knot QPS/core | ratio |"; echo "|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  c=$(blast conduit "$DNS_BIN --hosts \$HOSTS --listen 127.0.0.1:\$PORT")
  k=$(blast knot "$BENCH/dns-peers.sh serve knot")
  awk -v r="$r" -v c="$c" -v k="$k" 'BEGIN{ printf "| %d | %d | %d | %.3f |\n", r, c, k, (k>0?c/k:0) }'
done
