//! The admin API's named tokens changed through the running gateway, so that each change is
//! audited with who made it (`token_add`, `token_revoke`); the secret is in the answer
//! once and never in a record.

use serde_json::json;

use super::{GatewayError, GatewayHandle};
use crate::api::{TokenCreated, TokenInfo, TokenList};
use crate::audited::{Action, record};
use crate::tokens::{Scope, TokenStore};

impl GatewayHandle {
    fn token_store(&self) -> Result<TokenStore, GatewayError> {
        self.state
            .as_ref()
            .map(|st| TokenStore::new(st.tokens()))
            .ok_or(GatewayError::Unavailable {
                what: "named tokens (this gateway has no state directory)",
            })
    }

    /// The tokens: names, scopes, when added (never secrets).
    ///
    /// # Errors
    /// [`GatewayError::Tokens`], [`GatewayError::Unavailable`] without a state directory.
    pub fn tokens(&self) -> Result<TokenList, GatewayError> {
        let tokens = self
            .token_store()?
            .list()?
            .into_iter()
            .map(|t| TokenInfo {
                name: t.name,
                scope: t.scope,
                created: t.created,
            })
            .collect();
        Ok(TokenList { tokens })
    }

    /// Adds a token; audited as `token_add` (the refusal too). The secret is in the answer
    /// and nowhere else.
    ///
    /// # Errors
    /// [`GatewayError::Tokens`]: a bad name, one that exists, the file.
    pub async fn add_token(
        &self,
        name: &str,
        scope: Scope,
        user: &str,
    ) -> Result<TokenCreated, GatewayError> {
        let added = self.token_store()?.add(name, scope);
        let (ok, message) = match &added {
            Ok(_) => (true, format!("Added the {} token {name}", scope.as_str())),
            Err(e) => (false, format!("Cannot add the token {name}: {e}")),
        };
        let details = json!({"name": name, "scope": scope.as_str()});
        record(&*self.audit, Action::TokenAdd, ok, message, user, details).await;
        Ok(TokenCreated {
            name: name.to_owned(),
            scope,
            secret: added?,
        })
    }

    /// Revokes a token: the next request with it is refused; audited as `token_revoke`.
    ///
    /// # Errors
    /// [`GatewayError::Tokens`]: no such token, the file.
    pub async fn revoke_token(&self, name: &str, user: &str) -> Result<(), GatewayError> {
        let revoked = self.token_store()?.revoke(name);
        let (ok, message) = match &revoked {
            Ok(()) => (true, format!("Revoked the token {name}")),
            Err(e) => (false, format!("Cannot revoke the token {name}: {e}")),
        };
        record(
            &*self.audit,
            Action::TokenRevoke,
            ok,
            message,
            user,
            json!({"name": name}),
        )
        .await;
        Ok(revoked?)
    }
}
