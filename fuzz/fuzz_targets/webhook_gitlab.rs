//! A `POST /v1/webhooks/gitlab` delivery: flag byte, headers, blank line, body.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = release_guardian::fuzz::webhook("gitlab", data);
});
