//! Request ids, the request vocabulary every layer may use: process-unique and
//! unguessable enough, in every refusal's body and every audit line. Imports nothing of the
//! crate.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A process-unique, unguessable-enough request id: a random per-process prefix and a
/// counter, 20 hex digits kept inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId([u8; 20]);

impl RequestId {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn next_request_id() -> RequestId {
    static PREFIX: OnceLock<[u8; 8]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    // 8 digits of a random prefix (written once), then the low 48 bits of the counter in 12.
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 4];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
        let mut digits = [0u8; 8];
        hex_digits(&mut digits, u64::from(u32::from_be_bytes(bytes)));
        digits
    });
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(prefix);
    hex_digits(&mut id[8..], COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff_ffff);
    RequestId(id)
}

/// The low `4 * out.len()` bits of `value` in lowercase hex, most significant digit first.
fn hex_digits(out: &mut [u8], value: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, digit) in out.iter_mut().rev().enumerate() {
        *digit = HEX[((value >> (4 * i)) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_hex() {
        let (a, b) = (next_request_id(), next_request_id());
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.len(), 20);
            assert!(id.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{id}");
        }
        assert_eq!(&a[..8], &b[..8], "same process prefix");
        let counter = |id: &RequestId| u64::from_str_radix(&id[8..], 16).unwrap();
        assert!(counter(&b) > counter(&a));
        let mut digits = [0u8; 4];
        hex_digits(&mut digits, 0x12_beef);
        assert_eq!(&digits, b"beef");
    }
}
