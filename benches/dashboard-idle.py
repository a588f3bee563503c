#!/usr/bin/env python3
"""What open dashboards cost the gateway while nothing changes.

Starts a release gateway on loopback with three services, logs N dashboards in (one session
each, as N operators would), and holds each one's event stream open over its own TLS
connection: an idle dashboard makes no other request (examples/tests/dashboard.rs checks that
in Chromium), so its whole cost is that stream. Measures the gateway's CPU time
(/proc/PID/stat) over the same window with 0 and with N dashboards, and prints both as a
share of one core, and the difference.

    python3 benches/dashboard-idle.py [N=50] [SECONDS=60]
"""

import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 50
WINDOW = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def tls(port, root):
    ctx = ssl.create_default_context(cafile=root)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="conduit.internal")


def request(conn, port, method, path, headers=(), body=b""):
    head = [f"{method} {path} HTTP/1.1", f"Host: conduit.internal:{port}", *headers,
            f"Content-Length: {len(body)}", "", ""]
    conn.sendall("\r\n".join(head).encode() + body)


def login(port, root, token):
    conn = tls(port, root)
    form = urllib.parse.urlencode({"token": token}).encode()
    request(conn, port, "POST", "/login", [f"Origin: https://conduit.internal:{port}",
                                          "Content-Type: application/x-www-form-urlencoded", "Connection: close"], form)
    answer = b""
    while chunk := conn.recv(65536):
        answer += chunk
    conn.close()
    for line in answer.split(b"\r\n"):
        if line.lower().startswith(b"set-cookie: conduit_session="):
            return line.split(b"=", 1)[1].split(b";", 1)[0].decode()
    raise SystemExit(f"login failed: {answer[:200]!r}")


def measure(pid, seconds):
    start = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - start) / seconds * 100


def main():
    subprocess.run(["cargo", "build", "-q", "--release", "--locked", "-p", "conduit-examples", "--bin", "conduit"],
                   cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="conduit-dash-bench-")
    dns, https, http = free_port(), free_port(), free_port()
    config = os.path.join(work, "conduit.toml")
    with open(config, "w", encoding="utf-8") as f:
        f.write(f'zone = "internal"\n[dns]\nlisten = ["127.0.0.1:{dns}"]\n'
                f'[proxy]\nlisten = ["127.0.0.1:{https}"]\nhttp_listen = ["127.0.0.1:{http}"]\n'
                f'[admin]\nsocket = "{work}/admin.sock"\n[monitor]\nsources = ["host"]\n')
    base = [os.path.join(ROOT, "target/release/conduit"), "--config", config, "--dir", os.path.join(work, "state")]
    gateway = subprocess.Popen([*base, "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.exists(os.path.join(work, "admin.sock")):
                break
            time.sleep(0.1)
        token = subprocess.run([*base, "token", "add", "ops"], capture_output=True, text=True, check=True).stdout.strip()
        upstream = socket.socket()
        upstream.bind(("127.0.0.1", 0))
        upstream.listen(64)
        for name in ("grafana", "webui", "vllm"):
            subprocess.run([*base, "register", "--name", name, "--upstream", f"127.0.0.1:{upstream.getsockname()[1]}"],
                           capture_output=True, check=True)
        root = os.path.join(work, "state", "tls", "root.pem")
        time.sleep(3)
        idle = measure(gateway.pid, WINDOW)
        streams = []
        for _ in range(N):
            cookie = login(https, root, token)
            conn = tls(https, root)
            request(conn, https, "GET", "/v1/events", [f"Cookie: conduit_session={cookie}", "Accept: text/event-stream"])
            first = conn.recv(4096)
            if b" 200 " not in first.split(b"\r\n", 1)[0]:
                raise SystemExit(f"the event stream was refused: {first[:200]!r}")
            streams.append(conn)
        time.sleep(3)
        with_n = measure(gateway.pid, WINDOW)
        for s in streams:
            s.close()
        print(f"gateway CPU, idle, no dashboard     {idle:6.3f} % of a core ({WINDOW:.0f} s)")
        print(f"gateway CPU, idle, {N} dashboards    {with_n:6.3f} % of a core ({WINDOW:.0f} s)")
        print(f"cost of {N} open dashboards         {with_n - idle:6.3f} % of a core (target: under 2 %)")
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=30)


if __name__ == "__main__":
    main()
