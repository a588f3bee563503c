//! Validated DNS names: [`ServiceName`] (one label) and [`DomainName`] (a zone or an FQDN).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest DNS label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest domain name in presentation form without the trailing dot (RFC 1035 §2.3.4).
pub const MAX_DOMAIN_LEN: usize = 253;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name (or one of its labels) is empty.
    #[error("{kind} {input:?} is invalid: empty label")]
    Empty {
        /// What was being parsed (`service name`, `domain`).
        kind: &'static str,
        /// The rejected input.
        input: String,
    },
    /// A label is longer than 63 characters.
    #[error("{kind} {input:?} is invalid: label {label:?} is {len} characters long (at most 63)")]
    LabelTooLong {
        /// What was being parsed.
        kind: &'static str,
        /// The rejected input.
        input: String,
        /// The offending label.
        label: String,
        /// Its length.
        len: usize,
    },
    /// The whole domain is longer than 253 characters.
    #[error("{kind} {input:?} is invalid: {len} characters long (at most 253)")]
    TooLong {
        /// What was being parsed.
        kind: &'static str,
        /// The rejected input.
        input: String,
        /// Its length.
        len: usize,
    },
    /// A character outside `[a-z0-9-]` (after folding ASCII upper case).
    #[error("{kind} {input:?} is invalid: character {ch:?} is not allowed (only a-z, 0-9 and '-')")]
    BadChar {
        /// What was being parsed.
        kind: &'static str,
        /// The rejected input.
        input: String,
        /// The offending character.
        ch: char,
    },
    /// A label starts or ends with `-`.
    #[error("{kind} {input:?} is invalid: a label must not start or end with '-'")]
    Hyphen {
        /// What was being parsed.
        kind: &'static str,
        /// The rejected input.
        input: String,
    },
}

/// Checks one label and appends its lower-case form to `out`.
pub(crate) fn push_label(
    kind: &'static str,
    input: &str,
    label: &str,
    out: &mut String,
) -> Result<(), NameError> {
    if label.is_empty() {
        return Err(NameError::Empty {
            kind,
            input: input.to_owned(),
        });
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(NameError::LabelTooLong {
            kind,
            input: input.to_owned(),
            label: label.to_owned(),
            len: label.len(),
        });
    }
    for ch in label.chars() {
        let c = ch.to_ascii_lowercase();
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(NameError::BadChar {
                kind,
                input: input.to_owned(),
                ch,
            });
        }
        out.push(c);
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(NameError::Hyphen {
            kind,
            input: input.to_owned(),
        });
    }
    Ok(())
}

/// A service's name: one DNS label.
///
/// Rules: 1 to 63 characters from `[a-z0-9-]`, not starting or ending with `-`.
///
/// **Upper case is folded, not refused.** DNS names are case-insensitive (RFC 4343), so
/// `Grafana` and `grafana` must never be two services; parsing lower-cases ASCII letters and
/// every name is stored, compared and displayed in lower case. Anything else outside the
/// alphabet (`_`, `.`, spaces, non-ASCII) is refused with [`NameError`].
///
/// ```
/// use conduit_registry::ServiceName;
/// let name: ServiceName = "Grafana".parse()?;
/// assert_eq!(name.as_str(), "grafana");
/// assert!(matches!("my_service".parse::<ServiceName>(), Err(conduit_registry::NameError::BadChar { ch: '_', .. })));
/// # Ok::<(), conduit_registry::NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceName(Box<str>);

impl ServiceName {
    /// Parses and validates a service name, folding ASCII upper case.
    ///
    /// # Errors
    /// [`NameError`] naming the rule that was broken.
    pub fn new(input: &str) -> Result<Self, NameError> {
        let mut out = String::with_capacity(input.len());
        push_label("service name", input, input, &mut out)?;
        Ok(Self(out.into_boxed_str()))
    }

    /// The name, in lower case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ServiceName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ServiceName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<ServiceName> for String {
    fn from(n: ServiceName) -> Self {
        n.0.into()
    }
}

impl AsRef<str> for ServiceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A domain name of one or more labels: a zone (`internal`, `lab.internal`) or a fully
/// qualified service name (`grafana.internal`).
///
/// Each label follows the [`ServiceName`] rules; upper case is folded; one trailing dot is
/// accepted and dropped; at most 253 characters in all. Shown without the trailing dot.
///
/// ```
/// use conduit_registry::DomainName;
/// let zone: DomainName = "Internal.".parse()?;
/// assert_eq!(zone.to_string(), "internal");
/// assert!(!zone.is_mdns());
/// assert!("printer.local".parse::<DomainName>()?.is_mdns());
/// # Ok::<(), conduit_registry::NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(Box<str>);

impl DomainName {
    /// Parses and validates a domain name.
    ///
    /// # Errors
    /// [`NameError`] naming the rule that was broken.
    pub fn new(input: &str) -> Result<Self, NameError> {
        let kind = "domain";
        let trimmed = input.strip_suffix('.').unwrap_or(input);
        if trimmed.len() > MAX_DOMAIN_LEN {
            return Err(NameError::TooLong {
                kind,
                input: input.to_owned(),
                len: trimmed.len(),
            });
        }
        let mut out = String::with_capacity(trimmed.len());
        for (i, label) in trimmed.split('.').enumerate() {
            if i > 0 {
                out.push('.');
            }
            push_label(kind, input, label, &mut out)?;
        }
        Ok(Self(out.into_boxed_str()))
    }

    /// The default zone, `internal` (reserved by ICANN for private use).
    pub fn internal() -> Self {
        Self("internal".into())
    }

    /// `<name>.<self>`: the FQDN of a service in this zone.
    ///
    /// # Errors
    /// [`NameError::TooLong`] when the result exceeds 253 characters.
    pub fn child(&self, name: &ServiceName) -> Result<Self, NameError> {
        let joined = format!("{name}.{self}");
        if joined.len() > MAX_DOMAIN_LEN {
            return Err(NameError::TooLong {
                kind: "domain",
                len: joined.len(),
                input: joined,
            });
        }
        Ok(Self(joined.into_boxed_str()))
    }

    /// Whether `self` equals `zone` or lies below it (`a.internal` is in `internal`).
    pub fn is_within(&self, zone: &Self) -> bool {
        let (s, z) = (&*self.0, &*zone.0);
        s == z
            || (s.len() > z.len() && s.ends_with(z) && s.as_bytes()[s.len() - z.len() - 1] == b'.')
    }

    /// Whether this name is under `local`, the multicast-DNS domain (RFC 6762): usable, but
    /// macOS and systemd-resolved send it to mDNS first, which stalls lookups for seconds.
    pub fn is_mdns(&self) -> bool {
        self.is_within(&Self("local".into()))
    }

    /// The name, in lower case, without a trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The labels, left to right.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

impl FromStr for DomainName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for DomainName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<DomainName> for String {
    fn from(n: DomainName) -> Self {
        n.0.into()
    }
}

impl From<ServiceName> for DomainName {
    fn from(n: ServiceName) -> Self {
        Self(n.0)
    }
}

impl AsRef<str> for DomainName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_rules() {
        assert_eq!(ServiceName::new("grafana-2").unwrap().as_str(), "grafana-2");
        assert_eq!(ServiceName::new("OLLAMA").unwrap().as_str(), "ollama");
        assert_eq!(
            ServiceName::new(&"a".repeat(63)).unwrap().as_str().len(),
            63
        );
        assert!(matches!(ServiceName::new(""), Err(NameError::Empty { .. })));
        assert!(matches!(
            ServiceName::new(&"a".repeat(64)),
            Err(NameError::LabelTooLong { len: 64, .. })
        ));
        assert!(matches!(
            ServiceName::new("-x"),
            Err(NameError::Hyphen { .. })
        ));
        assert!(matches!(
            ServiceName::new("x-"),
            Err(NameError::Hyphen { .. })
        ));
        assert!(matches!(
            ServiceName::new("my_svc"),
            Err(NameError::BadChar { ch: '_', .. })
        ));
        assert!(matches!(
            ServiceName::new("a.b"),
            Err(NameError::BadChar { ch: '.', .. })
        ));
        assert!(matches!(
            ServiceName::new("café"),
            Err(NameError::BadChar { ch: 'é', .. })
        ));
        let msg = ServiceName::new("my_svc").unwrap_err().to_string();
        assert_eq!(
            msg,
            "service name \"my_svc\" is invalid: character '_' is not allowed (only a-z, 0-9 and '-')"
        );
    }

    #[test]
    fn domain_rules() {
        let d = DomainName::new("Lab.Internal.").unwrap();
        assert_eq!(d.as_str(), "lab.internal");
        assert_eq!(d.labels().collect::<Vec<_>>(), ["lab", "internal"]);
        assert!(matches!(
            DomainName::new("a..b"),
            Err(NameError::Empty { .. })
        ));
        assert!(matches!(DomainName::new("."), Err(NameError::Empty { .. })));
        let long = vec!["a".repeat(63); 4].join(".");
        assert!(matches!(
            DomainName::new(&long),
            Err(NameError::TooLong { len: 255, .. })
        ));
        let zone = DomainName::internal();
        let fqdn = zone.child(&"grafana".parse().unwrap()).unwrap();
        assert_eq!(fqdn.as_str(), "grafana.internal");
        assert!(fqdn.is_within(&zone));
        assert!(zone.is_within(&zone));
        assert!(!DomainName::new("xinternal").unwrap().is_within(&zone));
        assert!(DomainName::new("a.local").unwrap().is_mdns());
        assert!(!zone.is_mdns());
    }
}
