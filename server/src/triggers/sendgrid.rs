//! Inbound email from SendGrid's Inbound Parse: each message posted as a
//! multipart form (`from`, `to`, `subject`, `text`, the raw `headers`, and
//! the files `attachment1`…). SendGrid does not sign what it posts, so the
//! trigger's URL carries a password
//! ([`check_url_password`](super::email::check_url_password)). It signs no
//! time either: a repeat (SendGrid sends a message again for days while it
//! is not answered 2xx) is told by the message's `Message-ID`, else by what
//! the message says.

use super::email::{aligned, header, headers, passed, sender_aligned, Message};
use super::form::Form;
use super::Verified;
use sha2::{Digest, Sha256};

/// The delivery's id, from its message: a digest of its `Message-ID` with
/// its sender, recipient, subject and text (plain and HTML; anyone may write a
/// `Message-ID`: a stranger's mail sent first with the id a genuine one
/// will have does not make that one a repeat), else of those with its
/// headers and files (a repeat is the same message in another body, with
/// another multipart boundary).
pub fn verify(form: &Form) -> Result<Verified, String> {
    if form.get("headers").is_empty() && !form.get("email").is_empty() {
        return Err(
            "SendGrid posted the raw message: turn off \"POST the raw, full MIME \
                    message\" in the Inbound Parse settings"
                .into(),
        );
    }
    let message_id = header(form.get("headers"), "Message-ID");
    let mut hash = Sha256::new();
    for part in ["from", "to", "subject", "text", "html"].map(|field| form.get(field)) {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    if message_id.is_empty() {
        hash.update(form.get("headers").as_bytes());
        for file in &form.files {
            hash.update(file.name.as_bytes());
            hash.update(file.size.to_le_bytes());
            hash.update(file.data.as_deref().unwrap_or_default());
        }
    } else {
        hash.update(message_id.as_bytes());
    }
    let digest = hash.finalize();
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
        verified: vouched(form),
    }
}

/// The domains the message's DKIM signatures name (`d=`), lower case:
/// `None` if one names none, or one that is not a plain domain (SendGrid's
/// `dkim` field quotes them as they are, and one holding `,` or `:` could
/// make that field say anything).
fn signers(raw: &str) -> Option<Vec<String>> {
    headers(raw, "DKIM-Signature")
        .iter()
        .map(|signature| {
            let domain = signature.split(';').find_map(|tag| {
                let (name, value) = tag.split_once('=')?;
                (name.trim() == "d").then(|| value.trim().to_ascii_lowercase())
            })?;
            let plain = !domain.is_empty()
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            plain.then_some(domain)
        })
        .collect()
}

/// Whether SendGrid's checks vouch for the `From` address: `SPF` passed
/// for an envelope sender (`envelope`'s `from`) of its domain, or `dkim`
/// (`{@example.org : pass, @esp.example : fail}`) has a signature of its
/// domain that passed, which the message's own headers say it signed.
fn vouched(form: &Form) -> bool {
    let from = form.get("from");
    let envelope: serde_json::Value =
        serde_json::from_str(form.get("envelope")).unwrap_or_default();
    let spf = passed(form.get("SPF"))
        && envelope["from"]
            .as_str()
            .is_some_and(|sender| sender_aligned(from, sender));
    let signed = signers(form.get("headers")).unwrap_or_default();
    let dkim = form
        .get("dkim")
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .filter_map(|signature| signature.split_once(':'))
        .any(|(domain, result)| {
            let domain = domain.trim().trim_start_matches('@');
            result.trim().eq_ignore_ascii_case("pass")
                && signed.iter().any(|s| s.eq_ignore_ascii_case(domain))
                && aligned(from, domain)
        });
    spf || dkim
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_told_by_its_id_and_what_it_says() {
        let with_id = Form::of(&[
            ("headers", "Message-ID: <m1@mail.example>\nSubject: x\n"),
            ("text", "one"),
        ]);
        // Sent again, through another relay.
        let again = Form::of(&[
            (
                "headers",
                "Received: by relay2\nMessage-ID: <m1@mail.example>\nSubject: x\n",
            ),
            ("text", "one"),
        ]);
        assert_eq!(verify(&with_id).unwrap().id, verify(&again).unwrap().id);
        // A stranger's mail with the id a genuine one will have.
        let stranger = Form::of(&[
            ("headers", "Message-ID: <m1@mail.example>\nSubject: x\n"),
            ("text", "two"),
        ]);
        assert_ne!(verify(&with_id).unwrap().id, verify(&stranger).unwrap().id);
        let a = verify(&Form::of(&[("text", "one")])).unwrap();
        let b = verify(&Form::of(&[("text", "two")])).unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(a.id, verify(&Form::of(&[("text", "one")])).unwrap().id);
        assert!(verify(&Form::of(&[("email", "From: x\n\nraw")])).is_err());
        assert_eq!(message(&with_id).message_id, "<m1@mail.example>");
    }

    #[test]
    fn the_sender_is_vouched_for_by_its_own_domains_checks_only() {
        let from = ("from", "Ada <ada@example.org>");
        let envelope = |sender: &str| format!(r#"{{"to":["in@mail.example"],"from":"{sender}"}}"#);
        let ours = envelope("bounces@mail.example.org");
        let theirs = envelope("x@evil.example");
        let vouched = |fields: &[(&str, &str)]| message(&Form::of(fields)).verified;
        assert!(vouched(&[from, ("SPF", "pass"), ("envelope", &ours)]));
        let signed = |domains: &[&str]| {
            domains
                .iter()
                .map(|d| format!("DKIM-Signature: v=1; a=rsa-sha256;\n d={d}; s=s1; b=xyz\n"))
                .collect::<String>()
        };
        let both = signed(&["esp.example", "example.org"]);
        assert!(vouched(&[
            from,
            ("headers", &both),
            ("dkim", "{@esp.example : pass, @example.org : pass}")
        ]));
        // Anyone may write the From: checks of another domain, or failed
        // ones, vouch for nothing.
        assert!(!vouched(&[from, ("SPF", "pass"), ("envelope", &theirs)]));
        assert!(!vouched(&[from, ("SPF", "softfail"), ("envelope", &ours)]));
        assert!(!vouched(&[
            from,
            ("dkim", "{@evil.example : pass, @example.org : fail}")
        ]));
        // A signature whose domain a sender wrote to read as another's
        // pass, either way round.
        for (d, said) in [
            ("x, @example.org : pass", "{@x, @example.org : pass : fail}"),
            ("example.org : pass, @x", "{@example.org : pass, @x : fail}"),
        ] {
            let forged = signed(&[d]);
            assert!(
                !vouched(&[from, ("headers", &forged), ("dkim", said)]),
                "{d}"
            );
        }
        // A pass for a domain the message does not say it signed.
        assert!(!vouched(&[
            from,
            ("headers", &signed(&["esp.example"])),
            ("dkim", "{@example.org : pass}")
        ]));
        assert!(!vouched(&[
            from,
            ("dkim", "none"),
            ("envelope", "not json")
        ]));
        assert!(!vouched(&[from]));
    }
}
