//! Inbound email from SendGrid's Inbound Parse: each message posted as a
//! multipart form (`from`, `to`, `subject`, `text`, the raw `headers`, and
//! the files `attachment1`…). SendGrid does not sign what it posts, so the
//! trigger's URL carries a password (`https://paddock:<secret>@host/…`),
//! which arrives as basic auth. It signs no time either: a repeat (SendGrid
//! sends a message again for days while it is not answered 2xx) is told by
//! the message's `Message-ID`, else by the body.

use super::email::{header, Message};
use super::form::Form;
use super::Verified;
use app::triggers::SENDGRID_USER;
use axum::http::HeaderMap;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A new secret: 32 random bytes, base64url (a URL's password as is).
pub fn new_secret() -> String {
    let key: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(key)
}

/// Checks the URL's password against the trigger's secrets (the current
/// one, and the one before while it is accepted); the delivery's id is its
/// message's.
pub fn verify(
    headers: &HeaderMap,
    form: &Form,
    body: &[u8],
    secrets: &[String],
) -> Result<Verified, String> {
    let credentials = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or("no password: the URL given to SendGrid carries one (https://paddock:<secret>@…)")?
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| STANDARD.decode(v.trim()).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .ok_or("the Authorization is not basic auth")?;
    let (user, password) = credentials.split_once(':').unwrap_or((&credentials, ""));
    let matches = secrets
        .iter()
        .any(|s| bool::from(s.as_bytes().ct_eq(password.as_bytes())));
    if user != SENDGRID_USER || !matches {
        return Err("the URL's user name or password is not the trigger's".into());
    }
    let message_id = header(form.get("headers"), "Message-ID");
    let digest = match message_id.is_empty() {
        false => Sha256::digest(message_id.trim().as_bytes()),
        true => Sha256::digest(body),
    };
    Ok(Verified {
        id: format!("sendgrid-{}", hex::encode(&digest[..16])),
        how: "SendGrid Inbound Parse: the password of the trigger's URL".into(),
    })
}

/// The email its fields carry.
pub fn message(form: &Form) -> Message {
    let raw = form.get("headers");
    Message {
        from: form.get("from").to_owned(),
        to: form.get("to").to_owned(),
        subject: form.get("subject").to_owned(),
        text: form.get("text").to_owned(),
        message_id: header(raw, "Message-ID"),
        in_reply_to: header(raw, "In-Reply-To"),
        references: header(raw, "References"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_urls_password_is_what_counts() {
        let secret = new_secret();
        let form = Form {
            fields: vec![(
                "headers".into(),
                "Message-ID: <m1@mail.example>\nSubject: x\n".into(),
            )],
            files: Vec::new(),
        };
        let auth = |user: &str, password: &str| {
            let mut h = HeaderMap::new();
            let value = STANDARD.encode(format!("{user}:{password}"));
            h.insert("authorization", format!("Basic {value}").parse().unwrap());
            h
        };
        let secrets = vec![secret.clone()];
        let ok = verify(&auth("paddock", &secret), &form, b"", &secrets).unwrap();
        let again = verify(&auth("paddock", &secret), &form, b"other", &secrets).unwrap();
        assert_eq!(ok.id, again.id, "the Message-ID tells a repeat");
        assert!(verify(&auth("paddock", "wrong"), &form, b"", &secrets).is_err());
        assert!(verify(&auth("admin", &secret), &form, b"", &secrets).is_err());
        assert!(verify(&HeaderMap::new(), &form, b"", &secrets).is_err());
        let bare = Form::default();
        let a = verify(&auth("paddock", &secret), &bare, b"one", &secrets).unwrap();
        let b = verify(&auth("paddock", &secret), &bare, b"two", &secrets).unwrap();
        assert_ne!(a.id, b.id, "without a Message-ID, the body");
        assert_eq!(message(&form).message_id, "<m1@mail.example>");
    }
}
