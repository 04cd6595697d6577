//! SigV4 for the direct clients' requests, with the day's signing key kept.
//!
//! `aws-sigv4` (the SDK's signer) was 14% of the worker's CPU per activity
//! task in a profile (BENCHMARKS.md, issue 13): for every call it derives
//! the signing key again (four HMACs), parses the URL, builds the canonical
//! request and the string to sign as strings, and hex-formats through
//! `fmt`. The requests the direct clients send are one shape: a POST with a
//! few headers to a fixed endpoint. This signer derives the key once a day
//! per credentials, hashes the canonical request as it is written (no
//! string is built), and keeps the signing key's HMAC state.
//!
//! It produces what `aws-sigv4` with its default settings produces (signed
//! headers: the given ones, `host`, `x-amz-date`, and
//! `x-amz-security-token` when there is a session token; the path encoded
//! twice; no `x-amz-content-sha256` header): the tests sign the same
//! requests with both and compare, and the direct clients' tests check
//! every request they send by signing it again with `aws-sigv4`.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The headers a signature adds to a request.
#[derive(Debug)]
pub(crate) struct Signature {
    pub authorization: String,
    /// `x-amz-date`.
    pub amz_date: String,
    /// `x-amz-security-token`, for temporary credentials.
    pub security_token: Option<String>,
}

/// Signs for one service in one region.
pub(crate) struct Signer {
    region: String,
    service: &'static str,
    key: Mutex<Option<DayKey>>,
}

/// The signing key of one day for one set of credentials, as a ready HMAC.
struct DayKey {
    date: [u8; 8],
    access_key_id: String,
    secret: String,
    mac: HmacSha256,
}

impl Signer {
    pub fn new(region: &str, service: &'static str) -> Self {
        Self {
            region: region.to_owned(),
            service,
            key: Mutex::new(None),
        }
    }

    /// Sign a POST of `body` to `url` with `headers` (names in lower case),
    /// at `time`.
    pub fn sign(
        &self,
        credentials: &Credentials,
        time: SystemTime,
        url: &url::Url,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Signature {
        let amz_date = amz_date(time);
        let date: [u8; 8] = amz_date.as_bytes()[..8].try_into().unwrap_or_default();
        let token = credentials.session_token();

        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        // Every signed header, sorted by name: a handful, so a small vector.
        let mut signed: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 3);
        signed.extend_from_slice(headers);
        signed.push(("host", &host));
        signed.push(("x-amz-date", &amz_date));
        if let Some(token) = token {
            signed.push(("x-amz-security-token", token));
        }
        signed.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut signed_names = String::with_capacity(64);
        for (i, (name, _)) in signed.iter().enumerate() {
            if i > 0 {
                signed_names.push(';');
            }
            signed_names.push_str(name);
        }

        // The canonical request, hashed as it is written.
        let mut canonical = Sha256::new();
        canonical.update(b"POST\n");
        encode_path(&mut canonical, url.path());
        canonical.update(b"\n");
        encode_query(&mut canonical, url);
        canonical.update(b"\n");
        for (name, value) in &signed {
            canonical.update(name.as_bytes());
            canonical.update(b":");
            write_header_value(&mut canonical, value);
            canonical.update(b"\n");
        }
        canonical.update(b"\n");
        canonical.update(signed_names.as_bytes());
        canonical.update(b"\n");
        canonical.update(hex(&Sha256::digest(body)));

        let scope_tail = format!("/{}/{}/aws4_request", self.region, self.service);
        let date_str = std::str::from_utf8(&date).unwrap_or_default();
        let mut mac = self.day_key(credentials, date);
        mac.update(b"AWS4-HMAC-SHA256\n");
        mac.update(amz_date.as_bytes());
        mac.update(b"\n");
        mac.update(&date);
        mac.update(scope_tail.as_bytes());
        mac.update(b"\n");
        mac.update(&hex(&canonical.finalize()));
        let signature = hex(&mac.finalize().into_bytes());

        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{date_str}{scope_tail}, SignedHeaders={signed_names}, Signature={}",
            credentials.access_key_id(),
            std::str::from_utf8(&signature).unwrap_or_default(),
        );
        Signature {
            authorization,
            security_token: token.map(str::to_owned),
            amz_date,
        }
    }

    /// The HMAC of the day's signing key, derived once per day and credentials.
    fn day_key(&self, credentials: &Credentials, date: [u8; 8]) -> HmacSha256 {
        let mut cached = self.key.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = &*cached
            && k.date == date
            && k.access_key_id == credentials.access_key_id()
            && k.secret == credentials.secret_access_key()
        {
            return k.mac.clone();
        }
        let hmac = |key: &[u8], data: &[u8]| {
            let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.finalize().into_bytes()
        };
        let secret = format!("AWS4{}", credentials.secret_access_key());
        let k = hmac(secret.as_bytes(), &date);
        let k = hmac(&k, self.region.as_bytes());
        let k = hmac(&k, self.service.as_bytes());
        let k = hmac(&k, b"aws4_request");
        let mac = HmacSha256::new_from_slice(&k).expect("HMAC takes any key length");
        *cached = Some(DayKey {
            date,
            access_key_id: credentials.access_key_id().to_owned(),
            secret: credentials.secret_access_key().to_owned(),
            mac: mac.clone(),
        });
        mac
    }
}

/// `YYYYMMDDTHHMMSSZ` in UTC.
fn amz_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn hex(bytes: &[u8]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'0'; 64];
    for (i, b) in bytes.iter().take(32).enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    out
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn percent_encode(hasher: &mut Sha256, bytes: &[u8], keep_slash: bool) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if unreserved(b) || (keep_slash && b == b'/') {
            continue;
        }
        hasher.update(&bytes[start..i]);
        hasher.update([
            b'%',
            DIGITS[usize::from(b >> 4)],
            DIGITS[usize::from(b & 0xf)],
        ]);
        start = i + 1;
    }
    hasher.update(&bytes[start..]);
}

/// The path as sent (the URL keeps it percent-encoded), normalized as
/// `aws-sigv4` and the service do (RFC 3986 dot segments removed, empty
/// segments dropped: `//` is one `/`), then encoded once more: SigV4's
/// double encoding for every service but S3.
fn encode_path(hasher: &mut Sha256, path: &str) {
    if path.is_empty() {
        hasher.update(b"/");
        return;
    }
    if !(path.contains('.') || path.contains("//")) && path.starts_with('/') {
        // Every path the worker builds itself: nothing to normalize.
        percent_encode(hasher, path.as_bytes(), true);
        return;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    for segment in &segments {
        hasher.update(b"/");
        percent_encode(hasher, segment.as_bytes(), true);
    }
    // A trailing slash (or a trailing dot segment, which stands for one)
    // stays; an empty result is the root.
    let trailing = ["/", "/.", "/..", "/./", "/../"]
        .iter()
        .any(|end| path.ends_with(end));
    if segments.is_empty() || trailing {
        hasher.update(b"/");
    }
}

/// Query parameters decoded, encoded again, then sorted: by the encoded
/// name, then the encoded value (what the service compares; sorting before
/// encoding orders `/` and `-`, or non-ASCII, differently).
fn encode_query(hasher: &mut Sha256, url: &url::Url) {
    if url.query().is_none_or(str::is_empty) {
        return;
    }
    let encode = |text: &str| {
        let mut out = String::with_capacity(text.len());
        for b in text.bytes() {
            if unreserved(b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (encode(&k), encode(&v)))
        .collect();
    pairs.sort();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            hasher.update(b"&");
        }
        hasher.update(k.as_bytes());
        hasher.update(b"=");
        hasher.update(v.as_bytes());
    }
}

/// Spaces trimmed, runs of spaces as one; other whitespace (tabs) kept,
/// as `aws-sigv4` does.
fn write_header_value(hasher: &mut Sha256, value: &str) {
    let value = value.trim_matches(' ');
    if !value.contains("  ") {
        hasher.update(value.as_bytes());
        return;
    }
    let mut last_space = false;
    for b in value.bytes() {
        if b == b' ' {
            if !last_space {
                hasher.update(b" ");
            }
            last_space = true;
        } else {
            hasher.update([b]);
            last_space = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;

    use super::*;

    /// What `aws-sigv4` (the SDK's signer) makes of the same request.
    fn reference(
        credentials: &Credentials,
        region: &str,
        service: &str,
        time: SystemTime,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<(String, String)> {
        let identity = Identity::from(credentials.clone());
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .expect("params")
            .into();
        let request = SignableRequest::new(
            "POST",
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .expect("signable");
        let (instructions, _) = sign(request, &params).expect("sign").into_parts();
        let (headers, _) = instructions.into_parts();
        headers
            .iter()
            .map(|h| (h.name().to_owned(), h.value().to_owned()))
            .collect()
    }

    fn ours(signature: &Signature) -> Vec<(String, String)> {
        let mut out = vec![
            ("x-amz-date".to_owned(), signature.amz_date.clone()),
            ("authorization".to_owned(), signature.authorization.clone()),
        ];
        if let Some(token) = &signature.security_token {
            out.push(("x-amz-security-token".to_owned(), token.clone()));
        }
        out
    }

    fn keys(id: &str, secret: &str, token: Option<&str>) -> Credentials {
        Credentials::new(id, secret, token.map(str::to_owned), None, "test")
    }

    fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
        v.sort();
        v
    }

    /// Service, URL, headers, body.
    type Case<'a> = (
        &'static str,
        &'static str,
        &'a [(&'static str, &'static str)],
        &'static [u8],
    );

    #[test]
    fn signs_as_the_sdks_signer_does() {
        let long_term = keys(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
        );
        let temporary = keys("ASIAEXAMPLE", "c2VjcmV0", Some("FwoGZXIvYXdzE//token+/="));
        let t0 = UNIX_EPOCH + Duration::from_secs(1_764_460_799); // 2025-11-29T23:59:59Z
        let times = [
            t0,
            t0 + Duration::from_secs(1), // the next day: a new key
            UNIX_EPOCH + Duration::from_secs(951_782_400), // 2000-02-29
            UNIX_EPOCH + Duration::from_secs(4_107_542_399), // 2100-02-28T23:59:59
        ];
        let json = [
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", "AWSStepFunctions.SendTaskSuccess"),
        ];
        let cases: Vec<Case> = vec![
            (
                "states",
                "https://states.us-east-1.amazonaws.com/",
                &json,
                br#"{"taskToken":"AAAA+/=","output":"{}"}"#,
            ),
            ("states", "http://127.0.0.1:4566", &json, b"{}"),
            (
                "sqs",
                "http://localhost:4566/",
                &json,
                br#"{"QueueUrl":"http://localhost:4566/000000000000/q"}"#,
            ),
            (
                "lambda",
                "https://lambda.eu-west-1.amazonaws.com/2025-12-01/durable-execution-callbacks/ab%2Fc%2B%3D%20d/heartbeat",
                &[],
                b"",
            ),
            (
                "lambda",
                "http://127.0.0.1:5000/2025-12-01/durable-execution-callbacks/Zm9v~bar-_.x/succeed",
                &[("content-type", "application/octet-stream")],
                b"\x00\xff binary",
            ),
            (
                "states",
                "https://example.com/a/b?z=1&a=two%20words&a=1&empty=",
                &[("x-custom", "  spaced   out  ")],
                b"x",
            ),
            // Endpoint URLs a user might configure: sorted after encoding
            // (`%2F` before `-`, `%C3%A9` before `z`), empty segments
            // dropped, a trailing slash kept, tabs kept in header values.
            (
                "states",
                "https://proxy.example.com//sfn//v1/?b=%2F&b=-&a=z&a=%C3%A9&c",
                &[("x-custom", "\tleading tab ")],
                b"{}",
            ),
            ("sqs", "http://proxy:8080/a/./b/../c//", &json, b"{}"),
            ("sqs", "http://proxy:8080//", &json, b"{}"),
            ("lambda", "http://proxy:8080/x.y/..z/.hidden", &[], b""),
        ];
        for credentials in [&long_term, &temporary] {
            for region in ["us-east-1", "eu-west-1"] {
                let mut signers: Vec<Signer> = Vec::new();
                for (service, url, headers, body) in &cases {
                    let signer = Signer::new(region, service);
                    for time in times {
                        let parsed = url::Url::parse(url).expect("url");
                        // Sign with the URL as it is sent (its parsed form).
                        let expected = sorted(reference(
                            credentials,
                            region,
                            service,
                            time,
                            parsed.as_str(),
                            headers,
                            body,
                        ));
                        let got = sorted(ours(&signer.sign(
                            credentials,
                            time,
                            &parsed,
                            headers,
                            body,
                        )));
                        assert_eq!(got, expected, "{service} {url} {time:?} {region}");
                    }
                    signers.push(signer);
                }
            }
        }
    }

    /// Raw paths, which `url::Url` never hands over (it resolves dot
    /// segments itself), against aws-sigv4's `normalize_uri_path` (RFC 3986
    /// dot-segment removal, empty segments dropped, a trailing slash kept)
    /// followed by the second encoding.
    #[test]
    fn raw_paths_are_normalized_as_aws_sigv4_does() {
        for (path, canonical) in [
            ("", "/"),
            ("/", "/"),
            ("//", "/"),
            ("/.", "/"),
            ("/..", "/"),
            (".", "/"),
            ("foo", "/foo"),
            ("foo/.", "/foo/"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a/./b", "/a/b"),
            ("/a//b/", "/a/b/"),
            ("/a/../../b", "/b"),
            ("/x.y/..z/.hidden", "/x.y/..z/.hidden"),
            ("/a%2Fb", "/a%252Fb"),
            ("/a%2F./b c", "/a%252F./b%20c"),
        ] {
            let mut ours = Sha256::new();
            encode_path(&mut ours, path);
            assert_eq!(
                ours.finalize(),
                Sha256::digest(canonical.as_bytes()),
                "{path:?} should be {canonical:?}"
            );
        }
    }

    #[test]
    fn a_new_secret_on_the_same_day_gets_a_new_key() {
        let signer = Signer::new("us-east-1", "states");
        let url = url::Url::parse("https://states.us-east-1.amazonaws.com/").expect("url");
        let time = SystemTime::now();
        let first = keys("AKID", "secret-one", None);
        let rotated = keys("AKID", "secret-two", None);
        let a = signer.sign(&first, time, &url, &[], b"{}");
        let b = signer.sign(&rotated, time, &url, &[], b"{}");
        assert_ne!(a.authorization, b.authorization);
        let expected = sorted(reference(
            &rotated,
            "us-east-1",
            "states",
            time,
            url.as_str(),
            &[],
            b"{}",
        ));
        assert_eq!(sorted(ours(&b)), expected);
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(
            amz_date(UNIX_EPOCH + Duration::from_secs(951_868_799)),
            "20000229T235959Z"
        );
        assert_eq!(
            amz_date(UNIX_EPOCH + Duration::from_secs(1_764_460_800)),
            "20251130T000000Z"
        );
    }
}
