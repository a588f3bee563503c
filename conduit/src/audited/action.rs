//! The one list of audit actions: the `action` field of every record the gateway, the
//! command line and the tunnel agent write.

use std::fmt;

/// Every action the gateway and the command line audit: the `action` field of their
/// records, in one place (`conduit logs --action NAME` takes these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// A service registered (or a registration refused).
    ServiceRegister,
    /// A service's upstreams, health check, routing or domain replaced.
    ServiceUpdate,
    /// A service deregistered.
    ServiceDeregister,
    /// Registry changes found unaudited at start (a crash between storing and auditing).
    RegistryRecovered,
    /// Audit records a crash left unsealed or out of `audit.log`, repaired at start.
    AuditRecovered,
    /// An upstream became healthy or unhealthy.
    HealthChange,
    /// A service's certificate issued (or the issue failed).
    CertIssue,
    /// A renewal round renewed certificates (or failed).
    CertRenew,
    /// A service's key and certificate replaced on request.
    CertRotate,
    /// A service's certificate revoked on request.
    CertRevoke,
    /// The intermediate CA renewed from the root when the gateway started.
    CaIntermediateRenew,
    /// An intermediate CA signed by the offline root installed (or refused).
    CaIntermediateInstall,
    /// The root key moved out of the state directory (kept offline from now on).
    CaRootExport,
    /// The gateway's scheduled check of its own sealed chain failed (or passed again).
    AuditVerify,
    /// A named admin token added (or the addition refused).
    TokenAdd,
    /// A named admin token revoked.
    TokenRevoke,
    /// A witnessed checkpoint refused: another gateway's chain forked, went back or was
    /// rewritten (recorded by the witness).
    AuditWitnessAlarm,
    /// A monitor alert raised or cleared.
    MonitorAlert,
    /// The DNS server swapped in a new zone after registry changes (the original tool's
    /// name).
    DnsReload,
    /// The state directory initialized (`conduit setup`; the original tool's name).
    ConduitSetup,
    /// The tunnel agent's WireGuard interface came up.
    TunnelUp,
    /// The tunnel agent's WireGuard interface went down.
    TunnelDown,
    /// A peer added or changed (`conduit peer add`).
    PeerAdd,
    /// A peer removed.
    PeerRemove,
    /// A client certificate issued to a peer (its serial in the details).
    PeerCert,
    /// A grant added (`conduit grant add`).
    GrantAdd,
    /// A grant removed.
    GrantRemove,
    /// A service made to require a client certificate, or no longer.
    AccessRequireCert,
    /// The access policy replaced as a whole.
    AccessPolicy,
    /// A request refused by the access policy (rate-limited per client).
    AccessDenied,
    /// A dashboard login with a token (or a refused one: wrong token, too many tries).
    DashboardLogin,
    /// A dashboard session ended by its user.
    DashboardLogout,
}

impl Action {
    /// Every action.
    pub const ALL: &'static [Self] = &[
        Self::ServiceRegister,
        Self::ServiceUpdate,
        Self::ServiceDeregister,
        Self::RegistryRecovered,
        Self::AuditRecovered,
        Self::HealthChange,
        Self::CertIssue,
        Self::CertRenew,
        Self::CertRotate,
        Self::CertRevoke,
        Self::CaIntermediateRenew,
        Self::CaIntermediateInstall,
        Self::CaRootExport,
        Self::AuditVerify,
        Self::TokenAdd,
        Self::TokenRevoke,
        Self::AuditWitnessAlarm,
        Self::MonitorAlert,
        Self::DnsReload,
        Self::ConduitSetup,
        Self::TunnelUp,
        Self::TunnelDown,
        Self::PeerAdd,
        Self::PeerRemove,
        Self::PeerCert,
        Self::GrantAdd,
        Self::GrantRemove,
        Self::AccessRequireCert,
        Self::AccessPolicy,
        Self::AccessDenied,
        Self::DashboardLogin,
        Self::DashboardLogout,
    ];

    /// Its name in the log (`service_register`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServiceRegister => "service_register",
            Self::ServiceUpdate => "service_update",
            Self::ServiceDeregister => "service_deregister",
            Self::RegistryRecovered => "registry_recovered",
            Self::AuditRecovered => "audit_recovered",
            Self::HealthChange => "health_change",
            Self::CertIssue => "cert_issue",
            Self::CertRenew => "cert_renew",
            Self::CertRotate => "cert_rotate",
            Self::CertRevoke => "cert_revoke",
            Self::CaIntermediateRenew => "ca_intermediate_renew",
            Self::CaIntermediateInstall => "ca_intermediate_install",
            Self::CaRootExport => "ca_root_export",
            Self::AuditVerify => "audit_verify",
            Self::TokenAdd => "token_add",
            Self::TokenRevoke => "token_revoke",
            Self::AuditWitnessAlarm => "audit_witness_alarm",
            Self::MonitorAlert => "monitor_alert",
            Self::DnsReload => "dns_reload",
            Self::ConduitSetup => "conduit_setup",
            Self::TunnelUp => "tunnel_up",
            Self::TunnelDown => "tunnel_down",
            Self::PeerAdd => "peer_add",
            Self::PeerRemove => "peer_remove",
            Self::PeerCert => "peer_cert",
            Self::GrantAdd => "grant_add",
            Self::GrantRemove => "grant_remove",
            Self::AccessRequireCert => "access_require_cert",
            Self::AccessPolicy => "access_policy",
            Self::AccessDenied => "access_denied",
            Self::DashboardLogin => "dashboard_login",
            Self::DashboardLogout => "dashboard_logout",
        }
    }

    /// The action a log record names, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
