//! Service changes through the running gateway (the admin API's `/v1/services`): each one
//! checked like `conduit register` ([`ServiceSpec`]), stored through the gateway's registry
//! and audited as the caller. A refusal by the SSRF policy is audited too.

use conduit_registry::{ListFilter, Precondition, Registry as _, Revision, ServiceName};
use serde_json::json;

use super::{GatewayError, GatewayHandle};
use crate::api::{ServiceList, ServiceView};
use crate::audited::{Action, AuditedError, AuditedRegistry, record};
use crate::spec::{ServiceSpec, SpecError};

/// What an update may require of the stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expect {
    /// Whatever is stored.
    Any,
    /// Only if it is still at this revision (`If-Match`).
    Revision(Revision),
}

impl GatewayHandle {
    fn audited(
        &self,
        caller: &str,
    ) -> AuditedRegistry<std::sync::Arc<dyn conduit_registry::Registry>> {
        AuditedRegistry::new(self.registry.clone(), self.audit.clone(), caller)
    }

    /// The record `spec` asks for, or why not; a refusal by the SSRF policy is audited
    /// (`action`, failure) as `caller`.
    async fn checked(
        &self,
        spec: &ServiceSpec,
        action: Action,
        caller: &str,
    ) -> Result<conduit_registry::ServiceRecord, GatewayError> {
        match spec.to_record(&self.settings, &self.ssrf, &self.origin) {
            Ok(r) => Ok(r),
            Err(e) => {
                if e.is_refused_by_policy() {
                    let details =
                        json!({"name": spec.name, "upstreams": spec.upstreams, "refused": true});
                    let msg = format!("Refused {}: {e}", spec.name);
                    record(&*self.audit, action, false, msg, caller, details).await;
                }
                Err(e.into())
            }
        }
    }

    /// Every active service as stored, and the revision they were read at.
    ///
    /// # Errors
    /// A registry error.
    pub async fn services(&self) -> Result<ServiceList, GatewayError> {
        let revision = self.registry.revision().await?;
        let services = self.registry.list(ListFilter::Active).await?;
        Ok(ServiceList {
            services: services.iter().map(|r| ServiceView::from(&**r)).collect(),
            revision: revision.0,
        })
    }

    /// The active record of `name`, or its last inactive one.
    ///
    /// # Errors
    /// [`GatewayError::Spec`] for a malformed name, [`GatewayError::Registry`]
    /// (`NotFound` when there is none).
    pub async fn service(&self, name: &str) -> Result<ServiceView, GatewayError> {
        let name = parse_name(name)?;
        match self.registry.get(&name).await? {
            Some(r) => Ok(ServiceView::from(&*r)),
            None => Err(conduit_registry::RegistryError::NotFound { name }.into()),
        }
    }

    /// Registers `spec`, audited as `caller`.
    ///
    /// # Errors
    /// [`GatewayError::Spec`] (bad input, or refused by the SSRF policy),
    /// [`GatewayError::Registry`] (name or domain taken), [`GatewayError::Audited`].
    pub async fn register(
        &self,
        spec: &ServiceSpec,
        caller: &str,
    ) -> Result<ServiceView, GatewayError> {
        let rec = self.checked(spec, Action::ServiceRegister, caller).await?;
        match self.audited(caller).register_audited(rec).await {
            Ok(r) => Ok(ServiceView::from(&*r)),
            Err(e) => Err(audited_error(e)),
        }
    }

    /// Replaces the upstreams, health check, routing and domain of the active service
    /// `name` in place (one registry change: it is never absent from DNS or the proxy in
    /// between), if it is still at the expected revision; audited as `caller`.
    ///
    /// # Errors
    /// As [`GatewayHandle::register`]; `Registry(Conflict)` when the revision moved on,
    /// `Registry(NotFound)`; `Spec` when the body names another service.
    pub async fn update(
        &self,
        name: &str,
        spec: &ServiceSpec,
        expect: Expect,
        caller: &str,
    ) -> Result<ServiceView, GatewayError> {
        let name = parse_name(name)?;
        if spec.name != name.as_str() {
            return Err(SpecError::Renamed {
                path: name.to_string(),
                body: spec.name.clone(),
            }
            .into());
        }
        let rec = self.checked(spec, Action::ServiceUpdate, caller).await?;
        let precondition = match expect {
            Expect::Any => Precondition::Overwrite,
            Expect::Revision(r) => Precondition::Revision(r),
        };
        let stored = self.audited(caller).update_audited(rec, precondition).await;
        stored
            .map(|r| ServiceView::from(&*r))
            .map_err(audited_error)
    }

    /// Deregisters `name`, audited as `caller`.
    ///
    /// # Errors
    /// `Registry(NotFound)`, [`GatewayError::Audited`].
    pub async fn deregister(&self, name: &str, caller: &str) -> Result<ServiceView, GatewayError> {
        let name = parse_name(name)?;
        match self.audited(caller).deregister_audited(&name).await {
            Ok(r) => Ok(ServiceView::from(&*r)),
            Err(e) => Err(audited_error(e)),
        }
    }
}

fn parse_name(name: &str) -> Result<ServiceName, GatewayError> {
    ServiceName::new(name).map_err(|source| {
        SpecError::Name {
            input: name.to_owned(),
            source,
        }
        .into()
    })
}

fn audited_error(e: AuditedError) -> GatewayError {
    match e {
        AuditedError::Registry(e) => GatewayError::Registry(e),
        e @ AuditedError::NotAudited { .. } => GatewayError::Audited(e),
    }
}
