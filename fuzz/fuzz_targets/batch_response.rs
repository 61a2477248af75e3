//! The `$batch` answer decoder: a multipart/mixed body (with change sets nested inside) whose boundary comes from the
//! content type. Input: the content type on the first line, then the body.
//!
//! Beyond "no panic": decoding is deterministic; there is always exactly one result per operation sent, whatever
//! the answer holds; every failed part decodes into an error and every successful one into a write result.

#![no_main]

use dynamics_client::PartResult;
use dynamics_client::fuzzing::{batch_response, written};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (String::from_utf8_lossy(&data[..at]), &data[at + 1..]),
        None => return,
    };
    // The operation count the batch sent and its mode come from the input's length, so one decode (and a second to
    // check determinism) covers them all over the corpus: none, one, and more than an answer is likely to hold.
    let expected = [0, 1, 3, 20][data.len() % 4];
    let atomic = data.len() % 8 >= 4;
    let first = batch_response(&content_type, body, expected, atomic);
    let again = batch_response(&content_type, body, expected, atomic);
    match (&first, &again) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "decoding is not deterministic"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "decoding is not deterministic"),
        _ => panic!("decoding is not deterministic"),
    }
    let Ok(results) = first else { return };
    assert_eq!(results.len(), expected, "one result per operation sent");
    for result in &results {
        match result {
            PartResult::Answered { status, headers, body } => {
                if *status >= 400 {
                    let error = result.error().expect("a failed part is an error");
                    let _ = error.to_string();
                } else {
                    assert!(result.error().is_none(), "a successful part is not an error");
                    let _ = written(*status, headers, body, "contactid");
                }
            }
            PartResult::NotExecuted => assert!(result.error().is_some()),
        }
    }
});
