//! Inbound email from Mailgun: a route's `forward("https://…/hooks/<id>")`
//! posts each message as a form (multipart when it has attachments), with
//! `timestamp`, `token` and `signature`: the hex HMAC-SHA256 of the
//! timestamp followed by the token, under the account's HTTP webhook
//! signing key. A timestamp more than [`TOLERANCE_SECS`] from now is
//! refused, and a token is accepted once, as Mailgun advises: it is the
//! delivery's id. (Mailgun signs neither the body nor the URL: the token's
//! single use is what keeps a captured signature from carrying another
//! message.)

use super::email::Message;
use super::form::Form;
use super::Verified;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a delivery's timestamp may be from the server's clock.
pub const TOLERANCE_SECS: i64 = 5 * 60;
/// Longest token taken (Mailgun's are 50 characters).
const TOKEN_MAX_BYTES: usize = 256;

/// Checks a form against the trigger's signing keys (the current one, and
/// the one before while it is accepted) at `now` (Unix seconds).
pub fn verify(form: &Form, keys: &[String], now: i64) -> Result<Verified, String> {
    let (timestamp, token) = (form.get("timestamp"), form.get("token"));
    if token.is_empty() || token.len() > TOKEN_MAX_BYTES {
        return Err(format!(
            "no token of 1 to {TOKEN_MAX_BYTES} bytes: Mailgun signs every message it forwards"
        ));
    }
    let at: i64 = timestamp
        .parse()
        .map_err(|_| "the timestamp is not a number of seconds".to_owned())?;
    let age_secs = now.checked_sub(at).unwrap_or(i64::MAX);
    if age_secs
        .checked_abs()
        .is_none_or(|age| age > TOLERANCE_SECS)
    {
        return Err(format!(
            "the timestamp is {age_secs} s from the server's clock, more than the \
             {TOLERANCE_SECS} s allowed"
        ));
    }
    let signature =
        hex::decode(form.get("signature")).map_err(|_| "the signature is not hex".to_owned())?;
    for key in keys {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
            continue;
        };
        mac.update(timestamp.as_bytes());
        mac.update(token.as_bytes());
        if mac.verify_slice(&signature).is_ok() {
            return Ok(Verified {
                id: format!("mailgun-{token}"),
                how: format!(
                    "Mailgun: HMAC-SHA256 of its timestamp and token under the signing key; \
                     sent {age_secs} s before it arrived"
                ),
            });
        }
    }
    Err(
        "the signature does not match this timestamp and token under the trigger's signing key"
            .into(),
    )
}

/// The email its fields carry: sender, recipient, subject, the text (the
/// reply without its quote when Mailgun could tell) and its headers.
pub fn message(form: &Form) -> Message {
    let or = |first: &str, second: &str| match form.get(first).trim() {
        "" => form.get(second).to_owned(),
        value => value.to_owned(),
    };
    Message {
        from: or("from", "sender"),
        to: form.get("recipient").to_owned(),
        subject: form.get("subject").to_owned(),
        text: or("stripped-text", "body-plain"),
        message_id: form.get("Message-Id").to_owned(),
        in_reply_to: form.get("In-Reply-To").to_owned(),
        references: form.get("References").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(fields: &[(&str, &str)]) -> Form {
        Form {
            fields: fields
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            files: Vec::new(),
        }
    }

    /// Mailgun's documented algorithm, worked by hand: HMAC-SHA256 of
    /// "1700000000" + "tok" under "key-1".
    #[test]
    fn mailguns_signature_verifies_within_its_time() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key-1").unwrap();
        mac.update(b"1700000000tok");
        let signature = hex::encode(mac.finalize().into_bytes());
        let good = form(&[
            ("timestamp", "1700000000"),
            ("token", "tok"),
            ("signature", &signature),
        ]);
        let keys = vec!["key-1".to_owned()];
        assert_eq!(
            verify(&good, &keys, 1_700_000_010).unwrap().id,
            "mailgun-tok"
        );
        assert!(verify(&good, &keys, 1_700_000_000 + 301).is_err());
        assert!(verify(&good, &["key-2".into()], 1_700_000_000).is_err());
        let other_token = form(&[
            ("timestamp", "1700000000"),
            ("token", "tok2"),
            ("signature", &signature),
        ]);
        assert!(verify(&other_token, &keys, 1_700_000_000).is_err());
        assert!(verify(&form(&[("timestamp", "1700000000")]), &keys, 1_700_000_000).is_err());
    }
}
