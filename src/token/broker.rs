//! The broker: which credential goes on a request for (connector, principal).
//!
//! Static connectors carry their token in the config; authorization-code connectors read the
//! principal's connection from the store. An expired access token is never injected.

use std::sync::Arc;

use super::model::{ConnectionKey, ConnectionStatus};
use super::store::{StoreError, TokenStore};
use crate::config::{Connector, Grant};
use crate::domains::{Host, Target};
use crate::oauth::link::LinkSigner;
use crate::secret::Secret;

/// Why no credential can be attached.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{principal} has not connected {connector} yet; open the connect_url to connect")]
    ConnectionRequired { connector: String, principal: String, connect_url: String },
    #[error("the {connector} connection of {principal} {reason}; open the connect_url to connect again")]
    ReauthRequired { connector: String, principal: String, reason: &'static str, connect_url: String },
    #[error("the {connector} token is pinned to {pinned}; it is not sent to another host")]
    PinnedHost { connector: String, pinned: String },
    #[error("the {connector} token could not be read: {source}")]
    Store {
        connector: String,
        #[source]
        source: StoreError,
    },
    #[error("{connector} uses client credentials, which this build cannot fetch yet")]
    ClientCredentialsUnavailable { connector: String },
}

#[derive(Debug)]
pub struct Broker {
    store: Arc<dyn TokenStore>,
    links: LinkSigner,
}

impl Broker {
    pub fn new(store: Arc<dyn TokenStore>, links: LinkSigner) -> Self {
        Broker { store, links }
    }

    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    pub fn links(&self) -> &LinkSigner {
        &self.links
    }

    /// The token to inject for this principal on this connector and target, at `now`
    /// (Unix seconds).
    pub async fn token_for(
        &self,
        connector: &Connector,
        principal: &str,
        target: &Target,
        now: u64,
    ) -> Result<Secret, CredentialError> {
        match &connector.grant {
            Grant::Static(token) => Ok(token.clone()),
            Grant::ClientCredentials(_) => {
                Err(CredentialError::ClientCredentialsUnavailable { connector: connector.name.clone() })
            }
            Grant::AuthorizationCode(_) => {
                let key = ConnectionKey::new(&connector.name, principal);
                let connection = self
                    .store
                    .get(&key)
                    .await
                    .map_err(|source| CredentialError::Store { connector: connector.name.clone(), source })?;
                let link = || self.links.connect_url(&connector.name, principal, now).0;
                let Some(connection) = connection else {
                    return Err(CredentialError::ConnectionRequired {
                        connector: connector.name.clone(),
                        principal: principal.to_string(),
                        connect_url: link(),
                    });
                };
                let reauth = |reason| CredentialError::ReauthRequired {
                    connector: connector.name.clone(),
                    principal: principal.to_string(),
                    reason,
                    connect_url: link(),
                };
                if connection.status == ConnectionStatus::NeedsReauth {
                    return Err(reauth("needs to be re-authorized"));
                }
                if connection.is_expired(now) {
                    return Err(reauth("has an expired access token"));
                }
                if connector.pin_host {
                    check_pinned(connector, connection.pinned_host.as_deref(), target)?;
                }
                Ok(connection.access_token)
            }
        }
    }
}

fn check_pinned(connector: &Connector, pinned: Option<&str>, target: &Target) -> Result<(), CredentialError> {
    let host = match &target.host {
        Host::Name(n) => n.as_str(),
        _ => "",
    };
    match pinned {
        Some(p) if p == host => Ok(()),
        other => Err(CredentialError::PinnedHost {
            connector: connector.name.clone(),
            pinned: other.unwrap_or("no recorded host").to_string(),
        }),
    }
}
