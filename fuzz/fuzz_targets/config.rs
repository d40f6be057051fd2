//! A config file's TOML text, loaded and validated.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = release_guardian::fuzz::config(data);
});
