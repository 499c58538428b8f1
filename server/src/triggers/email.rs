//! Inbound email, as Mailgun and SendGrid post it ([`super::mailgun`],
//! [`super::sendgrid`]): the message the prompt templates see (`email`),
//! its thread (the conversation of an email trigger), and its attachments,
//! stored into the session's workspace under `inbox/` within a cap.

use super::form::FormFile;
use crate::workspace_files::Upload;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Most bytes of attachments stored from one email; past it, the rest are
/// listed but not stored.
pub const ATTACHMENTS_MAX_BYTES: usize = 10 * 1024 * 1024;
/// Most attachments stored from one email.
pub const ATTACHMENTS_MAX: usize = 20;
/// Longest attachment name kept (characters).
const NAME_MAX_CHARS: usize = 100;

/// An email, as the prompt templates see it (`email`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Email {
    pub from: String,
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
    pub attachments: Vec<Attachment>,
}

/// An attachment, and where in the workspace it was stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    pub size: usize,
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
            from: self.from,
            to: self.to,
            subject: self.subject,
            text: self.text,
            message_id,
            thread,
            attachments,
        }
    }
}

/// Header `name` of a message's raw header block (folded lines joined),
/// empty if it has none.
pub fn header(raw: &str, name: &str) -> String {
    let mut found: Option<String> = None;
    for line in raw.lines() {
        match (&mut found, line.starts_with([' ', '\t'])) {
            (Some(value), true) => {
                value.push(' ');
                value.push_str(line.trim());
            }
            (Some(_), false) => break,
            (None, _) => {
                if let Some((n, value)) = line.split_once(':') {
                    if n.trim().eq_ignore_ascii_case(name) {
                        found = Some(value.trim().to_owned());
                    }
                }
            }
        }
    }
    found.map(|v| v.trim().to_owned()).unwrap_or_default()
}

/// A file name as the workspace may hold it: its last component, without
/// control characters, at most [`NAME_MAX_CHARS`]; `fallback` if nothing
/// is left.
fn file_name(name: &str, fallback: String) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last
        .chars()
        .filter(|c| !c.is_control())
        .take(NAME_MAX_CHARS)
        .collect();
    let clean = clean.trim();
    match clean {
        "" | "." | ".." => fallback,
        _ => clean.to_owned(),
    }
}

/// The workspace folder a delivery's attachments go to.
fn inbox(delivery: &str) -> String {
    let digest = Sha256::digest(delivery.as_bytes());
    format!("inbox/{}", hex::encode(&digest[..6]))
}

/// The email's attachments as listed, and those to store (within the
/// caps, in order) into the delivery's folder of `inbox/`.
pub fn attachments(files: Vec<FormFile>, delivery: &str) -> (Vec<Attachment>, Vec<Upload>) {
    let folder = inbox(delivery);
    let (mut listed, mut stored) = (Vec::new(), Vec::new());
    let mut bytes = 0usize;
    let mut names = std::collections::HashSet::new();
    for (i, file) in files.into_iter().enumerate() {
        let mut name = file_name(&file.name, format!("attachment-{}", i + 1));
        if !names.insert(name.clone()) {
            name = format!("{}-{name}", i + 1);
            names.insert(name.clone());
        }
        let fits = stored.len() < ATTACHMENTS_MAX
            && bytes.saturating_add(file.data.len()) <= ATTACHMENTS_MAX_BYTES;
        let path = fits.then(|| format!("{folder}/{name}"));
        if let Some(path) = &path {
            bytes += file.data.len();
            stored.push(Upload {
                path: path.clone(),
                data: file.data.clone(),
            });
        }
        listed.push(Attachment {
            name,
            content_type: file.content_type,
            size: file.data.len(),
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
    fn attachments_are_named_safely_and_capped() {
        let file = |name: &str, size: usize| FormFile {
            field: "attachment".into(),
            name: name.into(),
            content_type: "text/plain".into(),
            data: Bytes::from(vec![b'x'; size]),
        };
        let (listed, stored) = attachments(
            vec![
                file("../../etc/passwd", 3),
                file("C:\\temp\\report.pdf", 3),
                file("..", 3),
                file("report.pdf", 3),
                file("big.bin", ATTACHMENTS_MAX_BYTES),
                file("a\u{7}b.txt", 1),
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
                "4-report.pdf",
                "big.bin",
                "ab.txt"
            ]
        );
        assert_eq!(stored.len(), 5, "all but the one past the cap");
        assert!(listed[4].path.is_none());
        let folder = inbox("d1");
        assert!(stored
            .iter()
            .all(|u| u.path.starts_with(&format!("{folder}/"))));
        assert_eq!(
            listed[0].path.as_deref(),
            Some(&*format!("{folder}/passwd"))
        );
    }
}
