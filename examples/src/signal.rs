//! Shared by the example programs: completes on Ctrl-C or SIGTERM.

/// Completes on Ctrl-C (SIGINT) or SIGTERM (what systemd and `kill` send).
pub(crate) async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
