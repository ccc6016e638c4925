//! The generated interception CA, kept in the token store (sealed like every stored value) so
//! that every replica sharing the store presents leaf certificates from the same CA, which
//! runtimes trust through `GET /ca.pem` on the admin listener or `tollgate ca export`.

use crate::authority::Authority;
use crate::secret::Secret;
use crate::token::{Connection, ConnectionKey, Expect, StoreError, TokenStore};

/// Why the stored CA could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    Invalid(#[from] crate::authority::CaError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the CA lives in the token store.
pub fn store_key() -> ConnectionKey {
    ConnectionKey::new("tollgate", "interception-ca")
}

/// The CA from the store, or a new one stored for every replica (the first writer wins).
pub async fn load_or_create(store: &dyn TokenStore) -> Result<Authority, CaError> {
    let key = store_key();
    if let Some(stored) = store.get(&key).await? {
        return from_stored(&stored);
    }
    let (cert_pem, key_pem) = Authority::generate()?;
    let mut record = Connection::new(Secret::new(cert_pem), None);
    record.refresh_token = Some(Secret::new(key_pem));
    match store.put(&key, record.clone(), Expect::Absent, None).await {
        Ok(_) => from_stored(&record),
        // Another replica stored its CA first: use that one.
        Err(StoreError::Conflict) => match store.get(&key).await? {
            Some(stored) => from_stored(&stored),
            None => Err(crate::authority::CaError("the stored CA vanished".into()).into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// The record holds the certificate as its access token and the key as its refresh token.
fn from_stored(record: &Connection) -> Result<Authority, CaError> {
    let key_pem =
        record.refresh_token.as_ref().ok_or_else(|| crate::authority::CaError("the stored CA has no key".into()))?;
    Ok(Authority::from_pem(record.access_token.expose(), key_pem.expose())?)
}
