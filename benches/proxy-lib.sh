# Shared by benches/proxy-ab.sh and benches/proxy-latency.sh, sourced after the peers' lib.sh
# (../../shared/tools/peer-bench/lib.sh): the harness's upstream and certificates, and waiting
# for a proxy to serve.

# proxy_upstream: the bench certificates ($OUT/pki), the files the upstream serves (1k,
# 100k) and the nginx upstream on the client core, as the peers' harness sets them up.
proxy_upstream() {
  export VHOST=svc.internal UPSTREAM=127.0.0.1:18080
  mkpki "$OUT/pki"
  mkdir -p "$OUT/www"
  head -c 1024 /dev/zero | tr '\0' a > "$OUT/www/1k"
  head -c 102400 /dev/zero | tr '\0' a > "$OUT/www/100k"
  start upstream "$CLIENT_CORE" "$(nginx_conf upstream "listen $UPSTREAM; root $OUT/www;")"
  wait_tcp 18080
}

# wait_served PORT: returns once the proxy on PORT answers /1k with 200 over TLS; fails after
# 15 s.
wait_served() {
  local code
  for _ in $(seq 150); do
    code=$(curl -sk --resolve "$VHOST:$1:127.0.0.1" "https://$VHOST:$1/1k" -o /dev/null -w '%{http_code}' 2>/dev/null || true)
    [ "$code" = 200 ] && return 0
    sleep 0.1
  done
  return 1
}
