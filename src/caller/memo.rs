//! The last credential a client connection presented, and who it proved to be.
//!
//! Agent runtimes send request after request on one kept-alive connection with the same
//! `Proxy-Authorization`; verifying it again each time (a SHA-256 for an API key, a signature
//! for a JWT) would be the most expensive step of a cached request. A connection remembers its
//! last verified credential and reuses the result while all of these hold:
//!
//! - the header value is byte-for-byte the one verified (compared in constant time);
//! - the configuration is the one it was verified against (a reload verifies again, so a
//!   removed key stops working on open connections at once);
//! - a JWT has not passed its `exp` (plus the leeway `jwt::verify` allows).
//!
//! A different credential on the same connection (a runtime multiplexing users) is verified
//! and replaces the memory; failures are never remembered. A credential this connection has
//! not seen may still have been verified by another one: see [`super::recent`].

use std::sync::{Arc, Mutex};

use http::HeaderValue;

use super::recent::{Remembered, RECENT};
use super::{authenticate, parse_credential, Caller, IdentityError};
use crate::config::Config;
use crate::secret::Secret;

/// One connection's memory of its last verified credential.
#[derive(Default)]
pub struct Memo(Mutex<Option<Remembered>>);

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo").finish_non_exhaustive()
    }
}

impl Memo {
    /// The caller this header value proves under `config` at `now` (Unix seconds): the
    /// remembered one when nothing changed, otherwise verified now and remembered.
    pub fn identify(&self, value: &HeaderValue, config: &Arc<Config>, now: u64) -> Result<Arc<Caller>, IdentityError> {
        if let Some(caller) = self.recall(value.as_bytes(), config, now) {
            return Ok(caller);
        }
        // Another connection may have verified it (a runtime multiplexing users).
        let remembered = match RECENT.recall(value.as_bytes(), config, now) {
            Some(remembered) => remembered,
            None => {
                let presented = parse_credential(value)?;
                let caller = Arc::new(authenticate(presented, config)?);
                if caller.valid_until.is_some_and(|until| now > until) {
                    return Ok(caller);
                }
                let credential = Secret::new(String::from_utf8_lossy(value.as_bytes()));
                let remembered = Remembered { config: Arc::downgrade(config), credential, caller };
                RECENT.remember(remembered.clone());
                remembered
            }
        };
        let caller = remembered.caller.clone();
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(remembered);
        Ok(caller)
    }

    /// [`Memo::identify`], and when the JWT names a key the identity provider's published set
    /// lacks (a key rotated in since it was fetched), one fetch of the set, at most one per
    /// interval however many requests ask, and one more try.
    pub async fn identify_fresh(
        &self,
        value: &HeaderValue,
        config: &Arc<Config>,
        now: u64,
    ) -> Result<Arc<Caller>, IdentityError> {
        match self.identify(value, config, now) {
            Err(IdentityError::UnknownKey) => {
                let Some(crate::config::JwtSettings { key: crate::config::JwtKey::Remote(remote), .. }) =
                    &config.callers.jwt
                else {
                    return Err(IdentityError::UnknownKey);
                };
                if remote.refetch(true).await {
                    self.identify(value, config, now)
                } else {
                    Err(IdentityError::UnknownKey)
                }
            }
            other => other,
        }
    }

    fn recall(&self, value: &[u8], config: &Arc<Config>, now: u64) -> Option<Arc<Caller>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref()?.recall(value, config, now)
    }
}
