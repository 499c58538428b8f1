//! Deliveries signed per the Standard Webhooks specification: the headers
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (space-separated `v1,<base64>` signatures, several during a sender's own
//! key rotation), each an HMAC-SHA256 of `<id>.<timestamp>.<body>` under
//! the key a `whsec_<base64>` secret holds. A timestamp more than
//! [`TOLERANCE_SECS`] away from now is refused, so a captured delivery
//! cannot be sent again later; within it, the id is what tells a repeat.
//! Paddock's own notifications are signed the same way ([`sign`]).

use super::{check_delivery_id, Verified};
use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a delivery's timestamp may be from the server's clock.
pub const TOLERANCE_SECS: i64 = 5 * 60;
/// Longest delivery id taken.
const ID_MAX_BYTES: usize = 256;
/// Most signatures looked at in one `webhook-signature` (a sender rotating
/// its key sends two or three).
const SIGNATURES_MAX: usize = 8;
/// An HMAC-SHA256's length.
const TAG_BYTES: usize = 32;
/// Prefix of a secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The HMAC of a message under a `whsec_` secret (none for a secret that
/// is not one).
fn mac(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<Hmac<Sha256>> {
    let key = STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The `webhook-signature` of a message Paddock sends (a notification),
/// under a `whsec_` secret.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let tag = mac(secret, id, timestamp, body)?.finalize().into_bytes();
    Some(format!("v1,{}", STANDARD.encode(tag)))
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, String> {
    let value = headers
        .get(name)
        .ok_or_else(|| format!("no {name} header: deliveries are signed per Standard Webhooks"))?;
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| format!("the {name} header is not text"))
}

/// Checks a delivery against the trigger's secrets (the current one, and
/// the one before while it is accepted) at time `now` (Unix seconds):
/// what it is, or why it is refused.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[String],
    now: i64,
) -> Result<Verified, String> {
    let id = header(headers, "webhook-id")?;
    check_delivery_id(id, "a webhook-id", ID_MAX_BYTES)?;
    let timestamp: i64 = header(headers, "webhook-timestamp")?
        .parse()
        .map_err(|_| "the webhook-timestamp is not a number of seconds".to_owned())?;
    let age_secs = now.checked_sub(timestamp).unwrap_or(i64::MAX);
    if age_secs
        .checked_abs()
        .is_none_or(|age| age > TOLERANCE_SECS)
    {
        return Err(format!(
            "the webhook-timestamp is {age_secs} s from the server's clock, more than the \
             {TOLERANCE_SECS} s allowed"
        ));
    }
    let listed: Vec<&str> = header(headers, "webhook-signature")?
        .split_whitespace()
        .collect();
    if listed.len() > SIGNATURES_MAX {
        return Err(format!(
            "the webhook-signature lists more than {SIGNATURES_MAX} signatures"
        ));
    }
    let signatures: Vec<Vec<u8>> = listed
        .iter()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        .filter(|s| s.len() == TAG_BYTES)
        .collect();
    if signatures.is_empty() {
        return Err("the webhook-signature holds no v1 signature".into());
    }
    for secret in secrets {
        // The body is hashed once per secret; each signature is compared
        // (in constant time) with the tag that makes.
        let Some(mac) = mac(secret, id, timestamp, body) else {
            continue;
        };
        if signatures
            .iter()
            .any(|s| mac.clone().verify_slice(s).is_ok())
        {
            return Ok(Verified {
                id: id.to_owned(),
                how: format!(
                    "Standard Webhooks: HMAC-SHA256 over its id, timestamp and body; sent \
                     {age_secs} s before it arrived"
                ),
            });
        }
    }
    Err("no signature matches this body under the trigger's secret".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's own example.
    #[test]
    fn the_specifications_example_verifies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "webhook-id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().unwrap(),
        );
        headers.insert("webhook-timestamp", "1614265330".parse().unwrap());
        headers.insert(
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
                .parse()
                .unwrap(),
        );
        let body = br#"{"test": 2432232314}"#;
        let secret = vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()];
        let ok = verify(&headers, body, &secret, 1614265330 + 10).unwrap();
        assert_eq!(ok.id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
        assert!(ok.how.contains("sent 10 s before"), "{}", ok.how);
        assert!(verify(&headers, b"{}", &secret, 1614265330).is_err());
        assert!(verify(&headers, body, &secret, 1614265330 + 301).is_err());
        assert!(verify(&headers, body, &[new_secret()], 1614265330).is_err());
        // The old secret still works beside a new one.
        let both = vec![new_secret(), secret[0].clone()];
        assert!(verify(&headers, body, &both, 1614265330).is_ok());
        // Signed as the specification's example is.
        assert_eq!(
            sign(&secret[0], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }
}
