//! Tokens: the connection model, the store interface and its backends, and the broker that
//! turns (connector, principal) into a credential to inject.

pub mod amend;
pub mod broker;
pub mod cache;
pub mod connector_health;
pub mod crypto;
pub mod endpoint;
pub mod events;
pub mod keys;
pub mod link;
pub mod model;
pub mod observed;
pub mod probe;
pub mod provider;
pub mod queue;
pub mod renew;
pub mod revocation;
pub mod store;

pub use keys::Principal;
pub use model::{Connection, ConnectionKey, ConnectionStatus};
pub use store::{Expect, StoreError, TokenStore};
