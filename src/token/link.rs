//! Connect links: short-lived, signed tickets naming (principal, connector), handed out in
//! `connection_required` and `reauth_required` errors and by `POST /connect`. The page they
//! open and the single-use rule live with the OAuth flow.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::config::EncryptionKey;

/// How long a connect link stays valid.
pub const LINK_TTL_SECS: u64 = 600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    #[serde(rename = "c")]
    pub connector: String,
    #[serde(rename = "p")]
    pub principal: String,
    #[serde(rename = "e")]
    pub expires_at: u64,
    #[serde(rename = "n")]
    pub nonce: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is malformed")]
    Malformed,
    #[error("the link signature is invalid")]
    BadSignature,
    #[error("the link has expired")]
    Expired,
}

/// Signs and verifies connect links with a key derived from the current encryption key.
pub struct LinkSigner {
    key: hmac::Key,
    public_url: String,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigner").field("public_url", &self.public_url).finish_non_exhaustive()
    }
}

impl LinkSigner {
    pub fn new(key: &EncryptionKey, public_url: &str) -> Self {
        // A separate key for links, so a link MAC can never be confused with a ciphertext tag.
        let root = hmac::Key::new(hmac::HMAC_SHA256, &key.key);
        let derived = hmac::sign(&root, b"tollgate/connect-link/v1");
        LinkSigner { key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()), public_url: public_url.to_string() }
    }

    /// Where browsers reach Tollgate's OAuth pages.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The one redirect URI to register at providers.
    pub fn redirect_uri(&self) -> String {
        format!("{}/oauth/callback", self.public_url)
    }

    /// A signed link for (principal, connector), valid from `now` (Unix seconds).
    pub fn connect_url(&self, connector: &str, principal: &str, now: u64) -> (String, u64) {
        let mut nonce = [0u8; 16];
        // SystemRandom only fails when the OS has no randomness source; then the nonce
        // stays zero, which weakens single use but not the signature.
        let _ = SystemRandom::new().fill(&mut nonce);
        let ticket = Ticket {
            connector: connector.to_string(),
            principal: principal.to_string(),
            expires_at: now + LINK_TTL_SECS,
            nonce: URL_SAFE_NO_PAD.encode(nonce),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&ticket).unwrap_or_default());
        let mac = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, payload.as_bytes()));
        (format!("{}/oauth/start?ticket={payload}.{mac}", self.public_url), ticket.expires_at)
    }

    /// Checks a ticket's signature and expiry.
    pub fn verify(&self, ticket: &str, now: u64) -> Result<Ticket, LinkError> {
        let (payload, mac) = ticket.split_once('.').ok_or(LinkError::Malformed)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| LinkError::Malformed)?;
        hmac::verify(&self.key, payload.as_bytes(), &mac).map_err(|_| LinkError::BadSignature)?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| LinkError::Malformed)?;
        let ticket: Ticket = serde_json::from_slice(&json).map_err(|_| LinkError::Malformed)?;
        if ticket.expires_at <= now {
            return Err(LinkError::Expired);
        }
        Ok(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_expiring_links() {
        let signer = LinkSigner::new(&EncryptionKey { id: "k1".into(), key: [7; 32] }, "https://tg.example");
        let (url, exp) = signer.connect_url("github", "alice", 1000);
        assert_eq!(exp, 1000 + LINK_TTL_SECS);
        let ticket = url.split_once("ticket=").unwrap().1;
        let t = signer.verify(ticket, 1001).unwrap();
        assert_eq!((t.connector.as_str(), t.principal.as_str()), ("github", "alice"));
        assert_eq!(signer.verify(ticket, exp), Err(LinkError::Expired));
        let other = LinkSigner::new(&EncryptionKey { id: "k2".into(), key: [8; 32] }, "https://tg.example");
        assert_eq!(other.verify(ticket, 1001), Err(LinkError::BadSignature));
        let (payload, mac) = ticket.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"c":"github","p":"mallory","e":99999,"n":"x"}"#);
        assert_eq!(signer.verify(&format!("{forged}.{mac}"), 1001), Err(LinkError::BadSignature));
        assert!(signer.verify(payload, 1001).is_err());
    }
}
