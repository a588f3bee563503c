//! Dashboard sessions: an opaque id in a cookie (HttpOnly, Secure, SameSite=Strict) for a
//! token that logged in. The session keeps the token's hash, never its secret, and is dead
//! as soon as that token is revoked, or when it expires; each has its own CSRF token.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

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
    created: Instant,
    expires: Instant,
}

/// Every live session, by id.
#[derive(Debug)]
pub(super) struct Sessions {
    lifetime: Duration,
    map: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes, hex.
fn random_id() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    pub(super) fn new(lifetime: Duration) -> Self {
        Self {
            lifetime,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// How long a session lasts.
    pub(super) fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A new session for the token with this hash: its id and the session.
    pub(super) fn create(&self, token_sha256: String) -> (String, Session) {
        let now = Instant::now();
        let session = Session {
            token_sha256,
            csrf: random_id(),
            created: now,
            expires: now + self.lifetime,
        };
        let id = random_id();
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), session.clone());
        (id, session)
    }

    /// The live session with this id.
    pub(super) fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub(super) fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

/// The session id a request's `Cookie` headers carry.
pub(super) fn cookie_of<B>(req: &http::Request<B>) -> Option<&str> {
    req.headers()
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
        let s = Sessions::new(Duration::from_secs(60));
        let (id, made) = s.create("ab".into());
        assert_eq!(id.len(), 64);
        assert_eq!(s.get(&id).map(|x| x.csrf), Some(made.csrf));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(s.get(&id).map(|x| x.token_sha256), None);
        let (id, _) = s.create("cd".into());
        s.remove(&id);
        assert_eq!(s.get(&id).map(|x| x.token_sha256), None);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let req = http::Request::builder()
            .header("cookie", "a=b; conduit_session=xyz; c=d")
            .body(())
            .unwrap();
        assert_eq!(cookie_of(&req), Some("xyz"));
        let none = http::Request::builder()
            .header("cookie", "conduit_session=")
            .body(())
            .unwrap();
        assert_eq!(cookie_of(&none), None);
        assert_eq!(
            set_cookie("id", Duration::from_secs(3600)),
            "conduit_session=id; Path=/; Max-Age=3600; HttpOnly; Secure; SameSite=Strict"
        );
    }
}
