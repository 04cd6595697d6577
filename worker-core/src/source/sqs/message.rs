//! Finding the task token and input in a message.

use std::collections::HashMap;

use serde_json::value::RawValue;

use super::config::TokenSource;
use crate::aws::Message;

/// Why a message cannot become a task: the `reason` label of
/// `sfn_worker_malformed_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    BodyNotJson,
    TokenMissing,
    TokenNotString,
    InputMissing,
    /// A task token longer than Step Functions accepts (2,048 characters):
    /// every report of it would be refused.
    TokenInvalid,
    /// A durable-callback binding's id is not a callback id (1 to 1,024
    /// characters of the base64 alphabet).
    CallbackIdInvalid,
}

impl Malformed {
    pub fn reason(self) -> &'static str {
        match self {
            Malformed::BodyNotJson => "body_not_json",
            Malformed::TokenMissing => "token_missing",
            Malformed::TokenNotString => "token_not_string",
            Malformed::InputMissing => "input_missing",
            Malformed::TokenInvalid => "token_invalid",
            Malformed::CallbackIdInvalid => "callback_id_invalid",
        }
    }
}

/// The (token, input JSON text) a message carries. The input is the exact
/// text at the input pointer (or the whole body): never parsed into numbers
/// and written again, so big integers and decimals arrive as they were sent.
pub(crate) fn extract(
    m: &Message,
    token: &TokenSource,
    input_pointer: Option<&str>,
) -> Result<(String, String), Malformed> {
    // Checks the whole body once; pointers below read slices of it.
    let _: &RawValue = serde_json::from_str(&m.body).map_err(|_| Malformed::BodyNotJson)?;
    let token = match token {
        TokenSource::Pointer(p) => match pointer(&m.body, p).map(RawValue::get) {
            None | Some("null") => return Err(Malformed::TokenMissing),
            Some(raw) => match serde_json::from_str::<String>(raw) {
                Ok(s) if s.is_empty() => return Err(Malformed::TokenMissing),
                Ok(s) => s,
                Err(_) => return Err(Malformed::TokenNotString),
            },
        },
        TokenSource::Attribute(_) => match &m.attribute {
            Some(s) if !s.is_empty() => s.clone(),
            _ => return Err(Malformed::TokenMissing),
        },
    };
    let input = match input_pointer {
        None => m.body.clone(),
        Some(p) => pointer(&m.body, p)
            .ok_or(Malformed::InputMissing)?
            .get()
            .to_owned(),
    };
    Ok((token, input))
}

/// The JSON text at an RFC 6901 `pointer` in `json`, as written there.
pub(crate) fn pointer<'a>(json: &'a str, pointer: &str) -> Option<&'a RawValue> {
    let mut here: &'a RawValue = serde_json::from_str(json).ok()?;
    if pointer.is_empty() {
        return Some(here);
    }
    for part in pointer.strip_prefix('/')?.split('/') {
        let key = part.replace("~1", "/").replace("~0", "~");
        let text = here.get();
        here = match text.as_bytes().first()? {
            b'{' => {
                // Duplicate keys: the last one wins, as in serde_json's Value.
                let object: HashMap<String, &'a RawValue> = serde_json::from_str(text).ok()?;
                object.get(&key).copied()?
            }
            b'[' => {
                let array: Vec<&'a RawValue> = serde_json::from_str(text).ok()?;
                array.get(array_index(&key)?).copied()?
            }
            _ => return None,
        };
    }
    Some(here)
}

/// An array index as RFC 6901 spells it: digits, no leading zeros.
fn array_index(s: &str) -> Option<usize> {
    if s.starts_with('+') || (s.starts_with('0') && s.len() > 1) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str, attribute: Option<&str>) -> Message {
        Message {
            message_id: "m".into(),
            receipt_handle: "h".into(),
            body: body.into(),
            group_id: None,
            trace_header: None,
            sent_timestamp_ms: None,
            attribute: attribute.map(str::to_owned),
        }
    }

    fn pointer_source(p: &str) -> TokenSource {
        TokenSource::Pointer(p.into())
    }

    #[test]
    fn token_and_input_by_pointer() {
        let m = msg(r#"{"taskToken":"T1","input":{"n":3}}"#, None);
        assert_eq!(
            extract(&m, &pointer_source("/taskToken"), Some("/input")),
            Ok(("T1".into(), r#"{"n":3}"#.into()))
        );
        // Without an input pointer the whole body is the input.
        assert_eq!(
            extract(&m, &pointer_source("/taskToken"), None).unwrap().1,
            m.body
        );
        // Nested pointers and RFC 6901 escapes.
        let m = msg(r#"{"meta":{"a/b":"T2"},"x":[1,{"y":true}]}"#, None);
        assert_eq!(
            extract(&m, &pointer_source("/meta/a~1b"), Some("/x/1")),
            Ok(("T2".into(), r#"{"y":true}"#.into()))
        );
    }

    #[test]
    fn token_from_an_attribute() {
        let m = msg(r#"{"n":1}"#, Some("T3"));
        assert_eq!(
            extract(&m, &TokenSource::Attribute("TaskToken".into()), None),
            Ok(("T3".into(), m.body.clone()))
        );
        let m = msg(r#"{"n":1}"#, None);
        assert_eq!(
            extract(&m, &TokenSource::Attribute("TaskToken".into()), None),
            Err(Malformed::TokenMissing)
        );
    }

    #[test]
    fn the_input_is_passed_on_exactly_as_it_was_written() {
        let input = r#"{"big": 123456789012345678901234567890, "f": 1.10, "e": 1e400, "s": "\u00e9\n", "a": [1.0, -0]}"#;
        let m = msg(&format!(r#"{{"taskToken":"T","input":{input}}}"#), None);
        assert_eq!(
            extract(&m, &pointer_source("/taskToken"), Some("/input")),
            Ok(("T".into(), input.into()))
        );
        // Deeper, through arrays, with escapes in keys and in the token.
        let m = msg(
            r#"{"meta":{"a/b":"T\u0032"},"x":[7,{"y":{"n":0.30000000000000004}}]}"#,
            None,
        );
        assert_eq!(
            extract(&m, &pointer_source("/meta/a~1b"), Some("/x/1/y")),
            Ok(("T2".into(), r#"{"n":0.30000000000000004}"#.into()))
        );
        // RFC 6901 indexes: no leading zeros or signs.
        for bad in [
            "/x/01",
            "/x/+1",
            "/x/2",
            "/x/-1",
            "/nope",
            "/meta/a~1b/deeper",
        ] {
            assert_eq!(
                extract(&m, &pointer_source("/meta/a~1b"), Some(bad)),
                Err(Malformed::InputMissing),
                "{bad}"
            );
        }
    }

    #[test]
    fn malformed_messages_say_why() {
        let p = pointer_source("/taskToken");
        assert_eq!(
            extract(&msg("not json", None), &p, None),
            Err(Malformed::BodyNotJson)
        );
        assert_eq!(
            extract(&msg("{}", None), &p, None),
            Err(Malformed::TokenMissing)
        );
        assert_eq!(
            extract(&msg(r#"{"taskToken":""}"#, None), &p, None),
            Err(Malformed::TokenMissing)
        );
        assert_eq!(
            extract(&msg(r#"{"taskToken":null}"#, None), &p, None),
            Err(Malformed::TokenMissing)
        );
        assert_eq!(
            extract(&msg(r#"{"taskToken":42}"#, None), &p, None),
            Err(Malformed::TokenNotString)
        );
        assert_eq!(
            extract(&msg(r#"{"taskToken":"T"}"#, None), &p, Some("/input")),
            Err(Malformed::InputMissing)
        );
    }
}
