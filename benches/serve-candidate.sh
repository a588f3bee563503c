#!/usr/bin/env bash
# `conduit serve` as a candidate of the shared proxy harness (../../shared/tools/peer-bench/proxy.sh):
# the gateway as users run it, every shipped default kept (access log on, health checks, the
# dashboard, DNS, the audit chain), in a fresh state directory. Only what the harness's contract
# fixes is set: HTTPS on 127.0.0.1:PORT, the service VHOST → UPSTREAM checked on /1k (the upstream
# has no /health), DNS and plain HTTP moved off their default ports so that several candidates can
# run at once, and the CA's key algorithm following the harness's leaf (P-256 or Ed25519). The
# certificate is the gateway's own, issued by its CA for VHOST (clients in the bench do not verify).
# The state directory is $OUT/conduit-serve-PORT, made afresh; the admin socket is
# ${TMPDIR:-/tmp}/conduit-serve-PORT.sock.
#
# Usage: serve-candidate.sh CONDUIT_BIN PORT KEY VHOST UPSTREAM   (then execs `conduit serve`)
set -euo pipefail
bin=$1 port=$2 key=$3 vhost=$4 upstream=$5
zone=${vhost#*.}
dir=${OUT:-${TMPDIR:-/tmp}}/conduit-serve-$port
rm -rf "$dir"; mkdir -p -m 0700 "$dir"
# The admin socket apart: a unix socket's path must stay under 108 bytes, and $OUT may be deep.
sock=${TMPDIR:-/tmp}/conduit-serve-$port.sock
rm -f "$sock"
alg=ecdsa-p256
openssl pkey -in "$key" -noout -text 2>/dev/null | grep -qi ed25519 && alg=ed25519
cat > "$dir/conduit.toml" <<EOF
zone = "$zone"
[dns]
listen = ["127.0.0.1:$((port + 20000))"]
[proxy]
listen = ["127.0.0.1:$port"]
http_listen = ["127.0.0.1:$((port + 21000))"]
[ca]
key_algorithm = "$alg"
[admin]
socket = "$sock"
EOF
export CONDUIT_CONFIG_DIR=$dir
"$bin" setup >/dev/null
"$bin" register --name "${vhost%%.*}" --upstream "http://$upstream" --health /1k >/dev/null
exec "$bin" serve
