//! Inbound email, as Mailgun and SendGrid post it ([`super::mailgun`],
//! [`super::sendgrid`]): the message the prompt templates see (`email`),
//! its thread (the conversation of an email trigger), and its attachments,
//! stored into the session's workspace under `inbox/` within a cap.

use super::form::FormFile;
use crate::workspace_files::Upload;
use app::text::is_hidden_format;
use app::triggers::URL_USER;
use axum::http::HeaderMap;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Most bytes of attachments stored from one email; past it, the rest are
/// listed but not stored.
pub const ATTACHMENTS_MAX_BYTES: usize = 10 * 1024 * 1024;
/// Most attachments stored from one email.
pub const ATTACHMENTS_MAX: usize = 20;
/// Most text an email brings (its fields together).
pub const TEXT_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Longest attachment name kept, in bytes (a file name holds 255, and a
/// number may go before it).
const NAME_MAX_BYTES: usize = 200;

/// A new password for a trigger's URL: 32 random bytes, base64url (a
/// URL's password as is).
pub fn new_password() -> String {
    let key: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(key)
}

/// Checks the basic auth that the trigger's URL carries
/// (`https://paddock:<password>@host/hooks/<id>`) against its passwords
/// (the current one, and the one before while it is accepted): before
/// anything of the body is read.
pub fn check_url_password(headers: &HeaderMap, passwords: &[&str]) -> Result<(), String> {
    let credentials = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or("no password: the trigger's URL carries one (https://paddock:<password>@…)")?
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, v)| STANDARD.decode(v.trim()).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .ok_or("the Authorization is not basic auth")?;
    let (user, password) = credentials.split_once(':').unwrap_or((&credentials, ""));
    let matches = passwords
        .iter()
        .any(|p| !p.is_empty() && bool::from(p.as_bytes().ct_eq(password.as_bytes())));
    if user != URL_USER || !matches {
        return Err("the URL's user name or password is not the trigger's".into());
    }
    Ok(())
}

/// An email, as the prompt templates see it (`email`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Email {
    pub from: String,
    /// The sender's address alone, lower case (`ada@example.org`).
    pub address: String,
    pub to: String,
    pub subject: String,
    /// The text body (without the quoted reply, where the sender strips
    /// it).
    pub text: String,
    /// Its `Message-ID`, without the angle brackets.
    pub message_id: String,
    /// The thread it belongs to: the first message of its `References`,
    /// else the one it replies to, else itself.
    pub thread: String,
    /// Whether the sender's domain vouches for `address`, as the provider
    /// checked the message ([`Message::verified`]). Anyone can write any
    /// `From`: an email whose address is not vouched for continues no
    /// conversation by default.
    pub verified: bool,
    pub attachments: Vec<Attachment>,
}

/// An attachment, and where in the workspace it was stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// Its path in the workspace; none if it was past the cap.
    pub path: Option<String>,
}

/// An email as its sender's fields give it, before its attachments.
pub struct Message {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub message_id: String,
    pub in_reply_to: String,
    pub references: String,
    /// Whether the provider's checks vouch for the `From` address (DMARC's
    /// rule: SPF passed for an envelope sender of its domain, or a DKIM
    /// signature of its domain passed).
    pub verified: bool,
}

/// The address of a `From` (`Ada <ada@example.org>` → `ada@example.org`);
/// empty unless it is one plain address (one `@`, no spaces, commas or
/// quotes), so that `<ada@example.org x@evil.example>` is no address, and
/// not vouched for by the last domain in it.
fn address_of(from: &str) -> String {
    let inner = match (from.rfind('<'), from.rfind('>')) {
        (Some(open), Some(close)) if open < close => &from[open + 1..close],
        _ => from,
    };
    let address = inner.trim().to_lowercase();
    let plain = address.matches('@').count() == 1
        && !address.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, ',' | '"' | '<' | '>' | ';')
        });
    if plain {
        address
    } else {
        String::new()
    }
}

/// Whether `domain` (an SPF-checked envelope sender's, or a DKIM
/// signature's `d=`) speaks for the address of `from`: DMARC's relaxed
/// alignment, short of the public suffix list (the same domain, or one
/// within the other; only who holds a domain's DNS passes its checks).
pub fn aligned(from: &str, domain: &str) -> bool {
    let address = address_of(from);
    let Some((_, own)) = address.rsplit_once('@') else {
        return false;
    };
    let domain = domain.trim().trim_end_matches('.').to_lowercase();
    !own.is_empty()
        && !domain.is_empty()
        && (own == domain
            || own.ends_with(&format!(".{domain}"))
            || domain.ends_with(&format!(".{own}")))
}

/// Whether an envelope sender (an address, as SPF checked it) speaks for
/// the address of `from`: see [`aligned`].
pub fn sender_aligned(from: &str, sender: &str) -> bool {
    address_of(sender)
        .rsplit_once('@')
        .is_some_and(|(_, domain)| aligned(from, domain))
}

/// Whether a check's result says it passed (`pass`, `Pass (…)`).
pub fn passed(result: &str) -> bool {
    result
        .split_whitespace()
        .next()
        .is_some_and(|word| word.eq_ignore_ascii_case("pass"))
}

/// `<id@host>` → `id@host`.
fn bare(id: &str) -> &str {
    id.trim().trim_start_matches('<').trim_end_matches('>')
}

impl Message {
    /// The message's id, and its thread's.
    fn ids(&self) -> (String, String) {
        let message_id = bare(&self.message_id).to_owned();
        let thread = self
            .references
            .split_whitespace()
            .next()
            .map(bare)
            .filter(|id| !id.is_empty())
            .or(Some(bare(&self.in_reply_to)).filter(|id| !id.is_empty()))
            .unwrap_or(&message_id)
            .to_owned();
        (message_id, thread)
    }

    /// The email, with its attachments as listed.
    pub fn email(self, attachments: Vec<Attachment>) -> Email {
        let (message_id, thread) = self.ids();
        Email {
            address: address_of(&self.from),
            from: self.from,
            to: self.to,
            subject: self.subject,
            text: self.text,
            message_id,
            thread,
            verified: self.verified,
            attachments,
        }
    }
}

/// The first header `name` of a message's raw header block (folded lines
/// joined), empty if it has none.
pub fn header(raw: &str, name: &str) -> String {
    headers(raw, name).into_iter().next().unwrap_or_default()
}

/// Every header `name` of a message's raw header block, in order (folded
/// lines joined).
pub fn headers(raw: &str, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current: Option<String> = None;
    for line in raw.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(value) = &mut current {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        found.extend(current.take());
        current = line
            .split_once(':')
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_owned());
    }
    found.extend(current);
    found.iter().map(|value| value.trim().to_owned()).collect()
}

/// A file name as the workspace may hold it: its last component, without
/// control characters, at most [`NAME_MAX_BYTES`] (whole characters);
/// `fallback` if nothing is left. One of the names Claude Code reads as
/// instructions where it finds them (`CLAUDE.md`) is kept under another:
/// a stranger's attachment is not the project's word.
fn file_name(name: &str, fallback: String) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut clean = String::new();
    for c in last
        .chars()
        .filter(|c| !c.is_control() && !is_hidden_format(*c))
    {
        if clean.len() + c.len_utf8() > NAME_MAX_BYTES {
            break;
        }
        clean.push(c);
    }
    let clean = clean.trim();
    match clean {
        "" | "." | ".." => fallback,
        _ if ["claude.md", "claude.local.md"]
            .iter()
            .any(|read| clean.eq_ignore_ascii_case(read)) =>
        {
            format!("attached-{clean}")
        }
        _ => clean.to_owned(),
    }
}

/// The workspace folder a delivery's attachments go to.
fn inbox(delivery: &str) -> String {
    let digest = Sha256::digest(delivery.as_bytes());
    format!("inbox/{}", hex::encode(&digest[..6]))
}

/// The email's attachments as listed, and those kept (within the form's
/// limits) to store into the delivery's folder of `inbox/`.
pub fn attachments(files: Vec<FormFile>, delivery: &str) -> (Vec<Attachment>, Vec<Upload>) {
    let folder = inbox(delivery);
    let (mut listed, mut stored) = (Vec::new(), Vec::new());
    let mut names = std::collections::HashSet::new();
    for (i, file) in files.into_iter().enumerate() {
        let wanted = file_name(&file.name, format!("attachment-{}", i + 1));
        // Two of one name: the later ones numbered, until the name is free.
        let name = std::iter::once(wanted.clone())
            .chain((1..).map(|n| format!("{n}-{wanted}")))
            .find(|name| !names.contains(name))
            .unwrap_or(wanted);
        names.insert(name.clone());
        let path = file.data.map(|data| {
            let path = format!("{folder}/{name}");
            stored.push(Upload {
                path: path.clone(),
                data,
            });
            path
        });
        listed.push(Attachment {
            name,
            content_type: file.content_type,
            size: file.size,
            path,
        });
    }
    (listed, stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn threads_come_from_the_headers() {
        let message = |id: &str, in_reply_to: &str, references: &str| Message {
            from: String::new(),
            to: String::new(),
            subject: String::new(),
            text: String::new(),
            message_id: id.into(),
            in_reply_to: in_reply_to.into(),
            references: references.into(),
            verified: false,
        };
        assert_eq!(message("<a@x>", "", "").ids(), ("a@x".into(), "a@x".into()));
        let reply = message("<c@x>", "<b@x>", "<a@x> <b@x>").email(Vec::new());
        assert_eq!(
            (reply.message_id.as_str(), reply.thread.as_str()),
            ("c@x", "a@x")
        );
        assert_eq!(message("<c@x>", "<b@x>", "").ids().1, "b@x");
        let raw =
            "Subject: hi\r\nMessage-ID:\r\n <m@x>\r\nreferences: <r@x>\r\n\t<s@x>\r\nTo: y\r\n";
        assert_eq!(header(raw, "message-id"), "<m@x>");
        assert_eq!(header(raw, "References"), "<r@x> <s@x>");
        assert_eq!(header(raw, "In-Reply-To"), "");
    }

    #[test]
    fn a_domain_speaks_for_its_own_addresses_only() {
        let from = "Ada <Ada@Mail.Example.org>";
        for domain in [
            "mail.example.org",
            "example.org",
            "eu.mail.example.org",
            "EXAMPLE.ORG.",
        ] {
            assert!(aligned(from, domain), "{domain}");
        }
        for domain in [
            "",
            "evil.example",
            "example.org.evil.example",
            "ail.example.org",
            "org2",
        ] {
            assert!(!aligned(from, domain), "{domain}");
        }
        assert!(!aligned("no address", "example.org"));
        assert!(!aligned("ada@", "example.org"));
        assert!(passed("pass") && passed("Pass (signature verified)"));
        assert!(!passed("fail") && !passed("") && !passed("passed") && !passed("softfail"));
    }

    #[test]
    fn attachments_are_named_safely() {
        let file = |name: &str, kept: bool| FormFile {
            name: name.into(),
            content_type: "text/plain".into(),
            size: 3,
            data: kept.then(|| Bytes::from_static(b"xyz")),
        };
        let (listed, stored) = attachments(
            vec![
                file("../../etc/passwd", true),
                file("C:\\temp\\report.pdf", true),
                file("..", true),
                file("3-a", true),
                file("report.pdf", true),
                file("big.bin", false),
                file("a\u{7}b\u{202E}fdp.exe", true),
                file("a", true),
                file("a", true),
                file(&"報".repeat(90), true),
                file("Claude.MD", true),
                file("claude.local.md", true),
            ],
            "d1",
        );
        let names: Vec<&str> = listed.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "passwd",
                "report.pdf",
                "attachment-3",
                "3-a",
                "1-report.pdf",
                "big.bin",
                "abfdp.exe",
                "a",
                "1-a",
                // Whole characters within 200 bytes, room for a number.
                &"報".repeat(66),
                // Not read as the project's instructions.
                "attached-Claude.MD",
                "attached-claude.local.md",
            ]
        );
        assert_eq!(stored.len(), 11, "all but the one not kept");
        assert!(listed[5].path.is_none());
        let folder = inbox("d1");
        assert!(stored
            .iter()
            .all(|u| u.path.starts_with(&format!("{folder}/"))));
        assert_eq!(
            listed[0].path.as_deref(),
            Some(&*format!("{folder}/passwd"))
        );
        assert_eq!(
            address_of("Ada Lovelace <Ada@Example.org>"),
            "ada@example.org"
        );
        assert_eq!(address_of(" max@example.org "), "max@example.org");
        for two in [
            "<alice@example.org x@evil.example>",
            "alice@example.org, x@evil.example",
            "\"a b\"@evil.example",
            "a@b@evil.example",
        ] {
            assert_eq!(address_of(two), "", "{two}");
            assert!(!aligned(two, "evil.example"), "{two}");
        }
    }
}
