//! Task tokens (and durable callback ids) are bearer credentials: whoever
//! holds one can complete the task. Logs, metrics, spans and the causes the
//! worker sends carry a fingerprint instead, and text that may hold a token
//! (a handler's error, an AWS error message that quotes the request) is
//! [`redact`]ed before it goes anywhere.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

/// A fragment of a token this long or longer at either end of a text is
/// redacted too: a cause cut to its limit (or a command's stderr kept from
/// its tail) may begin or end in the middle of a token.
const MIN_FRAGMENT_CHARS: usize = 16;

/// A short, stable fingerprint of a task token, safe to log.
///
/// Logs and metrics only ever carry this fingerprint (the first 12 hex
/// digits of its SHA-256), which is enough to correlate log lines of one task.
pub fn fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(12);
    for byte in &digest[..6] {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// `text` with every occurrence of `token` replaced by `<token FINGERPRINT>`,
/// and a piece of the token at either end of `text` (at least
/// [`MIN_FRAGMENT_CHARS`] long: what is left of a token where the text was
/// cut) by `<token ...>`. Borrowed when there is nothing to hide, which is
/// the common case and costs one substring search.
pub fn redact<'a>(text: &'a str, token: &str) -> Cow<'a, str> {
    if token.len() < MIN_FRAGMENT_CHARS || text.len() < MIN_FRAGMENT_CHARS {
        // Too short to be worth hiding, or to hold anything worth hiding
        // (a one-character "token" would redact every text).
        return Cow::Borrowed(text);
    }
    let mut out: Cow<'a, str> = Cow::Borrowed(text);
    if text.contains(token) {
        out = Cow::Owned(text.replace(token, &format!("<token {}>", fingerprint(token))));
    }
    // A prefix of the token at the end of the text.
    if let Some(cut) = edge_fragment(&out, token, Edge::End) {
        let mut s = out.into_owned();
        s.truncate(cut);
        s.push_str("<token ...>");
        out = Cow::Owned(s);
    }
    // A suffix of the token at the start of the text.
    if let Some(cut) = edge_fragment(&out, token, Edge::Start) {
        out = Cow::Owned(format!("<token ...>{}", &out[cut..]));
    }
    out
}

#[derive(Clone, Copy)]
enum Edge {
    Start,
    End,
}

/// Where a fragment of `token` at one edge of `text` ends (`Edge::Start`)
/// or begins (`Edge::End`), if there is one of at least
/// [`MIN_FRAGMENT_CHARS`] bytes. Tokens are ASCII; a boundary that falls
/// inside a character of `text` is no match.
fn edge_fragment(text: &str, token: &str, edge: Edge) -> Option<usize> {
    let longest = text.len().min(token.len() - 1);
    (MIN_FRAGMENT_CHARS..=longest)
        .rev()
        .find_map(|n| match edge {
            Edge::End => {
                let at = text.len() - n;
                (text.is_char_boundary(at) && token.as_bytes()[..n] == text.as_bytes()[at..])
                    .then_some(at)
            }
            Edge::Start => (text.is_char_boundary(n)
                && token.as_bytes()[token.len() - n..] == text.as_bytes()[..n])
                .then_some(n),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "AAAAKgAAAAIAAAAAAAAAAf+secret/token=material";

    #[test]
    fn fingerprint_is_short_stable_and_hides_the_token() {
        let fp = fingerprint(TOKEN);
        assert_eq!(fp.len(), 12);
        assert_eq!(fp, fingerprint(TOKEN));
        assert!(!TOKEN.contains(&fp));
        assert_ne!(fp, fingerprint("another token"));
    }

    #[test]
    fn redact_hides_whole_tokens_and_cut_ends() {
        let fp = fingerprint(TOKEN);
        let text = format!(r#"stdin was {{"taskToken":"{TOKEN}","input":1}} twice: {TOKEN}"#);
        let r = redact(&text, TOKEN);
        assert!(!r.contains(TOKEN), "{r}");
        assert_eq!(r.matches(&format!("<token {fp}>")).count(), 2, "{r}");
        // Cut at the end (a cause at its limit), and the tail of a stderr.
        let cut = format!("error: {}", &TOKEN[..30]);
        assert_eq!(redact(&cut, TOKEN), "error: <token ...>");
        let tail = format!("{} was refused", &TOKEN[TOKEN.len() - 20..]);
        assert_eq!(redact(&tail, TOKEN), "<token ...> was refused");
    }

    #[test]
    fn redact_leaves_other_text_alone_and_borrowed() {
        for text in [
            "exit code 1; stderr: boom",
            // Short pieces of the token are not the token.
            "AAAAKgAAAA at the start, material at the end",
            "",
        ] {
            assert!(matches!(redact(text, TOKEN), Cow::Borrowed(t) if t == text));
        }
        // A token too short to hide safely is not hidden (it would match
        // everywhere); real tokens are hundreds of characters.
        assert_eq!(redact("a b c", "b"), "a b c");
        // Multi-byte text next to a fragment does not split a character.
        let text = format!("é{}", &TOKEN[..20]);
        assert_eq!(redact(&text, TOKEN), "é<token ...>");
    }
}
