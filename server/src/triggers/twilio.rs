//! Text messages from Twilio: a URL-encoded form posted to the number's
//! webhook, signed in `X-Twilio-Signature` with the account's Auth Token:
//! the base64 HMAC-SHA1 of the full URL Twilio posted to, followed by each
//! parameter's name and value, sorted by name (and a name's values sorted).
//! The URL is the server's public one (`PADDOCK_PUBLIC_URL`): a signature
//! made for another URL is refused. Twilio signs no time, so a repeat is
//! told by the message's `MessageSid`, accepted once.

use super::form::Form;
use super::Verified;
use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;

/// A text message, as the prompt templates see it (`sms`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sms {
    /// The sender's number (`+15551234567`).
    pub from: String,
    /// The Twilio number it was sent to.
    pub to: String,
    pub body: String,
    /// Twilio's id for it (`SM…`).
    pub sid: String,
    /// How many pictures or files came with it (Twilio keeps them).
    pub media: u32,
}

/// What Twilio signs for a form posted to `url`.
fn signed_text(url: &str, form: &Form) -> Vec<u8> {
    let mut names: Vec<&str> = form.fields.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut text = url.as_bytes().to_vec();
    for name in names {
        let mut values: Vec<&str> = form
            .fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        values.sort_unstable();
        values.dedup();
        for value in values {
            text.extend_from_slice(name.as_bytes());
            text.extend_from_slice(value.as_bytes());
        }
    }
    text
}

/// Checks a message posted to one of `urls` (the public URL, with and
/// without its default port, as Twilio's own libraries accept) against the
/// account's Auth Tokens (the current one, and the one before while it is
/// accepted): what it is, or why it is refused.
pub fn verify(
    headers: &HeaderMap,
    urls: &[String],
    form: &Form,
    tokens: &[String],
) -> Result<Verified, String> {
    let signature = headers
        .get("x-twilio-signature")
        .ok_or("no X-Twilio-Signature header: Twilio signs every request")?
        .to_str()
        .ok()
        .and_then(|s| STANDARD.decode(s.trim()).ok())
        .ok_or("the X-Twilio-Signature is not base64")?;
    let sid = message_sid(form)?;
    for url in urls {
        let text = signed_text(url, form);
        for token in tokens {
            let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(token.as_bytes()) else {
                continue;
            };
            mac.update(&text);
            if mac.verify_slice(&signature).is_ok() {
                return Ok(Verified {
                    id: format!("twilio-{sid}"),
                    how: "Twilio: HMAC-SHA1 of the URL and the form under the Auth Token \
                          (X-Twilio-Signature)"
                        .into(),
                });
            }
        }
    }
    Err(
        "the X-Twilio-Signature does not match this form posted to this server's public URL \
         under the trigger's Auth Token"
            .into(),
    )
}

/// The message's id, as Twilio makes them: `SM` (or `MM`, with media)
/// and 32 hexadecimal digits, the same in `SmsSid` and `SmsMessageSid`
/// where those come too. Twilio signs the fields run together, so a
/// signature holds for the same text cut into other fields: a sid of any
/// other shape could take a neighbour's text and pass a message already
/// taken as a new one.
fn message_sid(form: &Form) -> Result<&str, String> {
    let sid = form.get("MessageSid");
    let shaped = sid.len() == 34
        && matches!(sid.get(..2), Some("SM" | "MM"))
        && sid.bytes().skip(2).all(|b| b.is_ascii_hexdigit());
    let same = ["SmsSid", "SmsMessageSid"]
        .iter()
        .all(|name| [sid, ""].contains(&form.get(name)));
    if !shaped || !same {
        return Err(
            "a message's MessageSid is SM or MM and 32 hexadecimal digits, and its SmsSid \
             and SmsMessageSid the same"
                .into(),
        );
    }
    Ok(sid)
}

/// The message a verified form carries.
pub fn sms(form: &Form) -> Sms {
    Sms {
        from: form.get("From").to_owned(),
        to: form.get("To").to_owned(),
        body: form.get("Body").to_owned(),
        sid: form.get("MessageSid").to_owned(),
        media: form.get("NumMedia").parse().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signature Twilio's Python library (`RequestValidator`) made.
    #[test]
    fn twilios_own_signature_verifies() {
        let form = Form::of(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
            ("MessageSid", SID),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-twilio-signature",
            "tghSsdeZ89A7XoSzFdCFrt5wpNY=".parse().unwrap(),
        );
        let token = vec!["12345".to_owned()];
        let ok = verify(&headers, &[url.to_owned()], &form, &token).unwrap();
        assert_eq!(ok.id, format!("twilio-{SID}"));
        assert!(verify(&headers, &["https://other.example/x".into()], &form, &token).is_err());
        assert!(verify(&headers, &[url.to_owned()], &form, &["54321".into()]).is_err());
        let mut changed = form;
        changed.fields[2].1 = "9999".into();
        assert!(verify(&headers, &[url.to_owned()], &changed, &token).is_err());
        assert_eq!(sms(&changed).from, "+12349013030");
        // An id of another shape (a NUL no store keeps, a line break, the
        // next field's text run into it) is refused, whatever the
        // signature.
        for sid in [
            "SM\0",
            "SM\n1",
            "",
            "SM1",
            &format!("{SID}NumMedia0"),
            &SID[1..],
            // (Its second character more than one byte.)
            "Sé",
        ] {
            changed.fields[5].1 = sid.into();
            let refused = verify(&headers, &[url.to_owned()], &changed, &token).unwrap_err();
            assert!(refused.contains("MessageSid"), "{refused}");
        }
    }

    const SID: &str = "SM0123456789abcdef0123456789abcdef";

    /// The field split a replay would try: the signature holds for the same
    /// text cut otherwise, so the sid must have its one shape.
    #[test]
    fn a_sid_with_a_neighbours_text_is_refused() {
        let genuine = Form::of(&[("MessageSid", SID), ("NumMedia", "0"), ("SmsSid", SID)]);
        let refolded = Form::of(&[("MessageSid", &format!("{SID}NumMedia0")), ("SmsSid", SID)]);
        let url = "https://paddock.example/hooks/t";
        assert_eq!(signed_text(url, &genuine), signed_text(url, &refolded));
        assert!(message_sid(&genuine).is_ok());
        assert!(message_sid(&refolded).is_err());
        let other = Form::of(&[
            ("MessageSid", SID),
            ("SmsSid", "SM0000000000000000000000000000000a"),
        ]);
        assert!(message_sid(&other).is_err());
    }
}
