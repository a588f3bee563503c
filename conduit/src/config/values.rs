//! Values written in a configuration, a flag or an environment variable: networks, ports,
//! resolvers, sizes, and TOML errors turned into one line naming the key.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use conduit_proxy::Cidr;

use super::ConfigError;

/// `10.0.0.0/8`, `fd00::/8` or a bare address.
pub(super) fn parse_cidr(s: &str) -> Option<Cidr> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
        None => {
            let a = s.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    Cidr::new(addr, prefix).ok()
}

/// A value of a flag, an environment variable or `.env.conduit` that is not what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not {expected}")]
pub struct InvalidValue {
    /// What was given.
    pub value: String,
    /// What it must be.
    pub expected: &'static str,
}

/// A port number from an environment variable or flag.
///
/// # Errors
/// [`InvalidValue`] naming the value.
pub fn parse_port(value: &str) -> Result<u16, InvalidValue> {
    value.trim().parse().map_err(|_| InvalidValue {
        value: value.to_owned(),
        expected: "a port (1-65535)",
    })
}

/// The same listeners on another port (the original tool's `*_PORT` variables); loopback
/// when there were none.
pub fn with_port(listen: &[SocketAddr], port: u16) -> Vec<SocketAddr> {
    if listen.is_empty() {
        return vec![SocketAddr::from(([127, 0, 0, 1], port))];
    }
    listen
        .iter()
        .map(|a| SocketAddr::new(a.ip(), port))
        .collect()
}

/// `1.1.1.1,10.0.0.2:5353`: resolvers, port 53 when not given.
///
/// # Errors
/// [`InvalidValue`] naming the entry.
pub fn parse_forwarders(value: &str) -> Result<Vec<SocketAddr>, InvalidValue> {
    split_list(value)
        .iter()
        .map(|a| {
            a.parse::<SocketAddr>()
                .or_else(|_| a.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| InvalidValue {
                    value: a.clone(),
                    expected: "an address (IP or IP:PORT)",
                })
        })
        .collect()
}

pub(super) fn split_list(value: &str) -> Vec<String> {
    value
        .split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Turns a TOML error into one line naming the file, the line and the key.
pub(super) fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().replace('\n', " ");
    let Some(span) = e.span() else {
        return ConfigError::Parse {
            path: path.to_owned(),
            line: None,
            key: None,
            message,
        };
    };
    let before = &text[..span.start.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    // The section: the last `[table]` header above the error.
    let section = text
        .lines()
        .take(line_no.saturating_sub(1))
        .filter_map(|l| {
            let l = l.trim();
            (l.starts_with('[') && !l.starts_with("[[")).then(|| l.trim_matches(['[', ']', ' ']))
        })
        .last()
        .map(str::to_owned);
    // The key: named in the message (unknown field `x`), else the one on the line.
    let key = message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
        .map(|(k, _)| k.to_owned())
        .or_else(|| {
            line.split_once('=')
                .map(|(k, _)| k.trim().to_owned())
                .filter(|k| !k.is_empty() && !k.starts_with('['))
        });
    let header = line.trim();
    let key = if header.starts_with('[') {
        // A table header: its own dotted name is the key.
        Some(header.trim_matches(['[', ']', ' ']).to_owned())
    } else {
        match (section, key) {
            (Some(s), Some(k)) => Some(format!("{s}.{k}")),
            (_, k) => k,
        }
    };
    ConfigError::Parse {
        path: path.to_owned(),
        line: Some(line_no),
        key,
        message,
    }
}

/// Sizes: a number of bytes, or a string with a unit (`"512MiB"`, `"1GiB"`, `"10MB"`),
/// or `"unlimited"`.
pub(super) mod byte_size {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(in crate::config) fn serialize<S: Serializer>(
        v: &Option<u64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_u64(*n),
            None => s.serialize_str("unlimited"),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<u64>, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Some(n)),
            Raw::Text(t) => parse(&t).map_err(D::Error::custom),
        }
    }

    /// Why a size cannot be read.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub(in crate::config) enum SizeError {
        /// No number in front.
        #[error("{0:?} is not a size (write 1048576, \"512MiB\" or \"1GiB\")")]
        NotASize(String),
        /// A unit we do not know.
        #[error("{0:?} is not a size unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)")]
        Unit(String),
        /// More than 2^64 bytes.
        #[error("{0:?} is too large")]
        TooLarge(String),
    }

    pub(in crate::config) fn parse(t: &str) -> Result<Option<u64>, SizeError> {
        let t = t.trim();
        if t.eq_ignore_ascii_case("unlimited") || t.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| SizeError::NotASize(t.to_owned()))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "kib" | "k" => 1 << 10,
            "mb" => 1_000_000,
            "mib" | "m" => 1 << 20,
            "gb" => 1_000_000_000,
            "gib" | "g" => 1 << 30,
            "tb" => 1_000_000_000_000,
            "tib" | "t" => 1 << 40,
            other => return Err(SizeError::Unit(other.to_owned())),
        };
        n.checked_mul(mult)
            .map(Some)
            .ok_or_else(|| SizeError::TooLarge(t.to_owned()))
    }
}
