//! Finding the task token and input in a message.

use crate::aws::Message;
use crate::config::TokenSource;

/// Why a message cannot become a task: the `reason` label of
/// `sfn_worker_malformed_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    BodyNotJson,
    TokenMissing,
    TokenNotString,
    InputMissing,
}

impl Malformed {
    pub fn reason(self) -> &'static str {
        match self {
            Malformed::BodyNotJson => "body_not_json",
            Malformed::TokenMissing => "token_missing",
            Malformed::TokenNotString => "token_not_string",
            Malformed::InputMissing => "input_missing",
        }
    }
}

/// The (token, input JSON text) a message carries.
pub(crate) fn extract(
    m: &Message,
    token: &TokenSource,
    input_pointer: Option<&str>,
) -> Result<(String, String), Malformed> {
    let body: serde_json::Value =
        serde_json::from_str(&m.body).map_err(|_| Malformed::BodyNotJson)?;
    let token = match token {
        TokenSource::Pointer(p) => match body.pointer(p) {
            None | Some(serde_json::Value::Null) => return Err(Malformed::TokenMissing),
            Some(serde_json::Value::String(s)) if s.is_empty() => {
                return Err(Malformed::TokenMissing);
            }
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(Malformed::TokenNotString),
        },
        TokenSource::Attribute(_) => match &m.attribute {
            Some(s) if !s.is_empty() => s.clone(),
            _ => return Err(Malformed::TokenMissing),
        },
    };
    let input = match input_pointer {
        None => m.body.clone(),
        Some(p) => body.pointer(p).ok_or(Malformed::InputMissing)?.to_string(),
    };
    Ok((token, input))
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
            attribute: attribute.map(str::to_owned),
        }
    }

    fn pointer(p: &str) -> TokenSource {
        TokenSource::Pointer(p.into())
    }

    #[test]
    fn token_and_input_by_pointer() {
        let m = msg(r#"{"taskToken":"T1","input":{"n":3}}"#, None);
        assert_eq!(
            extract(&m, &pointer("/taskToken"), Some("/input")),
            Ok(("T1".into(), r#"{"n":3}"#.into()))
        );
        // Without an input pointer the whole body is the input.
        assert_eq!(extract(&m, &pointer("/taskToken"), None).unwrap().1, m.body);
        // Nested pointers and RFC 6901 escapes.
        let m = msg(r#"{"meta":{"a/b":"T2"},"x":[1,{"y":true}]}"#, None);
        assert_eq!(
            extract(&m, &pointer("/meta/a~1b"), Some("/x/1")),
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
    fn malformed_messages_say_why() {
        let p = pointer("/taskToken");
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
