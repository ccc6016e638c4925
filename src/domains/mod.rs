//! Allowed domains: the normalized target URL, the pattern grammar, the compiled matcher
//! (SPEC section 3), and the address policy that judges what a name resolves to. Pure code:
//! no I/O, no clock, so it is tested by tables and fuzzed.

pub mod addr;
pub mod error;
pub mod host;
pub mod matcher;
pub mod path;
pub mod pattern;
mod plain;
mod scheme;
pub mod target;

pub use matcher::{AllowList, Covered};
pub use pattern::{Pattern, PatternError};
pub use target::{Host, Scheme, Target, TargetError};
