//! Shared by the example programs: completes on Ctrl-C or SIGTERM.

use std::future::Future;

/// Completes on Ctrl-C (SIGINT) or SIGTERM (what systemd and `kill` send). The handlers are
/// installed when this is called, not when the future is first polled: a signal that comes
/// while the program is still starting is not lost (nor does it kill the process outright).
pub(crate) fn shutdown() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(term) => {}
            () = wait(int) => {}
        }
    }
}
