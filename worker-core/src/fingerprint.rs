use sha2::{Digest, Sha256};

/// A short, stable fingerprint of a task token, safe to log.
///
/// A task token is a bearer credential: whoever holds it can complete the task.
/// Logs and metrics only ever carry this fingerprint (the first 12 hex digits
/// of its SHA-256), which is enough to correlate log lines of one task.
pub fn fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(12);
    for byte in &digest[..6] {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_short_stable_and_hides_the_token() {
        let token = "AAAAKgAAAAIAAAAAAAAAAf-secret-token-material";
        let fp = fingerprint(token);
        assert_eq!(fp.len(), 12);
        assert_eq!(fp, fingerprint(token));
        assert!(!token.contains(&fp));
        assert_ne!(fp, fingerprint("another token"));
    }
}
