//! A `POST /v1/releases` body.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = release_guardian::fuzz::release(data);
});
