//! Getting the root trusted: per-platform instructions, an Apple configuration profile, and
//! installation into a Linux system store.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::CaError;

/// How to trust the root on one platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TrustStep {
    /// The platform (`Debian/Ubuntu`, `RHEL/Fedora`, `macOS`, `Windows`, `Firefox (NSS)`, `iOS`).
    pub platform: &'static str,
    /// The commands to run, in order, with `root_pem` substituted.
    pub commands: Vec<String>,
    /// A note for the platform, if any.
    pub note: Option<&'static str>,
}

/// The exact commands that make `root_pem` (a path) trusted on each platform.
pub fn trust_instructions(root_pem: &Path, name: &str) -> Vec<TrustStep> {
    let p = root_pem.display();
    let file = name.to_ascii_lowercase().replace(' ', "-");
    vec![
        TrustStep {
            platform: "Debian/Ubuntu",
            commands: vec![
                format!("sudo cp {p} /usr/local/share/ca-certificates/{file}.crt"),
                "sudo update-ca-certificates".to_owned(),
            ],
            note: None,
        },
        TrustStep {
            platform: "RHEL/Fedora",
            commands: vec![
                format!("sudo cp {p} /etc/pki/ca-trust/source/anchors/{file}.pem"),
                "sudo update-ca-trust".to_owned(),
            ],
            note: None,
        },
        TrustStep {
            platform: "macOS",
            commands: vec![format!(
                "sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {p}"
            )],
            note: Some(
                "or open the .mobileconfig profile and approve it in System Settings > Privacy & Security > Profiles",
            ),
        },
        TrustStep {
            platform: "Windows",
            commands: vec![format!("certutil -addstore -f Root {p}")],
            note: Some(
                "in an elevated prompt; PowerShell: Import-Certificate -FilePath <file> -CertStoreLocation Cert:\\LocalMachine\\Root",
            ),
        },
        TrustStep {
            platform: "Firefox (NSS)",
            commands: vec![format!(
                "certutil -A -n \"{name}\" -t \"C,,\" -i {p} -d sql:$HOME/.mozilla/firefox/<profile>"
            )],
            note: Some(
                "certutil is in libnss3-tools; or set security.enterprise_roots.enabled=true to use the system store",
            ),
        },
        TrustStep {
            platform: "iOS",
            commands: vec!["open the .mobileconfig profile on the device".to_owned()],
            note: Some(
                "then Settings > General > About > Certificate Trust Settings: enable full trust for the root",
            ),
        },
    ]
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4 + data.len() / 48);
    for (i, c) in data.chunks(3).enumerate() {
        if i > 0 && i % 16 == 0 {
            out.push('\n');
        }
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(char::from(T[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn uuid() -> Result<String, CaError> {
    let mut b = crate::local::random_bytes()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An iOS/macOS configuration profile (`.mobileconfig`) that installs `root_der` as a
/// trusted root (`com.apple.security.root` payload).
///
/// # Errors
/// [`CaError::Random`] if no UUID can be drawn.
pub fn mobileconfig(root_der: &[u8], name: &str, identifier: &str) -> Result<String, CaError> {
    let (name, identifier) = (xml_escape(name), xml_escape(identifier));
    let (outer, inner) = (uuid()?, uuid()?);
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>PayloadContent</key>
	<array>
		<dict>
			<key>PayloadCertificateFileName</key>
			<string>root.cer</string>
			<key>PayloadContent</key>
			<data>
{data}
			</data>
			<key>PayloadDescription</key>
			<string>Adds the {name} root certificate</string>
			<key>PayloadDisplayName</key>
			<string>{name}</string>
			<key>PayloadIdentifier</key>
			<string>{identifier}.root</string>
			<key>PayloadType</key>
			<string>com.apple.security.root</string>
			<key>PayloadUUID</key>
			<string>{inner}</string>
			<key>PayloadVersion</key>
			<integer>1</integer>
		</dict>
	</array>
	<key>PayloadDisplayName</key>
	<string>{name}</string>
	<key>PayloadIdentifier</key>
	<string>{identifier}</string>
	<key>PayloadRemovalDisallowed</key>
	<false/>
	<key>PayloadType</key>
	<string>Configuration</string>
	<key>PayloadUUID</key>
	<string>{outer}</string>
	<key>PayloadVersion</key>
	<integer>1</integer>
</dict>
</plist>
"#,
        data = base64(root_der)
    ))
}

/// A Linux system trust store: where anchors go and the command that rebuilds the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinuxTrustStore {
    /// The anchor directory.
    pub anchors: PathBuf,
    /// The file name extension the store wants (`crt` on Debian).
    pub extension: &'static str,
    /// The refresh command and its arguments.
    pub refresh: Vec<String>,
}

impl LinuxTrustStore {
    /// A store at `anchors`, whose files end in `extension`, refreshed by `refresh`.
    pub fn new(anchors: impl Into<PathBuf>, extension: &'static str, refresh: Vec<String>) -> Self {
        Self {
            anchors: anchors.into(),
            extension,
            refresh,
        }
    }

    /// The store of this machine: Debian/Ubuntu (`update-ca-certificates`) or RHEL/Fedora
    /// (`update-ca-trust`), found by their anchor directories; `None` elsewhere.
    pub fn detect() -> Option<Self> {
        let debian = Path::new("/usr/local/share/ca-certificates");
        let rhel = Path::new("/etc/pki/ca-trust/source/anchors");
        if debian.is_dir() {
            Some(Self {
                anchors: debian.into(),
                extension: "crt",
                refresh: vec!["update-ca-certificates".into()],
            })
        } else if rhel.is_dir() {
            Some(Self {
                anchors: rhel.into(),
                extension: "pem",
                refresh: vec!["update-ca-trust".into()],
            })
        } else {
            None
        }
    }

    /// Writes `root_pem` as `<file_stem>.<ext>` into the anchors and runs the refresh command.
    /// Needs root for the real system store.
    ///
    /// # Errors
    /// [`CaError::Io`] for the write, [`CaError::TrustInstall`] when the refresh fails.
    pub fn install(&self, root_pem: &str, file_stem: &str) -> Result<PathBuf, CaError> {
        let target = self.anchors.join(format!("{file_stem}.{}", self.extension));
        std::fs::write(&target, root_pem).map_err(|e| CaError::Io {
            op: "write",
            path: target.display().to_string(),
            source: e,
        })?;
        let Some((cmd, args)) = self.refresh.split_first() else {
            return Ok(target);
        };
        let out = Command::new(cmd)
            .args(args)
            .output()
            .map_err(|e| CaError::Io {
                op: "run",
                path: cmd.clone(),
                source: e,
            })?;
        if !out.status.success() {
            return Err(CaError::TrustInstall {
                command: self.refresh.join(" "),
                output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(target)
    }
}
