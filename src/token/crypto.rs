//! Encryption at rest: AES-256-GCM with a random nonce, the key id stored with every value so
//! keys can rotate (the first configured key encrypts, every key decrypts), and the storage
//! key bound in as associated data so a value copied under another key does not decrypt.
//!
//! Sealed format (text, so it is readable in `redis-cli` without revealing anything):
//! `v1.<key id>.<base64url(nonce || ciphertext || tag)>`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::EncryptionKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the stored value is not in the sealed format")]
    Format,
    #[error("the stored value was sealed with key `{0}`, which is not configured")]
    UnknownKey(String),
    #[error("the stored value does not decrypt under its key (tampered, or moved from another key)")]
    Open,
    #[error("no randomness available for a nonce")]
    Random,
}

struct Key {
    id: String,
    key: LessSafeKey,
}

/// Seals and opens stored values with the configured keys.
pub struct Sealer {
    keys: Vec<Key>,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Sealer").field("key_ids", &ids).finish()
    }
}

impl Sealer {
    /// `keys` must not be empty (config validation guarantees one).
    pub fn new(keys: &[EncryptionKey]) -> Result<Sealer, SealError> {
        let keys = keys
            .iter()
            .map(|k| {
                let unbound = UnboundKey::new(&AES_256_GCM, &k.key).map_err(|_| SealError::Format)?;
                Ok(Key { id: k.id.clone(), key: LessSafeKey::new(unbound) })
            })
            .collect::<Result<Vec<_>, SealError>>()?;
        if keys.is_empty() {
            return Err(SealError::UnknownKey(String::new()));
        }
        Ok(Sealer { keys, random: SystemRandom::new() })
    }

    /// Encrypts `plaintext` for storage under `storage_key`.
    pub fn seal(&self, storage_key: &str, plaintext: &[u8]) -> Result<String, SealError> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut buffer = plaintext.to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(storage_key.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| SealError::Format)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buffer);
        Ok(format!("v1.{}.{}", key.id, URL_SAFE_NO_PAD.encode(out)))
    }

    /// The id of the key that encrypts new values.
    pub fn current_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// The key id a sealed value names, without opening it (`None`: not in the sealed format).
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        let rest = sealed.strip_prefix("v1.")?;
        rest.rsplit_once('.').map(|(id, _)| id)
    }

    /// Decrypts a value read from `storage_key`.
    pub fn open(&self, storage_key: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let rest = sealed.strip_prefix("v1.").ok_or(SealError::Format)?;
        let (id, data) = rest.rsplit_once('.').ok_or(SealError::Format)?;
        let key = self.keys.iter().find(|k| k.id == id).ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
        let mut bytes = URL_SAFE_NO_PAD.decode(data).map_err(|_| SealError::Format)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Format);
        }
        let mut ciphertext = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SealError::Format)?;
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(storage_key.as_bytes()), &mut ciphertext)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> EncryptionKey {
        EncryptionKey { id: id.into(), key: [byte; 32] }
    }

    #[test]
    fn seal_open_rotate_and_bind() {
        let old = Sealer::new(&[key("k1", 1)]).unwrap();
        let sealed = old.seal("record-a", b"refresh-token-secret").unwrap();
        assert!(sealed.starts_with("v1.k1."));
        assert!(!sealed.contains("refresh-token-secret"));
        assert_eq!(old.open("record-a", &sealed).unwrap(), b"refresh-token-secret");
        // Moved under another storage key: refused.
        assert_eq!(old.open("record-b", &sealed), Err(SealError::Open));
        // Rotation: k2 encrypts, k1 still decrypts.
        let rotated = Sealer::new(&[key("k2", 2), key("k1", 1)]).unwrap();
        assert_eq!(rotated.open("record-a", &sealed).unwrap(), b"refresh-token-secret");
        assert!(rotated.seal("record-a", b"x").unwrap().starts_with("v1.k2."));
        let without_k1 = Sealer::new(&[key("k2", 2)]).unwrap();
        assert_eq!(without_k1.open("record-a", &sealed), Err(SealError::UnknownKey("k1".into())));
        // Tampering is detected.
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(old.open("record-a", &tampered).is_err());
        assert_eq!(old.open("record-a", "garbage"), Err(SealError::Format));
    }
}
