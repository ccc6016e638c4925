//! Fuzz target: see fuzz/checks/http1.rs (`chunked`) for what must hold.
#![no_main]

#[path = "../checks/http1.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::chunked(data));
