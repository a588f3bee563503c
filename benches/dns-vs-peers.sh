#!/usr/bin/env bash
# conduit-dns against dnsmasq, NSD and Knot DNS, in one run, each server pinned to one core.
#
# 1. dnsperf (the shared peer-bench harness, ../../shared/tools/peer-bench/dns.sh): 1,000 names
#    svc0..svc999.internal, 90 % hits and 10 % NXDOMAIN; QPS, latency, server CPU; p50-p99.9 at a
#    fixed offered load.
# 2. dns-blast (../../shared/tools/dns-blast): a load generator that saturates one server core,
#    which dnsperf on one core cannot; QPS per server CPU-second.
# Prints both tables and the ratios of conduit to each peer.
#
# Usage: benches/dns-vs-peers.sh   (knobs: DUR RUNS CONC LAT_QPS BLAST_DUR; SHARED=path to shared/)
# Needs: apt-get install dnsmasq-base nsd knot dnsperf dnsutils
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
BENCH=$SHARED/tools/peer-bench
export OUT=${OUT:-$ROOT/target/bench/dns}
mkdir -p "$OUT"
for c in dnsmasq nsd knotd dnsperf dig taskset; do
  command -v "$c" >/dev/null || { echo "missing $c: apt-get install dnsmasq-base nsd knot dnsperf dnsutils util-linux" >&2; exit 1; }
done

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p conduit-examples --bin dns_only
cargo build --release --quiet --manifest-path "$SHARED/tools/dns-blast/Cargo.toml" --target-dir "$ROOT/target/dns-blast"
DNS_ONLY=$ROOT/target/release/dns_only
BLAST=$ROOT/target/dns-blast/release/dns-blast

# --- dnsperf, through the shared harness (dnsmasq is always in it) ---
export CANDIDATES="conduit=$DNS_ONLY --hosts \$HOSTS --listen 127.0.0.1:\$PORT
nsd=$BENCH/dns-peers.sh serve nsd
knot=$BENCH/dns-peers.sh serve knot"
"$BENCH/dns.sh" | tee "$OUT/dnsperf.md"
echo; echo "QPS per server core = QPS / (server CPU%/100), median over runs"
echo "| server | clients:outstanding | QPS per core | x dnsmasq | x NSD |"; echo "|---|---|---|---|---|"
awk -F'\t' '$8>0 {print $1"\t"$2"\t"int($3*100/$8)}' "$OUT/raw.tsv" | sort -k1,1 -k2,2 -k3,3n |
  awk -F'\t' '{k=$1"\t"$2; v[k]=v[k] " " $3; n[k]++} END{for(k in v){m=split(substr(v[k],2),a," "); print k"\t"a[int((m+1)/2)]}}' |
  sort > "$OUT/per-core.tsv"
awk -F'\t' 'NR==FNR {if($1=="dnsmasq") dm[$2]=$3; if($1=="nsd") nsd[$2]=$3; next}
  {printf "| %s | %s | %d | %.2f | %.2f |\n", $1, $2, $3, (dm[$2]?$3/dm[$2]:0), (nsd[$2]?$3/nsd[$2]:0)}' \
  "$OUT/per-core.tsv" "$OUT/per-core.tsv"

# --- dns-blast: saturate the server core ---
source "$BENCH/lib.sh"
BLAST_DUR=${BLAST_DUR:-10}
echo; echo "dns-blast, ${BLAST_DUR}s per server, server on core $SERVER_CORE, generator on core $CLIENT_CORE"
echo "| server | answered QPS | server CPU % | QPS per server core |"; echo "|---|---|---|---|"
port=18100
declare -A PERCORE=()
for entry in "dnsmasq=dnsmasq -k --conf-file=/dev/null --port=\$PORT --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --addn-hosts=\$HOSTS --local=/\$DOMAIN/ --pid-file=$OUT/blast-dnsmasq.pid --cache-size=0" \
             "nsd=$BENCH/dns-peers.sh serve nsd" "knot=$BENCH/dns-peers.sh serve knot" \
             "conduit=$DNS_ONLY --hosts \$HOSTS --listen 127.0.0.1:\$PORT"; do
  name=${entry%%=*}; cmd=${entry#*=}; port=$((port + 1)); export PORT=$port
  export DOMAIN=internal HOSTS=$OUT/internal.hosts ZONE=$OUT/internal.zone
  start "blast-$name" "$SERVER_CORE" "$cmd"
  for _ in $(seq 50); do dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 svc7.internal 2>/dev/null | grep -q 10.0.0.8 && break; sleep 0.2; done
  pid=${PID_OF[blast-$name]}; t0=$(ticks "$pid")
  res=$(PORT=$port QUERIES=$OUT/queries.txt DUR=$BLAST_DUR SOCKS=4 WINDOW=64 on "$CLIENT_CORE" "$BLAST" 2>&1 | tail -1)
  cpu=$(( ( $(ticks "$pid") - t0 ) * 100 / HZ / BLAST_DUR ))
  qps=$(echo "$res" | awk '{for(i=1;i<NF;i++) if($i=="qps") print $(i+1)}')
  percore=$(awk -v q="$qps" -v c="$cpu" 'BEGIN{ if (c>0) printf "%d", q*100/c; else print 0 }')
  PERCORE[$name]=$percore
  echo "| $name | $qps | $cpu | $percore |"
  echo "$name: $res" >> "$OUT/blast.log"
  stop_all
done
for peer in dnsmasq nsd knot; do
  awk -v a="${PERCORE[conduit]}" -v b="${PERCORE[$peer]}" -v p="$peer" 'BEGIN{ if (b>0) printf "conduit / %s per core: %.2f\n", p, a/b }'
done
