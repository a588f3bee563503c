//! DockerSource against podman's Docker-compatible API socket, started here: a running, an
//! exited and an unhealthy container (see ../shared/notes/podman-docker-api.md).

use std::process::Command;

use conduit_test_support::podman::{IMAGE, Service, ensure_image, podman};

use crate::have;

#[cfg(feature = "docker")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_exited_and_unhealthy_containers_through_podman() {
    use conduit_monitor::{AlertKind, AlertState, DockerSource, MetricSource, Thresholds, render};

    if !have("podman") || !std::path::Path::new("/bin/busybox").exists() && !have("busybox") {
        return;
    }
    ensure_image();
    let dir = tempfile::tempdir().unwrap();
    let suffix = std::process::id();
    let names: Vec<String> = ["up", "ex", "hc"]
        .iter()
        .map(|n| format!("conduit-{n}-{suffix}"))
        .collect();
    let mut service = Service::start(dir.path());
    service.names.clone_from(&names);
    let socket = service.socket.clone();
    let image = IMAGE;
    podman(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &names[0],
        image,
        "/bin/sleep",
        "300",
    ]);
    let _ = Command::new("podman")
        .args([
            "--runtime",
            "runc",
            "run",
            "--network",
            "none",
            "--name",
            &names[1],
            image,
            "/bin/sh",
            "-c",
            "exit 3",
        ])
        .output()
        .unwrap();
    podman(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &names[2],
        "--health-cmd",
        "/bin/sh -c \"exit 1\"",
        "--health-retries",
        "1",
        image,
        "/bin/sleep",
        "300",
    ]);
    let _ = Command::new("podman")
        .args(["--runtime", "runc", "healthcheck", "run", &names[2]])
        .output()
        .unwrap();

    let uri = format!("unix://{}", socket.display());
    let source = DockerSource::new(&uri).unwrap();
    conduit_monitor::testing::source_contract(&source).await;
    let samples = source.sample().await.unwrap();
    let find = |name: &str| {
        samples
            .iter()
            .find(|s| s.text("name") == Some(name))
            .unwrap_or_else(|| panic!("{name} in {samples:?}"))
    };

    let up = find(&names[0]);
    assert_eq!(up.text("state"), Some("running"));
    assert_eq!(up.flag("running"), Some(true));
    assert_eq!(up.text("image"), Some(image));
    assert_eq!(up.number("restart_count"), Some(0.0));
    assert!(up.number("uptime_seconds").unwrap() >= 0.0);
    assert!(up.number("memory_used_bytes").is_some(), "{up:?}");
    assert_eq!(up.text("health"), None);

    let ex = find(&names[1]);
    assert_eq!(ex.text("state"), Some("exited"));
    assert_eq!(ex.flag("running"), Some(false));
    assert_eq!(ex.number("exit_code"), Some(3.0));
    assert_eq!(ex.number("cpu_usage_ratio"), None);

    let hc = find(&names[2]);
    assert_eq!(hc.text("state"), Some("running"));
    assert_eq!(hc.text("health"), Some("unhealthy"), "{hc:?}");

    let alerts = AlertState::new(Thresholds::default()).evaluate(&samples);
    assert!(
        alerts
            .iter()
            .any(|a| a.kind == AlertKind::ContainerUnhealthy && a.subject == names[2] && a.raised),
        "{alerts:?}"
    );
    let table = render::human(&samples);
    assert!(
        table.contains("CONTAINER") && table.contains(&names[2]) && table.contains("unhealthy"),
        "{table}"
    );

    // The second sample has a CPU delta for the running container, and is fast.
    let started = tokio::time::Instant::now();
    let again = source.sample().await.unwrap();
    let elapsed = started.elapsed();
    eprintln!("docker sample of {} containers: {elapsed:?}", again.len());
    let up = again
        .iter()
        .find(|s| s.text("name") == Some(names[0].as_str()))
        .unwrap();
    assert!(up.number("cpu_usage_ratio").is_some(), "{up:?}");

    // A socket that is not there: unavailable, with the path in the error.
    let missing = DockerSource::new("/nonexistent/docker.sock").unwrap();
    let e = missing.sample().await.unwrap_err().to_string();
    assert!(e.contains("/nonexistent/docker.sock"), "{e}");
}
