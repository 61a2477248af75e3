//! The error-body decoder: Dataverse's `{"error":{"code","message"}}` bodies, proxy pages and truncated bodies, under
//! any status; and the AADSTS code search run on Azure AD's error text. Input: the status on the first line (any
//! text that is not a number stands for 400), then the body.
//!
//! Beyond "no panic": decoding is deterministic; a message kept from a body that is not a JSON object is at most
//! 200 characters and free of control characters; the error and an `AuthError` built from the text display.

#![no_main]

use dynamics_client::AuthError;
use dynamics_client::fuzzing::{error_parts, error_response, find_aadsts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (
            std::str::from_utf8(&data[..at])
                .ok()
                .and_then(|s| s.trim().parse::<u16>().ok())
                .unwrap_or(400),
            &data[at + 1..],
        ),
        None => (400, data),
    };

    let error = error_response(status, body).to_string();
    assert_eq!(
        error,
        error_response(status, body).to_string(),
        "decoding is not deterministic"
    );

    let (code, message) = error_parts(body);
    // Only a JSON object can be Dataverse's error body; anything else takes the snippet path.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        assert!(code.is_empty(), "a non-JSON body has no code");
        assert!(
            message.chars().count() <= 200,
            "the snippet of a non-JSON body is short"
        );
        assert!(!message.chars().any(char::is_control), "the snippet is printable");
    }

    let text = String::from_utf8_lossy(body);
    let aadsts = find_aadsts(&text);
    if aadsts.is_some() {
        assert!(text.contains("AADSTS"));
    }
    let auth = AuthError::from_aadsts(aadsts, &text, "DYNAMICS");
    let _ = auth.to_string();
    assert_eq!(auth.aadsts_code(), aadsts, "the AADSTS code survives into the error");
});
