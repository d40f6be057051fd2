//! A scrape target's `/metrics` body (Prometheus' text format).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = release_guardian::fuzz::exposition(data);
});
