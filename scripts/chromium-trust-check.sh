#!/usr/bin/env bash
# Headless Chromium loads a page over Conduit's TLS with the root trusted in an NSS database,
# and refuses it without. Needs Debian's chromium and libnss3-tools (installed if missing).
# Usage: scripts/chromium-trust-check.sh        (prints PASS or FAIL, exit 0/1)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null || ! command -v certutil >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium libnss3-tools >/dev/null
fi
cargo build -q --locked -p conduit-examples --bin ca_only
work=$(mktemp -d); server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/debug/ca_only --dir "$work/tls" --name grafana.internal --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 50); do grep -q listening "$work/server.log" && break; sleep 0.1; done

load() { # $1: HOME whose ~/.pki/nssdb Chromium reads
    HOME="$1" timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$1/profile" --host-resolver-rules="MAP grafana.internal 127.0.0.1" \
        --dump-dom "https://grafana.internal:$port/" 2>"$1/chromium.log" || true
}

mkdir -p "$work/untrusted" "$work/trusted/.pki/nssdb"
without=$(load "$work/untrusted")
certutil -d "sql:$work/trusted/.pki/nssdb" -N --empty-password
certutil -d "sql:$work/trusted/.pki/nssdb" -A -n "Conduit Root CA" -t "C,," -i "$work/tls/root.pem"
with=$(load "$work/trusted")

if grep -q "hello from grafana.internal" <<<"$with" && ! grep -q "hello from grafana.internal" <<<"$without"; then
    echo "PASS: Chromium $(chromium --version 2>/dev/null | awk '{print $2}') loads the page with the root trusted in NSS, and refuses it without"
else
    echo "FAIL"; echo "--- with trust:"; echo "$with" | head -5; tail -5 "$work/trusted/chromium.log"
    echo "--- without:"; echo "$without" | head -5
    exit 1
fi
