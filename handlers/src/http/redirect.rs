//! Which redirects the `http` handler follows.
//!
//! A redirect re-sends the request somewhere the configuration did not
//! name; with 307/308 that includes the body, which by default is the task
//! input (it may hold a task token or customer data). So by default only
//! the configured origin is followed, and some targets are never followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;
use serde::Deserialize;

/// Which redirects are followed (`params.redirects`). Whatever the
/// setting, a redirect from https to http and one to a link-local or
/// unspecified IP address (`169.254.0.0/16`, `fe80::/10`, `0.0.0.0`, `::`,
/// `fd00:ec2::254`: where cloud instance metadata answers) are never
/// followed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Redirects {
    /// None: a redirect fails the task.
    None,
    /// Only to the configured URL's origin: the same scheme, host and port.
    #[default]
    SameOrigin,
    /// To any origin. The secret headers stay behind; a 307/308 still
    /// sends the body there.
    AnyOrigin,
}

impl Redirects {
    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::SameOrigin => "same-origin",
            Self::AnyOrigin => "any-origin",
        }
    }
}

/// Why the redirect from `from` to `next` is not followed, if it is not.
/// `configured` is the URL the handler was configured with.
pub(super) fn refusal(
    policy: Redirects,
    configured: &Url,
    from: &Url,
    next: &Url,
) -> Option<String> {
    if let Some(ip) = host_ip(next).filter(|ip| metadata_like(*ip)) {
        return Some(format!(
            "{ip} is a link-local or unspecified address (where instance metadata \
             answers), never followed"
        ));
    }
    if from.scheme() == "https" && next.scheme() == "http" {
        return Some("it leaves https for http, never followed".to_owned());
    }
    match policy {
        Redirects::AnyOrigin => None,
        Redirects::SameOrigin if next.origin() == configured.origin() => None,
        Redirects::SameOrigin => Some(format!(
            "it leaves the origin of url ({}) and redirects = \"same-origin\"; set url to \
             where it leads, or redirects = \"any-origin\"",
            configured.origin().ascii_serialization()
        )),
        Redirects::None => Some(format!("redirects = \"{}\"", policy.name())),
    }
}

/// The host as an IP address, when it is written as one. (The URL parser
/// has already read every IPv4 spelling, `2852039166` or `0xa9.254.169.254`,
/// into the dotted form; IPv6 comes in brackets.)
fn host_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()
}

/// Link-local or unspecified, or AWS's IPv6 instance metadata address.
fn metadata_like(ip: IpAddr) -> bool {
    const EC2_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    let v4 = |ip: Ipv4Addr| ip.is_link_local() || ip.is_unspecified();
    match ip {
        IpAddr::V4(ip) => v4(ip),
        IpAddr::V6(ip) => {
            // fe80::/10, and the IPv4 ones written as ::ffff:a.b.c.d.
            (ip.segments()[0] & 0xffc0) == 0xfe80
                || ip.is_unspecified()
                || ip == EC2_METADATA_V6
                || ip.to_ipv4_mapped().is_some_and(v4)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn refused(policy: Redirects, configured: &str, from: &str, next: &str) -> Option<String> {
        refusal(policy, &url(configured), &url(from), &url(next))
    }

    #[test]
    fn same_origin_means_scheme_host_and_port() {
        let a = "https://api.internal/orders";
        let p = Redirects::SameOrigin;
        assert_eq!(refused(p, a, a, "https://api.internal:443/v2"), None);
        for other in [
            "https://api.internal:8443/",
            "https://other.internal/",
            "http://api.internal/",
        ] {
            assert!(refused(p, a, a, other).is_some(), "{other}");
            assert_eq!(
                refused(Redirects::AnyOrigin, a, a, other).is_some(),
                other.starts_with("http:"),
                "{other}"
            );
        }
        assert!(refused(Redirects::None, a, a, "https://api.internal/v2").is_some());
    }

    #[test]
    fn https_to_http_is_never_followed() {
        for policy in [Redirects::SameOrigin, Redirects::AnyOrigin] {
            let why = refused(policy, "https://a/", "https://a/x", "http://a/y").unwrap();
            assert!(why.contains("https for http"), "{why}");
        }
        // Upgrading is fine where the origin rule allows it.
        assert_eq!(
            refused(Redirects::AnyOrigin, "http://a/", "http://a/", "https://a/"),
            None
        );
        // A downgrade later in the chain counts too.
        assert!(refused(Redirects::AnyOrigin, "http://a/", "https://b/", "http://c/").is_some());
    }

    #[test]
    fn link_local_and_unspecified_addresses_are_never_followed() {
        for target in [
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.0.1:8080/",
            "http://2852039166/", // 169.254.169.254 as one number
            "http://0.0.0.0/",
            "http://[fe80::1]/",
            "http://[febf::1]/",
            "http://[::]/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:169.254.169.254]/",
        ] {
            for policy in [Redirects::SameOrigin, Redirects::AnyOrigin] {
                let why = refused(policy, target, target, target).unwrap_or_default();
                assert!(why.contains("link-local"), "{target} {policy:?}: {why}");
            }
        }
        for fine in [
            "http://169.255.0.1/",
            "http://[fec0::1]/",
            "http://[fd00:ec2::253]/",
            "http://127.0.0.1:8080/",
        ] {
            assert_eq!(
                refused(Redirects::AnyOrigin, "http://a/", "http://a/", fine),
                None,
                "{fine}"
            );
        }
    }
}
