//! What several process-driving suites share: a site (state directory, configuration, free
//! ports) and its gateway process, curl against the proxy and the admin socket (answers
//! checked against `docs/admin-api.yaml`), writing the registry behind the commands' back.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::panic,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code driving real processes in real time; each suite uses its own part"
)]

pub(crate) mod access;
pub(crate) mod llm;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conduit_test_support::openapi::Document;
use conduit_test_support::process::{Killed, free_port, ok, wait_until};

use conduit::registry::{Endpoint, FileRegistry, Registry as _, ServiceRecord};

/// Registers `name` → `upstream` straight into the state directory's `services.json`, the
/// way another process might write it: no command, no SSRF guard, no audit record.
pub(crate) fn write_behind_the_back(dir: &Path, name: &str, upstream: &str) {
    let upstream: Endpoint = upstream.parse().unwrap();
    write_record(dir, ServiceRecord::new(name.parse().unwrap(), upstream));
}

/// Writes `record` straight into the state directory's `services.json`, as
/// [`write_behind_the_back`] does.
pub(crate) fn write_record(dir: &Path, record: ServiceRecord) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let registry = FileRegistry::open(dir).unwrap();
        registry.register(record).await.unwrap();
    });
}

/// The `conduit` command with a configuration file.
pub(crate) fn conduit(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_conduit"));
    c.arg("--config")
        .arg(config)
        .env_remove("CONDUIT_CONFIG_DIR")
        .env("RUST_LOG", "warn");
    c
}

/// A state directory and, elsewhere, a configuration naming free ports and an admin socket
/// outside the state directory.
pub(crate) struct Site {
    pub(crate) _tmp: tempfile::TempDir,
    pub(crate) state: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) socket: PathBuf,
    pub(crate) dns: u16,
    pub(crate) https: u16,
    pub(crate) http: u16,
}

impl Site {
    /// A state directory and, elsewhere, a configuration naming free ports and an admin
    /// socket outside the state directory.
    pub(crate) fn new(extra: &str) -> Self {
        Self::with_admin("", extra)
    }

    /// As [`Site::new`], with `monitor` added to the `[monitor]` section.
    pub(crate) fn with_monitor(monitor: &str) -> Self {
        Self::build("", monitor, "")
    }

    /// As [`Site::new`], with `admin` added to the `[admin]` section.
    pub(crate) fn with_admin(admin: &str, extra: &str) -> Self {
        Self::build(admin, "", extra)
    }

    fn build(admin: &str, monitor: &str, extra: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let etc = tmp.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        let socket = tmp.path().join("run/admin.sock");
        let (dns, https, http) = (free_port(), free_port(), free_port());
        let config = etc.join("conduit.toml");
        std::fs::write(
            &config,
            format!(
                "zone = \"internal\"\n\
                 [dns]\nlisten = [\"127.0.0.1:{dns}\"]\n\
                 [proxy]\nlisten = [\"127.0.0.1:{https}\"]\nhttp_listen = [\"127.0.0.1:{http}\"]\nfirst_byte_timeout = \"1s\"\n\
                 [health]\npath = \"/\"\ninterval = \"300ms\"\n\
                 [admin]\nsocket = \"{}\"\n{admin}\
                 [monitor]\nsources = [\"host\"]\n{monitor}{extra}",
                socket.display()
            ),
        )
        .unwrap();
        Self {
            _tmp: tmp,
            state,
            config,
            socket,
            dns,
            https,
            http,
        }
    }

    pub(crate) fn cmd(&self) -> Command {
        let mut c = conduit(&self.config);
        c.arg("--dir").arg(&self.state);
        c
    }

    pub(crate) fn serve(&self) -> Killed {
        let k = Killed(
            self.cmd()
                .arg("serve")
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_until(Duration::from_secs(10), || self.socket.exists());
        k
    }

    pub(crate) fn curl(&self, args: &[&str], url: String) -> (u16, String, Duration) {
        let start = Instant::now();
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "15", "-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(self.state.join("tls/root.pem"))
            .args(args)
            .arg(url)
            .output()
            .unwrap();
        let elapsed = start.elapsed();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned(), elapsed)
    }

    pub(crate) fn https(&self, host: &str, path: &str) -> (u16, String, Duration) {
        let resolve = format!("{host}:{}:127.0.0.1", self.https);
        self.curl(
            &["--resolve", &resolve],
            format!("https://{host}:{}{path}", self.https),
        )
    }

    pub(crate) fn http(&self, host: &str, path: &str) -> (u16, String, Duration) {
        let resolve = format!("{host}:{}:127.0.0.1", self.http);
        self.curl(
            &["--resolve", &resolve],
            format!("http://{host}:{}{path}", self.http),
        )
    }
}

/// `dig +short NAME` against the site's DNS listener: the answers, one per line.
pub(crate) fn dig(site: &Site, name: &str) -> String {
    let out = Command::new("dig")
        .args(["+short", "+time=1", "+tries=1", "-p"])
        .arg(site.dns.to_string())
        .args(["@127.0.0.1", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The running gateway's `/metrics` (from the admin socket).
pub(crate) fn metrics(site: &Site) -> String {
    let doc = Document::admin_api(env!("CARGO_MANIFEST_DIR")).unwrap();
    admin(&doc, &site.socket, "GET", "/metrics", None, &[]).body
}

/// Whether the tools a test needs are `here`; CI installs them all (`what` names them), so
/// there a missing one fails instead of skipping.
pub(crate) fn present(here: bool, what: &str) -> bool {
    if !here {
        assert_eq!(std::env::var_os("CI"), None, "CI must install {what}");
    }
    here
}

/// Starts a Prometheus-family server (Prometheus, Alertmanager) on loopback: its
/// configuration file, its data under `data`, listening on a free port; the port and the
/// process (killed when dropped).
pub(crate) fn prometheus_server(
    program: &str,
    config: &Path,
    data_flag: &str,
    data: &Path,
    extra: &[&str],
) -> (u16, Killed) {
    let port = free_port();
    let child = Command::new(program)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("{data_flag}={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (port, Killed(child))
}

/// A static upstream serving `index.html` (and its directory, kept alive with it).
pub(crate) struct Upstream {
    pub(crate) port: u16,
    _server: Killed,
    _www: tempfile::TempDir,
}

/// Starts a static upstream whose `index.html` is `body`.
pub(crate) fn upstream(body: &str) -> Upstream {
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), body).unwrap();
    let port = free_port();
    let server = conduit_test_support::process::http_server(port, www.path());
    Upstream {
        port,
        _server: server,
        _www: www,
    }
}

impl Site {
    /// Registers `name` → `upstream` with `conduit register` (which must succeed).
    pub(crate) fn register(&self, name: &str, upstream: &Upstream) {
        ok(self
            .cmd()
            .args(["register", "--name", name, "--upstream"])
            .arg(format!("127.0.0.1:{}", upstream.port))
            .output()
            .unwrap());
    }
}

/// One answer of the admin API: status, the response headers, the body.
pub(crate) struct Answer {
    pub(crate) code: u16,
    pub(crate) headers: String,
    pub(crate) body: String,
}

impl Answer {
    /// The body as JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// A response header's value (case-insensitive name).
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// `METHOD path` on the admin socket with curl, with a JSON body and extra headers; a JSON
/// answer is checked against `docs/admin-api.yaml` for that path and status.
pub(crate) fn admin(
    doc: &Document,
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[&str],
) -> Answer {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("head");
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "-X",
        method,
        "-w",
        "\n%{http_code} %{content_type}",
        "-D",
    ])
    .arg(&head)
    .arg("--unix-socket")
    .arg(socket);
    for h in headers {
        c.args(["-H", h]);
    }
    if let Some(b) = body {
        c.args(["-H", "content-type: application/json", "--data-binary", b]);
    }
    let text = ok(c.arg(format!("http://conduit{path}")).output().unwrap());
    let (body, tail) = text.rsplit_once('\n').unwrap();
    let (code, ctype) = tail.split_once(' ').unwrap();
    let code: u16 = code.parse().unwrap();
    if ctype.starts_with("application/json") {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let checked = match doc.response_schema(method, path, code) {
            Ok(_) => doc.check(method, path, code, &v),
            Err(_) if code >= 400 => doc.validate(doc.component("ApiError").unwrap(), &v, ""),
            Err(m) => Err(m),
        };
        if let Err(m) = checked {
            panic!("{method} {path} ({code}) does not match docs/admin-api.yaml: {m}\n{body}");
        }
    }
    Answer {
        code,
        headers: std::fs::read_to_string(&head).unwrap_or_default(),
        body: body.to_owned(),
    }
}
