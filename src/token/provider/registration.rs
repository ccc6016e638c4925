//! Dynamic Client Registration (RFC 7591): when a connector has no `client_id` and its
//! authorization server offers registration, Tollgate registers itself once per connector and
//! issuer. The registered client is stored encrypted in the token store (as a record keyed
//! `registration:<issuer>`) under the store's lock, so every replica uses the same client.

use std::time::Duration;

use http::{header, Method, Request};
use serde::Deserialize;

use super::Providers;
use crate::config::connector::AuthMethod;
use crate::config::{Connector, OAuthClient};
use crate::secret::Secret;
use crate::token::{Connection, ConnectionKey, Expect};

#[derive(Debug, Deserialize)]
struct Registration {
    client_id: String,
    client_secret: Option<String>,
    token_endpoint_auth_method: Option<String>,
    redirect_uris: Option<Vec<String>>,
}

impl Providers {
    /// One registration per connector and issuer, shared by every replica through the store.
    pub(super) async fn register(
        &self,
        index: usize,
        connector: &Connector,
        oauth: &mut OAuthClient,
    ) -> Result<(), String> {
        let issuer = oauth.issuer.clone().unwrap_or_default();
        // Under the reserved connector name `tollgate`, so no user connection can collide.
        let key = ConnectionKey::new("tollgate", format!("registration:{}:{issuer}", connector.name));
        let stored = |c: Connection, oauth: &mut OAuthClient| {
            oauth.client_id = Some(c.access_token.expose().to_string());
            oauth.client_secret = c.refresh_token;
            oauth.auth_method = match c.scopes.first().map(String::as_str) {
                Some("client_secret_basic") => AuthMethod::ClientSecretBasic,
                Some("client_secret_post") => AuthMethod::ClientSecretPost,
                _ => AuthMethod::None,
            };
        };
        let store_error = |e: crate::token::StoreError| format!("the token store is unavailable: {e}");
        if let Some(existing) = self.store.get(&key).await.map_err(store_error)? {
            stored(existing, oauth);
            return Ok(());
        }
        let endpoint = oauth
            .registration_endpoint
            .clone()
            .ok_or("no client_id is configured and the server offers no registration endpoint")?;
        let owner = crate::token::store::owner_token();
        if !self.store.lock(&key, &owner, Duration::from_secs(30)).await.map_err(store_error)? {
            // Another replica is registering; use its result once it lands.
            for _ in 0..120 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Some(existing) = self.store.get(&key).await.map_err(store_error)? {
                    stored(existing, oauth);
                    return Ok(());
                }
            }
            return Err("another replica's registration did not complete".into());
        }
        let result = self.register_locked(index, &endpoint, &key, &owner).await;
        let _ = self.store.unlock(&key, &owner).await;
        stored(result?, oauth);
        Ok(())
    }

    async fn register_locked(
        &self,
        index: usize,
        endpoint: &str,
        key: &ConnectionKey,
        owner: &str,
    ) -> Result<Connection, String> {
        if let Some(existing) = self.store.get(key).await.map_err(|e| e.to_string())? {
            return Ok(existing);
        }
        let body = serde_json::json!({
            "client_name": "Tollgate",
            "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        let request = Request::builder()
            .method(Method::POST)
            .uri(endpoint)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(body.to_string().into_bytes())
            .map_err(|_| "the registration endpoint is not a URL".to_string())?;
        let response = self.http.send(index, request).await.map_err(|e| format!("registration failed: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("registration answered {}", response.status()));
        }
        let registered: Registration =
            serde_json::from_slice(response.body()).map_err(|_| "the registration answer is not valid".to_string())?;
        if let Some(uris) = &registered.redirect_uris {
            if uris.as_slice() != std::slice::from_ref(&self.redirect_uri) {
                return Err("the registration answer changed the redirect URIs".into());
            }
        }
        let method = registered.token_endpoint_auth_method.unwrap_or_else(|| "none".into());
        let mut record = Connection::new(Secret::new(registered.client_id), None);
        record.refresh_token = registered.client_secret.map(Secret::new);
        record.scopes = vec![method];
        self.store
            .put(key, record.clone(), Expect::Absent, Some(owner))
            .await
            .map_err(|e| format!("storing the registration failed: {e}"))?;
        tracing::info!("registered Tollgate as an OAuth client (RFC 7591)");
        Ok(record)
    }
}
