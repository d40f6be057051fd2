//! A rule pack's YAML text, parsed and compiled.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = release_guardian::fuzz::rule_pack(data);
});
