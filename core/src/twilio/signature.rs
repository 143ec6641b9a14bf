//! `X-Twilio-Signature`: HMAC over the public URL and the sorted form parameters.
//!
//! The string to sign is the URL exactly as Twilio requested it (scheme through query string, no decoding,
//! case preserved) followed by `key + value` for every decoded form field, sorted by key and then by value
//! (byte order), identical pairs counted once. The signature is the base64 HMAC of that string, keyed with
//! the account Auth Token (HMAC-SHA1), or with a shared key when the account opted into HMAC-SHA256.
//!
//! Twilio is inconsistent about ports when it signs, so a request is accepted when the signature matches
//! the URL as given, the URL with its port removed, or the URL with the scheme's default port added
//! (see [`url_variants`]). Nothing else is normalised: a different host case or path is a different URL.
//!
//! Non-form bodies (JSON webhooks) are signed differently: Twilio appends `bodySHA256=<hex>` to the query,
//! signs the URL alone, and the receiver must check the body against that hash ([`validate_with_body`]).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// The HMAC that keys a signature. Legacy accounts (no `X-Twilio-Webhooks-Signature-Settings` header, or no
/// `algorithm=` in it) use HMAC-SHA1 with the Auth Token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha1,
    HmacSha256,
}

/// Why a request failed validation. The HTTP answer is the same 403 for all of them; the variant is for the
/// log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("X-Twilio-Signature does not match the URL and parameters")]
    Mismatch,
    #[error("non-form body but the URL carries no bodySHA256 query parameter")]
    MissingBodyHash,
    #[error("SHA-256 of the body does not match the bodySHA256 query parameter")]
    BodyHashMismatch,
}

/// The signature Twilio sends for a form POST (or a GET with `params` empty) to `url`, keyed with the Auth
/// Token (HMAC-SHA1). `url` is signed exactly as given; see [`validate`] for the accepted port variants.
pub fn compute_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    compute_signature_with(Algorithm::HmacSha1, auth_token, url, params)
}

/// [`compute_signature`] with an explicit algorithm and key.
pub fn compute_signature_with(algorithm: Algorithm, key: &str, url: &str, params: &[(String, String)]) -> String {
    let data = string_to_sign(url, params);
    let digest = match algorithm {
        Algorithm::HmacSha1 => {
            let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
            mac.update(data.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Algorithm::HmacSha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
            mac.update(data.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    STANDARD.encode(digest)
}

/// The exact string whose HMAC is the signature: `url` followed by `key + value` for each parameter, sorted
/// by key then value in byte order. A repeated key contributes each of its values; identical `(key, value)`
/// pairs contribute once (all official helper libraries sign `sorted(set(values))`).
pub fn string_to_sign(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let len = url.len() + sorted.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    let mut out = String::with_capacity(len);
    out.push_str(url);
    for (k, v) in sorted {
        out.push_str(k);
        out.push_str(v);
    }
    out
}

/// The URLs a signature is checked against, in order, without duplicates: `url` as given; with its port
/// removed (when it has one); with the scheme's default port (`:443` for https, `:80` for http) added (when
/// it has none). Userinfo, host case, path and query are left untouched. A URL without `scheme://` yields
/// only itself.
pub fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some(parts) = split_port(url) else { return variants };
    match parts.port {
        Some(_) => variants.push(format!("{}{}", parts.before_port, parts.after_port)),
        None => {
            let default = if parts.scheme.eq_ignore_ascii_case("https") {
                Some("443")
            } else if parts.scheme.eq_ignore_ascii_case("http") {
                Some("80")
            } else {
                None
            };
            if let Some(port) = default {
                variants.push(format!("{}:{}{}", parts.before_port, port, parts.after_port));
            }
        }
    }
    variants.dedup();
    variants
}

/// Lowercase hex SHA-256 of a raw request body, as Twilio puts it in `bodySHA256`.
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Whether `signature` is Twilio's HMAC-SHA1 signature of a form POST (or GET, `params` empty) to `url`,
/// with or without the port. Comparison is constant-time.
pub fn validate(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    verify(Algorithm::HmacSha1, auth_token, url, params, signature).is_ok()
}

/// Whether a request with a non-form `body` (e.g. JSON) is genuine: `url` must carry `bodySHA256`, the
/// signature must match `url` with no parameters (port variants allowed), and the body must hash to the
/// `bodySHA256` value. Both comparisons are constant-time.
pub fn validate_with_body(auth_token: &str, url: &str, body: &[u8], signature: &str) -> bool {
    verify_body(Algorithm::HmacSha1, auth_token, url, body, signature).is_ok()
}

/// [`validate`] with an explicit algorithm and key, saying why a request was refused.
pub fn verify(
    algorithm: Algorithm,
    key: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> Result<(), SignatureError> {
    // Every variant is computed and compared, so the time taken does not depend on which one matched.
    let mut matched = Choice::from(0);
    for candidate in url_variants(url) {
        let expected = compute_signature_with(algorithm, key, &candidate, params);
        matched |= expected.as_bytes().ct_eq(signature.as_bytes());
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// [`validate_with_body`] with an explicit algorithm and key, saying why a request was refused.
pub fn verify_body(
    algorithm: Algorithm,
    key: &str,
    url: &str,
    body: &[u8],
    signature: &str,
) -> Result<(), SignatureError> {
    let claimed = body_sha256_param(url).ok_or(SignatureError::MissingBodyHash)?;
    let signed = verify(algorithm, key, url, &[], signature);
    let body_matches = bool::from(body_sha256_hex(body).as_bytes().ct_eq(claimed.as_bytes()));
    signed?;
    if body_matches {
        Ok(())
    } else {
        Err(SignatureError::BodyHashMismatch)
    }
}

/// The first `bodySHA256` value in the query of `url` (percent-decoded), if any.
fn body_sha256_param(url: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    let query = query.split('#').next().unwrap_or_default();
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "bodySHA256").map(|(_, v)| v.into_owned())
}

struct PortSplit<'a> {
    scheme: &'a str,
    /// Scheme, `//`, userinfo and host: everything before the `:port`.
    before_port: &'a str,
    /// The digits after the host's `:`, if the authority has a port.
    port: Option<&'a str>,
    /// Path, query and fragment.
    after_port: &'a str,
}

/// Splits `scheme://[userinfo@]host[:port]rest` by hand: a URL parser would lower-case the host and
/// percent-encode non-ASCII characters, changing the string Twilio signed.
fn split_port(url: &str) -> Option<PortSplit<'_>> {
    let scheme_end = url.find("://")?;
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..].find(['/', '?', '#']).map(|i| authority_start + i).unwrap_or(url.len());
    let authority = &url[authority_start..authority_end];
    let host_start = authority.rfind('@').map(|i| i + 1).unwrap_or(0);
    let host_port = &authority[host_start..];
    // An IPv6 literal has colons of its own; its port follows the closing bracket.
    let search_from = if host_port.starts_with('[') { host_port.find(']')? } else { 0 };
    let colon = host_port[search_from..].rfind(':').map(|i| search_from + i);
    let (host_len, port) = match colon {
        Some(i) if host_port[i + 1..].bytes().all(|b| b.is_ascii_digit()) => (i, Some(&host_port[i + 1..])),
        Some(_) => return None,
        None => (host_port.len(), None),
    };
    let port_start = authority_start + host_start + host_len;
    Some(PortSplit {
        scheme: &url[..scheme_end],
        before_port: &url[..port_start],
        port,
        after_port: &url[authority_end..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_of_a_url_without_port_add_the_default_port() {
        assert_eq!(
            url_variants("https://user:pw@Example.com/a?b=1"),
            ["https://user:pw@Example.com/a?b=1", "https://user:pw@Example.com:443/a?b=1"]
        );
        assert_eq!(url_variants("http://example.com"), ["http://example.com", "http://example.com:80"]);
    }

    #[test]
    fn variants_of_a_url_with_port_remove_it() {
        assert_eq!(url_variants("https://example.com:8443/a"), ["https://example.com:8443/a", "https://example.com/a"]);
        assert_eq!(url_variants("http://[::1]:8080/x"), ["http://[::1]:8080/x", "http://[::1]/x"]);
        assert_eq!(url_variants("http://[::1]/x"), ["http://[::1]/x", "http://[::1]:80/x"]);
    }

    #[test]
    fn a_url_without_scheme_or_with_a_bad_port_is_only_itself() {
        assert_eq!(url_variants("example.com/a"), ["example.com/a"]);
        assert_eq!(url_variants("https://example.com:x/a"), ["https://example.com:x/a"]);
        assert_eq!(url_variants("ftp://example.com/a"), ["ftp://example.com/a"]);
    }

    #[test]
    fn body_hash_is_read_from_the_query_only() {
        assert_eq!(body_sha256_param("https://e.com/a?x=1&bodySHA256=ab#bodySHA256=cd").as_deref(), Some("ab"));
        assert_eq!(body_sha256_param("https://e.com/a#bodySHA256=cd"), None);
    }
}
