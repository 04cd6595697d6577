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
    sha256_hex(token, 6)
}

/// The first `bytes` bytes of `token`'s SHA-256, in lower-case hex: the
/// fingerprint (6 bytes) and the task ledger's key (all 32).
pub(crate) fn sha256_hex(token: &str, bytes: usize) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(bytes * 2);
    for byte in digest.iter().take(bytes) {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// `text` with every occurrence of `token` replaced by `<token FINGERPRINT>`,
/// and pieces of the token by `<token ...>`: any piece 32 bytes or longer,
/// and one of 16 bytes or more at the text's start or end (what is left of
/// a token where a text was cut: a cause at its limit, the tail of a
/// command's stderr, the first bytes of an answer). The token is also looked
/// for as JSON encoders may escape it whole (`\/`, or every symbol as
/// `\u002B`) and as a URL carries it (percent-encoded, either case).
/// Borrowed when there is nothing to hide, which is the common case.
pub fn redact<'a>(text: &'a str, token: &str) -> Cow<'a, str> {
    if token.len() < MIN_FRAGMENT_CHARS || text.len() < MIN_FRAGMENT_CHARS {
        // Too short to be worth hiding, or to hold anything worth hiding
        // (a one-character "token" would redact every text).
        return Cow::Borrowed(text);
    }
    let forms = forms(token);
    let mut out: Cow<'a, str> = Cow::Borrowed(text);
    // Whole forms first: a piece of the plain form must not cut an escaped
    // whole one apart before it is found.
    let whole = format!("<token {}>", fingerprint(token));
    for form in &forms {
        if out.contains(form.as_str()) {
            out = Cow::Owned(out.replace(form.as_str(), &whole));
        }
    }
    for form in &forms {
        if let Some(s) = redact_pieces(&out, form) {
            out = Cow::Owned(s);
        }
    }
    out
}

/// The token as written, as JSON encoders may escape it (`\/`, or
/// `\u002B` as .NET and Gson write `+`), as a URL carries it (either case).
fn forms(token: &str) -> Vec<String> {
    let mut forms = vec![token.to_owned()];
    for form in [
        token.replace('/', "\\/"),
        escaped(token, |b| format!("%{b:02X}")),
        escaped(token, |b| format!("%{b:02x}")),
        escaped(token, |b| format!("\\u{b:04X}")),
        escaped(token, |b| format!("\\u{b:04x}")),
    ] {
        if !forms.contains(&form) {
            forms.push(form);
        }
    }
    forms
}

/// `s` with every byte but letters, digits and `-._~` written by `escape`.
fn escaped(s: &str, escape: impl Fn(u8) -> String) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&escape(b));
        }
    }
    out
}

/// The pieces of one form of the token out of `text`; `None` when there
/// were none.
fn redact_pieces(text: &str, form: &str) -> Option<String> {
    let pieces = fragments(text, form);
    if pieces.is_empty() {
        return None;
    }
    let mut s = text.to_owned();
    // Back to front, so earlier ranges stay where they are.
    for (start, end) in pieces.into_iter().rev() {
        s.replace_range(start..end, "<token ...>");
    }
    Some(s)
}

/// The byte ranges of `text` that are pieces of `token` at least
/// [`MIN_FRAGMENT_CHARS`] long, sorted and apart. Any piece 32 bytes or
/// longer holds one of the token's 16-byte chunks at a multiple of 16,
/// which is where the search starts (then it grows the match both ways);
/// shorter pieces are looked for at the text's two ends, where a cut
/// leaves them.
fn fragments(text: &str, token: &str) -> Vec<(usize, usize)> {
    // Bytes throughout: a token (or a text) that is not ASCII must not
    // make a slice cut a character.
    let (t, k) = (text.as_bytes(), token.as_bytes());
    let n = MIN_FRAGMENT_CHARS;
    let mut found: Vec<(usize, usize)> = Vec::new();
    let mut chunk_at = 0;
    while chunk_at + n <= k.len() {
        let chunk = &k[chunk_at..chunk_at + n];
        let mut from = 0;
        while let Some(i) = memchr::memmem::find(&t[from..], chunk).map(|i| i + from) {
            // Grow the match: left while the bytes before agree, right
            // likewise.
            let (mut l, mut tl) = (i, chunk_at);
            while l > 0 && tl > 0 && t[l - 1] == k[tl - 1] {
                l -= 1;
                tl -= 1;
            }
            let (mut r, mut tr) = (i + n, chunk_at + n);
            while r < t.len() && tr < k.len() && t[r] == k[tr] {
                r += 1;
                tr += 1;
            }
            found.push((l, r));
            from = r.max(i + 1);
            if from >= t.len() {
                break;
            }
        }
        chunk_at += n;
    }
    if let Some(at) = edge_fragment(text, token, Edge::End) {
        found.push((at, text.len()));
    }
    if let Some(at) = edge_fragment(text, token, Edge::Start) {
        found.push((0, at));
    }
    // Only whole characters, merged where they touch.
    found.retain(|&(l, r)| text.is_char_boundary(l) && text.is_char_boundary(r) && r - l >= n);
    found.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (l, r) in found {
        match merged.last_mut() {
            Some(last) if l <= last.1 => last.1 = last.1.max(r),
            _ => merged.push((l, r)),
        }
    }
    merged
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

    /// The review's case: a cut that leaves the token's piece inside the
    /// text, not at its edge (`"exit code 1; stderr: " + the tail`, an
    /// answer's first KiB followed by `...`, a quoted excerpt).
    #[test]
    fn redact_hides_pieces_inside_a_text() {
        let long: String = (0..40).map(|i| format!("{TOKEN}{i}")).collect::<String>();
        let token = &long[..800];
        for text in [
            format!("exit code 1; stderr: {}", &token[1..]),
            format!("HTTP 500: {}...", &token[..300]),
            format!("stdout began: {:?} and more", &token[100..250]),
            // JSON escapes the slash; a URL path percent-encodes it.
            format!("body {}", token.replace('/', "\\/")),
            format!(
                "no route for /callbacks/{}/succeed",
                escaped(token, |b| format!("%{b:02X}"))
            ),
        ] {
            let r = redact(&text, token);
            assert!(r.contains("<token"), "{r}");
            for piece in [&token[..16], &token[400..432], &token[token.len() - 16..]] {
                assert!(
                    !r.contains(piece) || !text.contains(piece),
                    "{piece} left in {r}"
                );
            }
            // Nothing 32 bytes long of the token is left in any form.
            for form in forms(token) {
                for i in (0..form.len().saturating_sub(32)).step_by(7) {
                    assert!(
                        !r.contains(&form[i..i + 32]),
                        "a piece of the token is left: {r}"
                    );
                }
            }
        }
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

    /// Review of issue 21: a token that is not ASCII (a malformed message
    /// carries anything) must not panic redaction on a char boundary.
    #[test]
    fn a_token_that_is_not_ascii_is_redacted_without_a_panic() {
        let token = format!("a{}", "é".repeat(40));
        let text = format!("failed for {} and {}", &token, &token[..25]);
        let r = redact(&text, &token);
        assert!(!r.contains(&token), "{r}");
        // The other way round: an ASCII token in a text that is not.
        let text = format!("ééé{}ééé", &TOKEN[3..40]);
        let r = redact(&text, TOKEN);
        assert!(!r.contains(&TOKEN[3..40]), "{r}");
    }

    /// .NET and Gson escape `+` and `=` in JSON as `\u002B`, `\u003D`; a
    /// URL may carry lowercase percent-escapes.
    #[test]
    fn escaped_forms_are_redacted() {
        let fp = fingerprint(TOKEN);
        for form in [
            TOKEN
                .replace('+', "\\u002B")
                .replace('=', "\\u003D")
                .replace('/', "\\u002F"),
            TOKEN
                .replace('+', "%2b")
                .replace('=', "%3d")
                .replace('/', "%2f"),
        ] {
            let text = format!("sent {form} back");
            let r = redact(&text, TOKEN);
            assert_eq!(r, format!("sent <token {fp}> back"), "{form}");
        }
    }
}
