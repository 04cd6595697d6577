//! The SQS message parser: finding the token and the input in a body.
//!
//! Input: `POINTER \n TOKEN_POINTER \n BODY`. Checked on every input:
//! - `pointer` never panics and agrees with `serde_json::Value::pointer`
//!   wherever serde_json can read the body;
//! - what it returns is the body's own text (a slice, never rewritten);
//! - `extract` never panics; a token it returns is non-empty, and the input
//!   it returns is the body's own text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sfn_worker_core::config::TokenSource;
use sfn_worker_core::fuzzing::{Message, extract, pointer};

fn is_slice_of(part: &str, whole: &str) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\n');
    let (Some(ptr), Some(token_ptr), Some(body)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };

    let raw = pointer(body, ptr);
    if let Some(raw) = raw {
        assert!(is_slice_of(raw, body), "{ptr:?}: not a slice of the body");
    }
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        let got =
            raw.map(|r| serde_json::from_str::<Value>(r).expect("the text at a pointer is JSON"));
        assert_eq!(
            got.as_ref(),
            value.pointer(ptr),
            "pointer {ptr:?} in {body:?}"
        );
    }

    let message = Message {
        message_id: "m".into(),
        receipt_handle: "h".into(),
        body: body.into(),
        group_id: None,
        trace_header: None,
        attribute: None,
        sent_timestamp_ms: None,
    };
    for input_pointer in [None, Some(ptr)] {
        let token = TokenSource::Pointer(token_ptr.into());
        if let Ok((token, input)) = extract(&message, &token, input_pointer) {
            assert!(!token.is_empty());
            match input_pointer {
                None => assert_eq!(input, body),
                Some(_) => assert!(body.contains(input.as_str()), "input not from the body"),
            }
        }
    }
});
