//! Who is acting, from the operating system (never from `$USER`, which anyone can set):
//! the real user id of this process, or the peer of a unix-socket connection, by name.

/// The name of a user id (`root`), else `uid:N` when the user database has no entry.
pub fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => format!("uid:{uid}"),
    }
}

/// The name of this process's real user (what audit records of a local command carry).
///
/// ```
/// assert!(!conduit::identity::current_user().is_empty());
/// ```
pub fn current_user() -> String {
    user_name(nix::unistd::getuid().as_raw())
}
