//! Fuzz target: see fuzz/checks/http1.rs (`response_head`) for what must hold.
#![no_main]

#[path = "../checks/http1.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::response_head(data));
