"""Drives the gateway's dashboard in headless Chromium (Debian's, through Playwright for
Python), against a real gateway started by examples/tests/dashboard.rs, with the gateway's
root trusted through an NSS database (never --ignore-certificate-errors) and
conduit.internal mapped to loopback. Prints one JSON line (the measurements) at the end;
any failed check raises.

Environment: DASH_PORT (HTTPS), DNS_PORT, HTTP_PORT, ROOT_PEM, ADMIN_TOKEN, READ_TOKEN,
ARTIFACTS (screenshots), ACCESS_LOG, CONDUIT (the binary), CONDUIT_ARGS (its --config and
--dir, tab-separated), HEALTH_MS (interval x unhealthy threshold).
"""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from playwright.sync_api import sync_playwright

PORT = int(os.environ["DASH_PORT"])
URL = f"https://conduit.internal:{PORT}/"
ORIGIN = f"https://conduit.internal:{PORT}"
ROOT = os.environ["ROOT_PEM"]
ART = os.environ["ARTIFACTS"]
VIEWS = ["dashboard", "services", "dns", "tls", "servers", "routing", "audit", "events"]
report = {"screenshots": []}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def conduit(*args):
    base = [os.environ["CONDUIT"], *os.environ["CONDUIT_ARGS"].split("\t")]
    out = subprocess.run([*base, *args], capture_output=True, text=True, timeout=30)
    check(out.returncode == 0, f"conduit {' '.join(args)}: {out.stderr}")
    return out.stdout


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def upstream(port, root):
    p = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", root],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the upstream did not start")


def served_serial(name):
    """The serial of the certificate the proxy serves for NAME, our root trusted."""
    ctx = ssl.create_default_context(cafile=ROOT)
    with socket.create_connection(("127.0.0.1", PORT), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            return int(tls.getpeercert()["serialNumber"], 16)


def raw_post(path, cookie, origin, csrf, body):
    """A POST outside the browser, with a session cookie and a chosen Origin."""
    ctx = ssl.create_default_context(cafile=ROOT)
    with socket.create_connection(("127.0.0.1", PORT), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="conduit.internal") as tls:
            data = json.dumps(body).encode()
            head = (f"POST {path} HTTP/1.1\r\nHost: conduit.internal:{PORT}\r\n"
                    f"Cookie: conduit_session={cookie}\r\nOrigin: {origin}\r\n"
                    f"X-CSRF-Token: {csrf}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n")
            tls.sendall(head.encode() + data)
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    return int(answer.split(b" ", 2)[1])


def dashboard_requests():
    """Requests for the dashboard in the proxy's access log so far."""
    n = 0
    with open(os.environ["ACCESS_LOG"], encoding="utf-8") as f:
        for line in f:
            if json.loads(line).get("host", "").startswith("conduit.internal"):
                n += 1
    return n


def wait_for(page, selector, limit_ms):
    start = time.monotonic()
    page.wait_for_selector(selector, timeout=limit_ms)
    return round((time.monotonic() - start) * 1000)


def key(page, k):
    page.keyboard.press(k)
    page.wait_for_timeout(100)


def login(context, token):
    page = context.new_page()
    page.goto(URL)
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("#live.ok", timeout=10_000)
    return page


def main():
    home = tempfile.mkdtemp(prefix="conduit-dash-")
    nss = os.path.join(home, ".pki", "nssdb")
    os.makedirs(nss)
    subprocess.run(["certutil", "-N", "-d", f"sql:{nss}", "--empty-password"], check=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{nss}", "-n", "Conduit Root CA", "-t", "C,,", "-i", ROOT], check=True)
    www = tempfile.mkdtemp(prefix="conduit-www-")
    with open(os.path.join(www, "index.html"), "w", encoding="utf-8") as f:
        f.write("hello from web\n")
    up_port = free_port()
    up = upstream(up_port, www)
    evil_port = free_port()
    with open(os.path.join(www, "evil.html"), "w", encoding="utf-8") as f:
        f.write(f"""<!doctype html><body><script>
fetch('{URL}v1/services', {{method: 'POST', mode: 'no-cors', credentials: 'include',
  headers: {{'Content-Type': 'text/plain'}}, body: JSON.stringify({{name: 'evil', upstreams: ['127.0.0.1:9']}})}})
  .then(() => document.title = 'sent', () => document.title = 'failed');
</script></body>""")
    evil = upstream(evil_port, www)
    chromium = shutil.which("chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            env={**os.environ, "HOME": home},
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP conduit.internal 127.0.0.1, MAP evil.test 127.0.0.1"])
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        errors = []

        # The login form, then the first page with a session: size and time, cold cache.
        page = login(ctx, os.environ["ADMIN_TOKEN"])
        page.on("pageerror", lambda e: errors.append(str(e)))
        cold = ctx.new_page()
        cold_cdp = ctx.new_cdp_session(cold)
        cold_cdp.send("Network.enable")
        cold_cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        sizes = {}
        cold_cdp.on("Network.loadingFinished", lambda e: sizes.__setitem__(e["requestId"], e["encodedDataLength"]))
        cold.goto(URL, wait_until="domcontentloaded")
        nav = cold.evaluate("(() => { const n = performance.getEntriesByType('navigation')[0]; return n.domContentLoadedEventEnd; })()")
        cold.wait_for_selector("#live.ok", timeout=10_000)
        report["first_page_ms"] = round(nav)
        # HTML, CSS and script (the event stream and the API reads are not the page).
        res = cold.evaluate("performance.getEntriesByType('resource').map(r => [r.name, r.transferSize])")
        page_bytes = sum(t for n, t in res if "/assets/" in n)
        page_bytes += cold.evaluate("performance.getEntriesByType('navigation')[0].transferSize")
        report["first_page_bytes"] = page_bytes
        check(page_bytes < 100_000, f"first page {page_bytes} bytes")
        cold.close()

        # Register from the Services view.
        key(page, "2")
        page.click("#register-open")
        page.fill("#f-name", "web")
        page.fill("#f-upstreams", f"127.0.0.1:{up_port}")
        page.click("#f-submit")
        page.wait_for_selector('#view-services tr[data-service="web"]', timeout=5_000)
        key(page, "1")
        page.wait_for_selector('#view-dashboard tr[data-service="web"] .pill.ok', timeout=5_000)
        key(page, "3")
        page.wait_for_selector('#view-dns td:text-is("web.internal.")', timeout=5_000)
        dig = subprocess.run(["dig", "+short", "-p", os.environ["DNS_PORT"], "@127.0.0.1", "web.internal", "A"],
                             capture_output=True, text=True, timeout=10).stdout.split()
        check(dig == ["127.0.0.1"], f"dig web.internal: {dig}")
        # The resolver box asks the running server.
        page.fill("#resolve-name", "web.internal")
        page.click("#resolve-form button[type=submit]")
        page.wait_for_selector('#resolve-answer:has-text("NOERROR → 127.0.0.1")', timeout=5_000)

        # The upstream dies: the open page shows it down, with no reload.
        key(page, "1")
        page.evaluate("window.__notReloaded = true")
        before = dashboard_requests()
        up.kill()
        up.wait()
        report["down_ms"] = wait_for(page, '#view-dashboard tr[data-service="web"] .pill.bad', 10_000)
        check(page.evaluate("window.__notReloaded === true"), "the page was reloaded")
        limit = int(os.environ["HEALTH_MS"]) + 2000
        check(report["down_ms"] <= limit, f"down shown after {report['down_ms']} ms (limit {limit})")

        # An event made elsewhere reaches the open page within 2 s.
        start = time.monotonic()
        conduit("register", "--name", "api", "--upstream", f"127.0.0.1:{up_port}")
        page.wait_for_selector('#view-dashboard tr[data-service="api"]', timeout=5_000)
        report["event_ms"] = round((time.monotonic() - start) * 1000)

        # Idle: no request at all while nothing changes (the stream stays open).
        page.wait_for_timeout(1500)
        settled = dashboard_requests()
        page.wait_for_timeout(5000)
        report["idle_requests"] = dashboard_requests() - settled
        report["requests_while_changing"] = settled - before
        check(report["idle_requests"] == 0, f"{report['idle_requests']} requests while idle")

        # Rotate from the TLS view: the proxy serves a new serial.
        old = served_serial("web.internal")
        key(page, "4")
        row = page.wait_for_selector('tr[data-cert="web"]')
        shown_text = row.query_selector(".serial").inner_text()
        check(int(shown_text, 16) == old, "the TLS view shows the served serial")
        row.query_selector("button:text-is('Rotate')").click()
        page.click("#confirm")
        page.wait_for_function(
            "old => { const s = document.querySelector('tr[data-cert=\"web\"] .serial'); return s && s.textContent !== old; }",
            arg=shown_text, timeout=5_000)
        new = served_serial("web.internal")
        check(new != old, "a new serial is served after Rotate")
        report["rotated"] = [format(old, "x"), format(new, "x")]

        # Keyboard: / focuses the search, Esc closes a panel.
        key(page, "/")
        check(page.evaluate("document.activeElement.id") == "search", "/ focuses the search")
        page.keyboard.press("Escape")
        page.click("body")
        page.click("#register-open")
        check(page.is_visible("#panel"), "the panel opens")
        page.keyboard.press("Escape")
        check(not page.is_visible("#panel"), "Esc closes the panel")

        # The Audit view names the token that registered.
        key(page, "7")
        cell = page.wait_for_selector('#view-audit tr[data-action="service_register"]:has-text("web.internal") td.user', timeout=5_000)
        check(cell.inner_text() == "token:ops", f"the registration's user: {cell.inner_text()}")

        # Another site's POST: the browser sends no cookie (SameSite=Strict), nothing changes;
        # with the cookie and another Origin, the server refuses it.
        other = ctx.new_page()
        other.goto(f"http://evil.test:{evil_port}/evil.html")
        other.wait_for_function("document.title !== ''", timeout=5_000)
        other.close()
        cookie = next(c["value"] for c in ctx.cookies(URL) if c["name"] == "conduit_session")
        csrf = page.evaluate("document.querySelector('meta[name=\"csrf-token\"]').content")
        spec = {"name": "forged", "upstreams": ["127.0.0.1:9"]}
        report["cross_origin_status"] = raw_post("/v1/services", cookie, "https://evil.test", csrf, spec)
        check(report["cross_origin_status"] == 403, f"cross-origin POST: {report['cross_origin_status']}")
        check(raw_post("/v1/services", cookie, ORIGIN, "not-the-token", spec) == 403, "a POST without the CSRF token")

        # Screenshots of every view (and the dashboard at phone width).
        os.makedirs(ART, exist_ok=True)
        for i, view in enumerate(VIEWS):
            key(page, str(i + 1))
            page.wait_for_timeout(300)
            path = os.path.join(ART, f"{i + 1}-{view}.png")
            page.screenshot(path=path, full_page=True)
            report["screenshots"].append(path)
        phone = ctx.new_page()
        phone.set_viewport_size({"width": 390, "height": 844})
        phone.goto(URL)
        phone.wait_for_selector("#live.ok", timeout=10_000)
        phone.wait_for_timeout(500)
        path = os.path.join(ART, "phone-dashboard.png")
        phone.screenshot(path=path, full_page=True)
        report["screenshots"].append(path)
        phone.close()

        # A read-only token: the controls are disabled, and a forged POST is refused.
        ro_ctx = browser.new_context()
        ro = login(ro_ctx, os.environ["READ_TOKEN"])
        key(ro, "2")
        check(ro.is_disabled("#register-open"), "read-only: Register is disabled")
        status = ro.evaluate("""fetch('/v1/services', {method: 'POST', headers: {'Content-Type': 'application/json',
            'X-CSRF-Token': document.querySelector('meta[name="csrf-token"]').content},
            body: JSON.stringify({name: 'ro', upstreams: ['127.0.0.1:9']})}).then(r => r.status)""")
        report["read_only_post_status"] = status
        check(status == 403, f"read-only POST: {status}")
        # Its token revoked: the session is dead at once.
        conduit("token", "revoke", "viewer")
        dead = ro.evaluate("fetch('/v1/status').then(r => r.status)")
        check(dead == 401, f"after revoking its token: {dead}")
        ro_ctx.close()

        # Failed logins are limited per address.
        bad_ctx = browser.new_context()
        bad = bad_ctx.new_page()
        codes = []
        for _ in range(4):
            bad.goto(URL)
            bad.fill("#token", "cdt_wrong")
            with bad.expect_response(lambda r: r.url.endswith("/login")) as resp:
                bad.click("button[type=submit]")
            codes.append(resp.value.status)
        report["bad_login_statuses"] = codes
        check(codes == [401, 401, 401, 429], f"failed logins: {codes}")
        bad_ctx.close()

        # The gateway restarts under the open page: a banner while it is away, then the
        # stream resumes (a resync from the new run), still logged in, with no reload.
        key(page, "1")
        page.evaluate("window.__notReloaded = true")
        os.kill(int(os.environ["GATEWAY_PID"]), signal.SIGTERM)
        page.wait_for_selector("#banner:not([hidden])", timeout=10_000)
        report["banner_text"] = page.inner_text("#banner")
        os.makedirs(os.environ["ARTIFACTS"], exist_ok=True)
        restarted_log = os.path.join(os.environ["ARTIFACTS"], "restarted-gateway.log")
        gateway = subprocess.Popen([os.environ["CONDUIT"], *os.environ["CONDUIT_ARGS"].split("\t"), "serve"],
                                   stdout=subprocess.DEVNULL, stderr=open(restarted_log, "wb"))
        start = time.monotonic()
        page.wait_for_selector("#live.ok", timeout=20_000)
        page.wait_for_selector("#banner", state="hidden", timeout=5_000)
        report["resumed_ms"] = round((time.monotonic() - start) * 1000)
        check(page.evaluate("window.__notReloaded === true"), "the page was reloaded")
        conduit("register", "--name", "after", "--upstream", f"127.0.0.1:{up_port}")
        page.wait_for_selector('#view-dashboard tr[data-service="after"]', timeout=5_000)

        # Log out: the session is gone.
        page.click("form.logout button")
        page.wait_for_selector("#token", timeout=5_000)
        check(raw_post("/v1/services", cookie, ORIGIN, csrf, spec) == 401, "the session after logout")
        check(not errors, f"script errors: {errors}")
        browser.close()
    evil.kill()
    gateway.terminate()
    gateway.wait(timeout=30)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
