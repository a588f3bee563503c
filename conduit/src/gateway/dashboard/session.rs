//! Dashboard sessions: an opaque id in a cookie (HttpOnly, Secure, SameSite=Strict) for a
//! token that logged in. The session keeps the token's hash, never its secret, and is dead
//! as soon as that token is revoked, or when it expires; each has its own CSRF token.
//! Sessions are kept in the state directory (`dashboard-sessions.json`, 0600, written
//! atomically, by the SHA-256 of their ids: the file holds no usable cookie), so a restart
//! of the gateway logs nobody out.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The cookie's name.
pub(super) const COOKIE: &str = "conduit_session";
/// Sessions kept at once; the oldest goes first when a login would pass it.
const MAX_SESSIONS: usize = 4096;

/// One login.
#[derive(Debug, Clone)]
pub(super) struct Session {
    /// SHA-256 of the token it logged in with (hex).
    pub(super) token_sha256: String,
    /// What mutations must carry (`X-CSRF-Token`, or the form field `csrf`).
    pub(super) csrf: String,
    expires: Instant,
    /// The same moment in Unix seconds (what the file keeps).
    expires_unix: i64,
}

/// A session as the file keeps it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    id_sha256: String,
    token_sha256: String,
    csrf: String,
    expires_unix: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredFile {
    sessions: Vec<Stored>,
}

/// Every live session, by the SHA-256 of its id.
#[derive(Debug)]
pub(super) struct Sessions {
    lifetime: Duration,
    map: Mutex<HashMap<String, Session>>,
    file: Option<PathBuf>,
    /// One write of the file at a time (each writes the state as it is then).
    writes: tokio::sync::Mutex<()>,
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Sessions {
    /// The sessions kept in `file` (none when it is missing or cannot be read: a damaged
    /// file logs everyone out, with a warning, and is replaced at the next login).
    pub(super) fn open(lifetime: Duration, file: Option<PathBuf>) -> Self {
        let mut map = HashMap::new();
        if let Some(path) = &file {
            match std::fs::read(path) {
                Ok(bytes) => match serde_json::from_slice::<StoredFile>(&bytes) {
                    Ok(stored) => {
                        let (now, now_unix) = (Instant::now(), unix_now());
                        for s in stored.sessions {
                            let left = s.expires_unix.saturating_sub(now_unix);
                            let Ok(left) = u64::try_from(left) else {
                                continue;
                            };
                            let left = Duration::from_secs(left).min(lifetime);
                            if left.is_zero() {
                                continue;
                            }
                            map.insert(
                                s.id_sha256,
                                Session {
                                    token_sha256: s.token_sha256,
                                    csrf: s.csrf,
                                    expires: now + left,
                                    expires_unix: s.expires_unix,
                                },
                            );
                        }
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "dashboard sessions unreadable: everyone logs in again");
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "dashboard sessions unreadable: everyone logs in again");
                }
            }
        }
        Self {
            lifetime,
            map: Mutex::new(map),
            file,
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// How long a session lasts.
    pub(super) fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A new session for the token with this hash: its id (kept before this returns).
    pub(super) async fn create(&self, token_sha256: String) -> String {
        let now = Instant::now();
        let session = Session {
            token_sha256,
            csrf: crate::tokens::random_hex(),
            expires: now + self.lifetime,
            expires_unix: unix_now()
                .saturating_add(i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX)),
        };
        let id = crate::tokens::random_hex();
        {
            let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            map.retain(|_, s| s.expires > now);
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.expires)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
            map.insert(crate::tokens::hash_of(&id), session);
        }
        self.persist().await;
        id
    }

    /// The live session with this id.
    pub(super) fn get(&self, id: &str) -> Option<Session> {
        let key = crate::tokens::hash_of(id);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends a session (kept before this returns).
    pub(super) async fn remove(&self, id: &str) {
        let gone = self
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&crate::tokens::hash_of(id))
            .is_some();
        if gone {
            self.persist().await;
        }
    }

    /// Writes the live sessions to the file (a failure is logged: the sessions still work
    /// until the gateway restarts).
    async fn persist(&self) {
        let Some(path) = self.file.clone() else {
            return;
        };
        let _one = self.writes.lock().await;
        let stored = {
            let now = Instant::now();
            let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
            StoredFile {
                sessions: map
                    .iter()
                    .filter(|(_, s)| s.expires > now)
                    .map(|(k, s)| Stored {
                        id_sha256: k.clone(),
                        token_sha256: s.token_sha256.clone(),
                        csrf: s.csrf.clone(),
                        expires_unix: s.expires_unix,
                    })
                    .collect(),
            }
        };
        let bytes = match serde_json::to_vec(&stored) {
            Ok(b) => b,
            Err(error) => {
                tracing::error!(%error, "cannot encode the dashboard sessions");
                return;
            }
        };
        let shown = path.display().to_string();
        match tokio::task::spawn_blocking(move || crate::state::write_atomic(&path, &bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(path = %shown, %error, "cannot keep the dashboard sessions: a restart will log them out");
            }
            Err(error) => tracing::warn!(%error, "the dashboard sessions' write did not finish"),
        }
    }
}

/// The session id a request's `Cookie` headers carry.
pub(super) fn cookie_of(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a new session.
pub(super) fn set_cookie(id: &str, lifetime: Duration) -> String {
    format!(
        "{COOKIE}={id}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        lifetime.as_secs()
    )
}

/// `Set-Cookie` that ends the session in the browser.
pub(super) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_session_lives_its_lifetime_and_no_longer() {
        let s = Sessions::open(Duration::from_secs(60), None);
        let id = s.create("ab".into()).await;
        assert_eq!(id.len(), 64);
        assert_eq!(s.get(&id).map(|x| x.token_sha256).as_deref(), Some("ab"));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(s.get(&id).map(|x| x.token_sha256), None);
        let id = s.create("cd".into()).await;
        s.remove(&id).await;
        assert_eq!(s.get(&id).map(|x| x.token_sha256), None);
    }

    #[tokio::test]
    async fn sessions_outlive_a_restart_and_the_file_holds_no_cookie() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dashboard-sessions.json");
        let first = Sessions::open(Duration::from_secs(3600), Some(path.clone()));
        let id = first.create("ab".into()).await;
        let gone = first.create("cd".into()).await;
        first.remove(&gone).await;
        let csrf = first.get(&id).map(|x| x.csrf);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&id), "only the id's hash is kept");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Sessions::open(Duration::from_secs(3600), Some(path.clone()));
        assert_eq!(again.get(&id).map(|x| x.csrf), csrf);
        assert_eq!(again.get(&gone).map(|x| x.csrf), None);
        std::fs::write(&path, b"not json").unwrap();
        let damaged = Sessions::open(Duration::from_secs(3600), Some(path));
        assert_eq!(
            damaged.get(&id).map(|x| x.csrf),
            None,
            "a damaged file logs everyone out"
        );
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let req = http::Request::builder()
            .header("cookie", "a=b; conduit_session=xyz; c=d")
            .body(())
            .unwrap();
        assert_eq!(cookie_of(req.headers()), Some("xyz"));
        let none = http::Request::builder()
            .header("cookie", "conduit_session=")
            .body(())
            .unwrap();
        assert_eq!(cookie_of(none.headers()), None);
        assert_eq!(
            set_cookie("id", Duration::from_secs(3600)),
            "conduit_session=id; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Strict"
        );
    }
}
