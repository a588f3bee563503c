//! Other processes' writes: a thread that reloads the file on every change notification
//! (inotify/kqueue, with the `notify` feature) or poll tick.

use std::path::Path;
use std::sync::{Arc, Weak, mpsc};
use std::time::Duration;

use super::Inner;
use super::disk::{Stamp, stamp};
use crate::RegistryError;

pub(super) fn spawn_follower(inner: &Arc<Inner>) -> Result<(), RegistryError> {
    let weak = Arc::downgrade(inner);
    let (tx, rx) = mpsc::channel::<()>();
    let notifier = if inner.options.notifications {
        start_notifier(&inner.paths.dir, tx)
    } else {
        start_notifier_none(tx)
    };
    let poll = inner.options.poll_interval;
    std::thread::Builder::new()
        .name("conduit-registry-follow".to_owned())
        .spawn(move || follow(weak, rx, poll, notifier))
        .map(drop)
        .map_err(|e| RegistryError::io("start follower thread for", &inner.paths.file, e))
}

/// Reloads on every notification or poll tick; `Inner::reload` itself skips a file whose
/// identity matches the version in memory, so an unchanged file costs one `stat`.
fn follow(weak: Weak<Inner>, rx: mpsc::Receiver<()>, poll: Duration, _notifier: Notifier) {
    let mut warned: Option<Stamp> = None;
    loop {
        match rx.recv_timeout(poll) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            // The notifier is gone: keep polling.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                #[allow(clippy::disallowed_methods, reason = "dedicated follower thread")]
                std::thread::sleep(poll);
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        match inner.reload() {
            Ok(_) => warned = None,
            Err(error) => {
                // Warn once per bad version of the file, not on every tick.
                let now = stamp(&inner.paths.file);
                if warned != now {
                    tracing::warn!(%error, "ignoring an unreadable registry file; keeping the last good state");
                    warned = now;
                }
            }
        }
    }
}

#[cfg(feature = "notify")]
type Notifier = Option<notify::RecommendedWatcher>;
#[cfg(not(feature = "notify"))]
type Notifier = ();

#[cfg(feature = "notify")]
fn start_notifier(dir: &Path, tx: mpsc::Sender<()>) -> Notifier {
    use notify::Watcher;
    let mut w = match notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
        let _ = tx.send(());
    }) {
        Ok(w) => w,
        Err(error) => {
            tracing::debug!(%error, "file notifications unavailable; polling the registry file");
            return None;
        }
    };
    match w.watch(dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(w),
        Err(error) => {
            tracing::debug!(%error, "file notifications unavailable; polling the registry file");
            None
        }
    }
}

fn start_notifier_none(tx: mpsc::Sender<()>) -> Notifier {
    drop(tx); // the follower sees a disconnected channel and polls
    Default::default()
}

#[cfg(not(feature = "notify"))]
fn start_notifier(_dir: &Path, tx: mpsc::Sender<()>) -> Notifier {
    start_notifier_none(tx)
}
