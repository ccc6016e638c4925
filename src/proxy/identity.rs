//! Phase `identify`: the caller credential, verified. Runs before any policy or token lookup.

use std::sync::Arc;

use super::headers::Asked;
use crate::caller::{Caller, IdentityError, Memo};
use crate::config::Config;

/// Authenticates the caller from `Proxy-Authorization`, or in gateway mode also from
/// `Authorization: Bearer`. The connection's memo answers for a credential it verified
/// already under this config.
pub async fn identify(
    asked: &Asked<'_>,
    gateway: bool,
    config: &Arc<Config>,
    memo: &Memo,
    now: u64,
) -> Result<Arc<Caller>, IdentityError> {
    let value =
        asked.proxy_authorization.or(if gateway { asked.authorization } else { None }).ok_or(IdentityError::Missing)?;
    memo.identify_fresh(value, config, now).await
}
