#!/usr/bin/env python3
"""Two release gateways on one etcd (Debian's etcd-server, one member, loopback).

1. Propagation: N registrations through gateway A's admin socket, one at a time; for each,
   the time from sending the request until A acknowledged it, and until gateway B's DNS
   answers the new name (B's DNS polled with a raw UDP query every 0.5 ms). p50 / p99 / max.
2. Scale: 10,000 services written straight into etcd (records shaped like the ones the
   gateways write, `routing = direct` so no certificate is issued per service), then
   - B's cold start from etcd: process start until its DNS answers the 10,000th name;
   - B's resident memory (VmRSS) with 10,000 services;
   - B's cold start from its signed snapshot with etcd stopped, likewise.

    python3 benches/shared-registry.py [N=200] [SERVICES=10000]
"""

import base64
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
SERVICES = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
BIN = os.path.join(ROOT, "target/release/conduit")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def etcd_call(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v3/{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def dns_answers(port, name, sock):
    """Whether the DNS server on `port` answers `name` A with at least one record."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    sock.sendto(q, ("127.0.0.1", port))
    try:
        data = sock.recv(4096)
    except socket.timeout:
        return False
    rid, flags, _, ancount = struct.unpack(">HHHH", data[:8])
    return rid == qid and flags & 0xF == 0 and ancount > 0


def wait_dns(port, name, limit):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.05)
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if dns_answers(port, name, sock):
            return time.monotonic()
        time.sleep(0.0005)
    raise SystemExit(f"{name} not answered on port {port} within {limit} s")


def admin_post(socket_path, path, body):
    s = socket.socket(socket.AF_UNIX)
    s.connect(socket_path)
    data = json.dumps(body).encode()
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: conduit\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    s.close()
    if not answer.startswith(b"HTTP/1.1 201") and not answer.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"registration refused: {answer[:300]!r}")


class Gateway:
    def __init__(self, work, name, url):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        self.dns = free_port()
        self.socket = os.path.join(self.dir, "admin.sock")
        self.config = os.path.join(self.dir, "conduit.toml")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(f'zone = "internal"\n[dns]\nlisten = ["127.0.0.1:{self.dns}"]\n'
                    f'[proxy]\nlisten = ["127.0.0.1:{free_port()}"]\nhttp_listen = []\n'
                    f'[admin]\nsocket = "{self.socket}"\n[monitor]\nsources = []\n'
                    f'[registry]\nurl = "{url}"\n')
        self.base = [BIN, "--config", self.config, "--dir", os.path.join(self.dir, "state")]
        subprocess.run([*self.base, "setup"], check=True, capture_output=True)
        self.proc = None

    def start(self):
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        started = time.monotonic()
        self.proc = subprocess.Popen([*self.base, "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return started

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    subprocess.run(["cargo", "build", "-q", "--release", "--locked", "-p", "conduit-examples", "--bin", "conduit"],
                   cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="conduit-etcd-bench-")
    client, peer = free_port(), free_port()
    etcd_args = ["etcd", "--name", "m0", "--data-dir", os.path.join(work, "etcd"),
                 "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-cluster", f"m0=http://127.0.0.1:{peer}"]
    etcd = subprocess.Popen(etcd_args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a = b = None
    try:
        for _ in range(100):
            try:
                etcd_call(client, "kv/range", {"key": b64("/")})
                break
            except OSError:
                time.sleep(0.1)
        url = f"etcd://127.0.0.1:{client}/bench"
        a, b = Gateway(work, "a", url), Gateway(work, "b", url)
        for g in (a, b):
            g.start()
        for g in (a, b):
            for _ in range(200):
                if os.path.exists(g.socket):
                    break
                time.sleep(0.05)
        acked, served = [], []
        for i in range(N):
            name = f"p{i}"
            t0 = time.monotonic()
            admin_post(a.socket, "/v1/services", {"name": name, "upstreams": ["127.0.0.1:9"], "routing": "direct"})
            t1 = time.monotonic()
            t2 = wait_dns(b.dns, f"{name}.internal", 10)
            acked.append((t1 - t0) * 1000)
            served.append((t2 - t0) * 1000)
        print(f"propagation over {N} registrations (A's admin API → B's DNS), ms:")
        print(f"  acknowledged by A      p50 {pct(acked, 50):7.1f}  p99 {pct(acked, 99):7.1f}  max {max(acked):7.1f}")
        print(f"  answered by B          p50 {pct(served, 50):7.1f}  p99 {pct(served, 99):7.1f}  max {max(served):7.1f}"
              "   (targets: p50 < 100, p99 < 1000)")

        # 10,000 services straight into etcd, shaped like the last record the gateways wrote.
        kvs = etcd_call(client, "kv/range", {"key": b64("/bench/records/"), "range_end": b64("/bench/records0")})["kvs"]
        template = json.loads(base64.b64decode(kvs[-1]["value"]))
        rev = int(base64.b64decode(etcd_call(client, "kv/range", {"key": b64("/bench/revision")})["kvs"][0]["value"]))
        b.stop()
        a.stop()
        ops = []
        for i in range(SERVICES):
            rev += 1
            rec = dict(template, name=f"s{i}", domain=f"s{i}.internal", revision=rev, create_revision=rev)
            ops.append({"request_put": {"key": b64(f"/bench/records/{rev:020}"), "value": b64(json.dumps(rec))}})
            if len(ops) == 100 or i == SERVICES - 1:
                ops.append({"request_put": {"key": b64("/bench/revision"), "value": b64(str(rev))}})
                etcd_call(client, "kv/txn", {"success": ops})
                ops = []
        last = f"s{SERVICES - 1}.internal"
        started = b.start()
        ready = wait_dns(b.dns, last, 60)
        time.sleep(1)
        rss = b.rss_mb()
        print(f"{SERVICES} services: B's cold start from etcd      {(ready - started) * 1000:7.0f} ms  (target < 2000)")
        print(f"{SERVICES} services: B's resident memory            {rss:7.1f} MB  (target < 300)")
        time.sleep(1)  # the snapshot is written after the load
        b.stop()
        etcd.send_signal(signal.SIGTERM)
        etcd.wait(timeout=30)
        started = b.start()
        ready = wait_dns(b.dns, last, 60)
        print(f"{SERVICES} services: B's cold start from snapshot  {(ready - started) * 1000:7.0f} ms  (target < 500)")
        snap = os.path.getsize(os.path.join(b.dir, "state", "registry-snapshot.json"))
        print(f"  (snapshot {snap / 1e6:.1f} MB)")
    finally:
        for g in (a, b):
            if g and g.proc and g.proc.poll() is None:
                g.stop()
        if etcd.poll() is None:
            etcd.kill()
        if os.environ.get("KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
