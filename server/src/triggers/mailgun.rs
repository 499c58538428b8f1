//! Inbound email from Mailgun: a route's `forward("https://…/hooks/<id>")`
//! posts each message as a form (multipart when it has attachments), with
//! `timestamp`, `token` and `signature`: the hex HMAC-SHA256 of the
//! timestamp followed by the token, under the account's HTTP webhook
//! signing key. A timestamp more than [`TOLERANCE_SECS`] from now is
//! refused, and a token is accepted once, as Mailgun advises: it is the
//! delivery's id.
//!
//! Mailgun signs neither the body nor the URL, and its signing key is the
//! whole account's: every other webhook of the account carries signatures
//! as good. So the trigger's URL also carries a password of its own
//! ([`check_url_password`](super::email::check_url_password)), and the
//! trigger's secret is both: `<password>:<signing key>`.

use super::email::{aligned, passed, sender_aligned, Message};
use super::form::Form;
use super::{check_delivery_id, Verified};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a delivery's timestamp may be from the server's clock: Mailgun
/// sends a message again for 8 hours while it is not taken, perhaps with
/// the signature it made first (each token is still taken once).
pub const TOLERANCE_SECS: i64 = 9 * 3600;
/// Longest token taken (Mailgun's are 50 characters).
const TOKEN_MAX_BYTES: usize = 256;

/// A Mailgun trigger's secret: the URL's password and the signing key.
pub fn secret(password: &str, key: &str) -> String {
    format!("{password}:{key}")
}

/// A secret's URL password and signing key (the password, base64url, holds
/// no colon).
pub fn parts(secret: &str) -> (&str, &str) {
    secret.split_once(':').unwrap_or(("", secret))
}

/// Checks a form against the trigger's secrets (the current one, and the
/// one before while it is accepted) at `now` (Unix seconds).
pub fn verify(form: &Form, secrets: &[String], now: i64) -> Result<Verified, String> {
    let (timestamp, token) = (form.get("timestamp"), form.get("token"));
    check_delivery_id(
        token,
        "the token Mailgun signs every message with",
        TOKEN_MAX_BYTES,
    )?;
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
    for (_, key) in secrets.iter().map(|s| parts(s)) {
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
/// reply without its quote when Mailgun could tell) and its headers (from
/// `message-headers`, the message's own, as Mailgun documents them).
pub fn message(form: &Form) -> Message {
    let or = |first: &str, second: &str| match form.get(first).trim() {
        "" => form.get(second).to_owned(),
        value => value.to_owned(),
    };
    let headers: Vec<(String, String)> =
        serde_json::from_str(form.get("message-headers")).unwrap_or_default();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or_else(|| form.get(name).to_owned(), |(_, v)| v.clone())
    };
    Message {
        from: or("from", "sender"),
        to: form.get("recipient").to_owned(),
        subject: form.get("subject").to_owned(),
        text: or("stripped-text", "body-plain"),
        message_id: header("Message-Id"),
        in_reply_to: header("In-Reply-To"),
        references: header("References"),
        verified: vouched(&headers, form.get("sender"), form.get("from")),
    }
}

/// Whether Mailgun's checks vouch for the `From` address: `X-Mailgun-Spf`
/// passed for an envelope sender (`sender`) of its domain, or
/// `X-Mailgun-Dkim-Check-Result` passed and every `DKIM-Signature` is of
/// its domain (the result does not say which signature passed). Mailgun
/// adds its results to the message's headers, where a sender may have
/// written its own: every copy must say pass.
fn vouched(headers: &[(String, String)], sender: &str, from: &str) -> bool {
    fn values<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
        headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    let all_passed =
        |name: &str| values(headers, name).next().is_some() && values(headers, name).all(passed);
    let spf = all_passed("X-Mailgun-Spf") && sender_aligned(from, sender);
    let signers: Vec<&str> = values(headers, "DKIM-Signature")
        .map(|signature| {
            signature
                .split(';')
                .find_map(|tag| tag.trim().strip_prefix("d="))
                .unwrap_or_default()
        })
        .collect();
    let dkim = all_passed("X-Mailgun-Dkim-Check-Result")
        && !signers.is_empty()
        && signers.iter().all(|domain| aligned(from, domain));
    spf || dkim
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mailgun's documented algorithm, worked by hand: HMAC-SHA256 of
    /// "1700000000" + "tok" under "key-1".
    #[test]
    fn mailguns_signature_verifies_within_its_time() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key-1").unwrap();
        mac.update(b"1700000000tok");
        let signature = hex::encode(mac.finalize().into_bytes());
        let good = Form::of(&[
            ("timestamp", "1700000000"),
            ("token", "tok"),
            ("signature", &signature),
        ]);
        let keys = vec![secret("password", "key-1")];
        assert_eq!(parts(&keys[0]), ("password", "key-1"));
        assert_eq!(
            verify(&good, &keys, 1_700_000_010).unwrap().id,
            "mailgun-tok"
        );
        assert!(verify(&good, &keys, 1_700_000_000 + TOLERANCE_SECS + 1).is_err());
        assert!(verify(&good, &[secret("password", "key-2")], 1_700_000_000).is_err());
        let other_token = Form::of(&[
            ("timestamp", "1700000000"),
            ("token", "tok2"),
            ("signature", &signature),
        ]);
        assert!(verify(&other_token, &keys, 1_700_000_000).is_err());
        assert!(verify(
            &Form::of(&[("timestamp", "1700000000")]),
            &keys,
            1_700_000_000
        )
        .is_err());
        let with_headers = Form::of(&[
            ("Message-Id", "<top@x>"),
            (
                "message-headers",
                r#"[["Subject", "Hi"], ["message-id", "<m1@x>"], ["References", "<r@x>"]]"#,
            ),
        ]);
        let m = message(&with_headers);
        assert_eq!(
            (m.message_id.as_str(), m.references.as_str()),
            ("<m1@x>", "<r@x>")
        );
        assert_eq!(
            message(&Form::of(&[("Message-Id", "<top@x>")])).message_id,
            "<top@x>"
        );
    }

    #[test]
    fn the_sender_is_vouched_for_by_its_own_domains_checks_only() {
        let vouched = |sender: &str, headers: &[(&str, &str)]| {
            let headers = serde_json::to_string(headers).unwrap();
            message(&Form::of(&[
                ("from", "Ada <ada@example.org>"),
                ("sender", sender),
                ("message-headers", &headers),
            ]))
            .verified
        };
        let signed = |domain: &str| format!("v=1; a=rsa-sha256; d={domain}; s=s1; bh=x; b=y");
        let ours = signed("example.org");
        let theirs = signed("evil.example");
        assert!(vouched("ada@example.org", &[("X-Mailgun-Spf", "Pass")]));
        assert!(vouched(
            "x@evil.example",
            &[
                ("DKIM-Signature", &ours),
                ("X-Mailgun-Dkim-Check-Result", "Pass")
            ]
        ));
        // Another domain's pass, a failed check, or a sender's own copy of
        // Mailgun's header beside Mailgun's: nothing.
        assert!(!vouched("x@evil.example", &[("X-Mailgun-Spf", "Pass")]));
        assert!(!vouched(
            "x@evil.example",
            &[
                ("DKIM-Signature", &ours),
                ("DKIM-Signature", &theirs),
                ("X-Mailgun-Dkim-Check-Result", "Pass")
            ]
        ));
        assert!(!vouched(
            "ada@example.org",
            &[("X-Mailgun-Spf", "Pass"), ("X-Mailgun-Spf", "Fail")]
        ));
        assert!(!vouched(
            "ada@example.org",
            &[("X-Mailgun-Spf", "SoftFail")]
        ));
        assert!(!vouched("ada@example.org", &[]));
    }
}
