//! JWKS documents: the public keys callers' JWTs are checked against, each with the one
//! algorithm its type pins (RS256 for RSA, ES256 for EC P-256). Parsed when the config loads;
//! `caller::jwt` verifies with them.

use std::fmt;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

/// One public key from a JWKS document, with the algorithm it pins.
#[derive(Clone)]
pub struct PublicKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub(crate) key: DecodingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("kid", &self.kid).field("alg", &self.alg).finish()
    }
}

/// Parses a JWKS document. Keys other than RSA and EC P-256 are refused.
pub fn load_jwks(text: &str) -> Result<Vec<PublicKey>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
            _ => return Err("only RSA (RS256) and EC P-256 (ES256) keys are accepted".into()),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("bad key: {e}"))?;
        keys.push(PublicKey { kid: jwk.common.key_id.clone(), alg, key });
    }
    if keys.is_empty() {
        return Err("the JWKS has no keys".into());
    }
    Ok(keys)
}
