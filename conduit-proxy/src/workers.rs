//! The threads that serve client connections. With more than one core the proxy serves on
//! several, as nginx runs one worker process per core: the runtime
//! [`ProxyServer::run`](crate::ProxyServer::run) is called on, and one single-threaded
//! runtime per further core, each on an OS thread of its own. The accept loops stay on the
//! caller's runtime; each admitted connection goes to the thread with the fewest open, and
//! that thread's runtime owns it to its end: its socket, its TLS session, its requests and
//! the upstream connections it opens. No work-stealing scheduler, no task moving between
//! threads (a multi-thread runtime with one worker was measured 0-9 % slower than a
//! single-threaded one). A proxy pinned to one core serves on the caller's runtime alone,
//! exactly as with one thread.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::metrics::Counters;

/// The most threads `threads = 0` gives: one per core this process may run on (its CPU
/// affinity and quota), at most this many.
const MAX_AUTO_THREADS: usize = 16;

/// The most threads a configuration may ask for.
pub(crate) const MAX_THREADS: usize = 1024;

thread_local! {
    /// This thread's index among the serving threads; 0 on every thread that is not an
    /// extra one (the caller's runtime, blocking threads, the rest of the program).
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The serving thread this code runs on (0 on any thread that is not an extra one).
pub(crate) fn current() -> usize {
    INDEX.with(Cell::get)
}

/// The serving threads `configured` asks for (0: one per available core, at most 16).
pub(crate) fn count(configured: usize) -> usize {
    if configured > 0 {
        return configured.min(MAX_THREADS);
    }
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_AUTO_THREADS)
}

/// The serving threads of one running proxy: the caller's runtime (index 0) and the extra
/// ones. Dropping it stops the extra threads (their runtimes drop what is left on them).
pub(crate) struct Workers {
    extra: Vec<Extra>,
    counters: Arc<Counters>,
    /// Where the search for the least-loaded thread starts, so that ties rotate.
    next: AtomicUsize,
}

/// One extra thread: where its connections are spawned, how it is told to stop, and how it
/// says it has.
struct Extra {
    handle: Handle,
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Workers {
    /// Starts `threads - 1` extra threads. One that cannot start is left out (with a
    /// warning): the others, and the caller's runtime, serve.
    pub(crate) fn start(threads: usize, counters: Arc<Counters>) -> Self {
        let extra = (1..threads)
            .filter_map(|i| match start_one(i) {
                Ok(e) => Some(e),
                Err(error) => {
                    tracing::warn!(%error, thread = i, "cannot start a proxy thread; serving on fewer");
                    None
                }
            })
            .collect();
        Self {
            extra,
            counters,
            next: AtomicUsize::new(0),
        }
    }

    /// The thread with the fewest client connections open (ties taken in turn).
    fn pick(&self) -> usize {
        let n = self.extra.len() + 1;
        if n == 1 {
            return 0;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|&i| self.counters.open_on(i))
            .unwrap_or(0)
    }

    /// Serves `tcp` with `serve` on the least-loaded thread, counted among its open
    /// connections until `serve` ends.
    pub(crate) fn spawn<F, Fut>(&self, tcp: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let i = self.pick();
        let open = Open::new(Arc::clone(&self.counters), i);
        let Some(extra) = i.checked_sub(1).and_then(|e| self.extra.get(e)) else {
            tokio::spawn(async move {
                serve(tcp).await;
                drop(open);
            });
            return;
        };
        // Out of this runtime's reactor and into the other thread's.
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(error) => {
                tracing::debug!(%error, "cannot hand a connection to a proxy thread");
                return;
            }
        };
        extra.handle.spawn(async move {
            match TcpStream::from_std(std) {
                Ok(tcp) => serve(tcp).await,
                Err(error) => tracing::debug!(%error, "cannot serve a handed-over connection"),
            }
            drop(open);
        });
    }

    /// Stops the extra threads and waits until each has ended; connections still open on
    /// them are closed.
    pub(crate) async fn stop(self) {
        // Every thread told first (they drain in parallel), then all joined by one task on
        // the blocking pool: after dropping its runtime a thread still runs its
        // thread-locals' destructors, briefly, and the joins must not hold this runtime.
        let ending: Vec<_> = self
            .extra
            .into_iter()
            .map(|Extra { stop, thread, .. }| {
                drop(stop);
                thread
            })
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for thread in ending {
                let _ = thread.join();
            }
        })
        .await;
    }
}

fn start_one(i: usize) -> std::io::Result<Extra> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("conduit-proxy-{i}"))
        .spawn(move || {
            INDEX.set(i);
            // Until told (or the proxy is gone); then the runtime drops what is left.
            runtime.block_on(async {
                let _ = stopped.await;
            });
            drop(runtime);
        })?;
    Ok(Extra {
        handle,
        stop,
        thread,
    })
}

/// One connection counted as open on its thread while it lives.
struct Open {
    counters: Arc<Counters>,
    thread: usize,
}

impl Open {
    fn new(counters: Arc<Counters>, thread: usize) -> Self {
        counters.opened_on(thread, 1);
        Self { counters, thread }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.counters.opened_on(self.thread, -1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_one_per_available_core_and_a_number_is_taken_as_given() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(count(0), cores.min(MAX_AUTO_THREADS));
        assert_eq!(count(3), 3);
        assert_eq!(count(5000), MAX_THREADS);
    }

    #[tokio::test]
    async fn connections_go_to_the_least_loaded_thread_in_turn_and_threads_stop() {
        let counters = Arc::new(Counters::new(3));
        let workers = Workers::start(3, Arc::clone(&counters));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (release, held) = tokio::sync::watch::channel(false);
        let mut clients = Vec::new();
        for _ in 0..6 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            let (tcp, _) = listener.accept().await.unwrap();
            let (tx, mut held) = (tx.clone(), held.clone());
            workers.spawn(tcp, move |tcp| async move {
                let _ = tx.send((current(), std::thread::current().id()));
                let _ = held.wait_for(|r| *r).await;
                drop(tcp);
            });
        }
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(rx.recv().await.unwrap());
        }
        // Two connections on each thread, each thread a different OS thread.
        let mut per = [0; 3];
        for (i, _) in &seen {
            per[*i] += 1;
        }
        assert_eq!(per, [2, 2, 2]);
        assert_eq!(counters.snapshot().connections_open_by_thread, [2, 2, 2]);
        let mut ids: Vec<_> = seen.iter().map(|(_, id)| *id).collect();
        ids.sort_by_key(|id| format!("{id:?}"));
        ids.dedup();
        assert_eq!(ids.len(), 3);
        release.send(true).unwrap();
        workers.stop().await;
        // The extra threads' connections went with their runtimes; this one's end when run.
        for _ in 0..100 {
            if counters.open_on(0) == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(counters.snapshot().connections_open_by_thread, [0, 0, 0]);
        drop(clients);
    }
}
