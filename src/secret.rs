//! A string that must never be printed: tokens, refresh tokens, client secrets, keys.
//!
//! `Debug` and `Display` show nothing of the value, so a secret that ends up in a log line,
//! an error message or a panic by accident leaks nothing. Read the value with [`Secret::expose`]
//! only at the point where it is written to the wire.

use std::fmt;
use std::sync::Arc;

/// A secret value that redacts itself in `Debug` and `Display`. Shared, so the copies a
/// request takes from the token cache cost no allocation.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Arc::from(value.into()))
    }

    /// The value itself. Call this only where the secret leaves the process on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `•••• last4`, for admin answers that must show which secret is set without showing it.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() < 12 {
            return "••••".to_string();
        }
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("•••• {tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("gho_supersecretvalue1234");
        assert!(!format!("{s:?}").contains("supersecret"));
        assert!(!format!("{s}").contains("supersecret"));
        assert_eq!(s.masked(), "•••• 1234");
        assert_eq!(Secret::new("short").masked(), "••••");
    }
}
