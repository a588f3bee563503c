#!/usr/bin/env bash
# Runs every check and test of the workspace, installing what they need first.
# Usage: ./scripts/test.sh        (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
SECONDS=0

step "install test dependencies"
# Tests that need a real peer (dig, nsd, capsule...) fail rather than skip when CI is set;
# this script installs every one of them, so it sets CI unless told otherwise.
export CI=${CI:-1}
if ! command -v cargo-nextest >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# Real TLS clients for the CA tests; dig, kdig and NSD for the DNS tests.
need=()
for c in curl openssl; do command -v "$c" >/dev/null 2>&1 || need+=("$c"); done
command -v dig >/dev/null 2>&1 || need+=(dnsutils)
command -v kdig >/dev/null 2>&1 || need+=(knot-dnsutils)
command -v nsd >/dev/null 2>&1 || need+=(nsd)
# podman (Docker-compatible API) with runc and a busybox image, and a loopback sshd, for the
# monitor tests (../shared/notes/podman-docker-api.md, sshd-loopback.md).
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
[ -x /bin/busybox ] || need+=(busybox-static)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
# A network namespace with only loopback for the tests that register refused upstreams.
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
# libfaketime: a gateway (and its clients) started days later, for the CA recovery tests.
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || need+=(faketime)
# Prometheus (and its promtool) for the metrics test: a real scrape and a real parser.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
# etcd 3.4 (server and etcdctl) for the shared registry's tests: one node, and a three-node
# cluster for the failure tests.
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
# Headless Chromium and NSS's certutil for the dashboard's browser test (and the trust check).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v certutil >/dev/null 2>&1 || need+=(libnss3-tools)
# zsh and man-db: the completions and man pages `conduit` generates are loaded and rendered.
command -v zsh >/dev/null 2>&1 || need+=(zsh)
command -v man >/dev/null 2>&1 || need+=(man-db)
# The Debian package test: systemd-analyze verifies the unit (systemd need not run).
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# The peers of the bench smoke check (benches/smoke.sh): Knot for DNS; nginx, haproxy, Caddy,
# wrk and h2load for the proxy.
command -v knotd >/dev/null 2>&1 || need+=(knot)
for c in nginx haproxy caddy wrk; do command -v "$c" >/dev/null 2>&1 || need+=("$c"); done
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# crun (podman's default) fails here; runc needs podman's default ulimits dropped.
if [ ! -s /etc/containers/containers.conf ]; then
    mkdir -p /etc/containers
    printf '[containers]\ndefault_ulimits = []\n' > /etc/containers/containers.conf
fi
# The Capsule reference verifier (greenlet: SQLAlchemy 2.1 no longer pulls it, and every
# `capsule verify --db` fails without it).
if ! command -v capsule >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check 'qp-capsule[storage]==1.5.4' greenlet
fi
# A real WebSocket peer (server and client) for the proxy's WebSocket test.
if ! python3 -c 'import websockets' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check 'websockets==15.0.1'
fi
# Playwright for Python drives the system Chromium (executable_path; no browser download).
if ! python3 -c 'import playwright.sync_api' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check 'playwright==1.65.2'
fi
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH

step "format"
cargo fmt --all --check

step "clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "each crate builds on its own, with default features off and on"
for crate in conduit-registry conduit-dns conduit-ca conduit-proxy conduit-monitor conduit-audit conduit; do
    cargo check --locked -p "$crate" --no-default-features --lib
    cargo check --locked -p "$crate" --lib
done
# each façade feature builds alone, not only through another crate's features (the
# equivalent of `cargo hack check --each-feature` on the façade)
for feature in registry dns ca proxy monitor gpu docker ssh audit gateway; do
    cargo check --locked -p conduit --no-default-features --features "$feature" --lib
done

# each trait's contract suite builds on its own
for crate in conduit-registry conduit-dns conduit-ca conduit-proxy conduit-monitor conduit-audit; do
    cargo check --locked -p "$crate" --no-default-features --features testing --lib
done

step "fuzz targets build (stable, RUSTC_BOOTSTRAP) and each runs for a few seconds"
./scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-10}"

step "tests"
cargo nextest run --workspace --all-features --locked --no-fail-fast

step "headless Chromium trusts our root through NSS (and refuses the page without it)"
./scripts/chromium-trust-check.sh

step "doctests"
cargo test --workspace --all-features --locked --doc

step "docs (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --locked

step "bench smoke check: every peer bench builds and runs for seconds (figures printed, never asserted)"
./benches/smoke.sh

step "done in ${SECONDS}s"
