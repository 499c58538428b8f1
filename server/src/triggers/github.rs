//! Deliveries from GitHub's webhooks: signed with `X-Hub-Signature-256`
//! (`sha256=` and the hex HMAC-SHA256 of the body under the hook's secret),
//! named by `X-GitHub-Delivery` (a repeat of it is answered as the first
//! was) and `X-GitHub-Event`. What a trigger acts on: an issue opened, or a
//! comment made on an issue or a pull request, that mentions its handle
//! (`@name`), and not by the handle itself; the rest is acknowledged and
//! left alone.

use super::Verified;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;

/// Longest delivery id taken.
const ID_MAX_BYTES: usize = 256;
/// A new secret for a GitHub hook: 32 random bytes in hex.
pub fn new_secret() -> String {
    let key: [u8; 32] = rand::random();
    hex::encode(key)
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, String> {
    headers
        .get(name)
        .ok_or_else(|| format!("no {name} header: GitHub signs every delivery"))?
        .to_str()
        .map(str::trim)
        .map_err(|_| format!("the {name} header is not text"))
}

/// Checks a delivery against the trigger's secrets: what it is, or why it
/// is refused.
pub fn verify(headers: &HeaderMap, body: &[u8], secrets: &[String]) -> Result<Verified, String> {
    let id = header(headers, "x-github-delivery")?;
    if id.is_empty() || id.len() > ID_MAX_BYTES {
        return Err(format!("an X-GitHub-Delivery is 1 to {ID_MAX_BYTES} bytes"));
    }
    let signature = header(headers, "x-hub-signature-256")?
        .strip_prefix("sha256=")
        .and_then(|hex_tag| hex::decode(hex_tag).ok())
        .ok_or("the X-Hub-Signature-256 is not sha256= and a hex HMAC")?;
    for secret in secrets {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            continue;
        };
        mac.update(body);
        if mac.verify_slice(&signature).is_ok() {
            return Ok(Verified {
                id: id.to_owned(),
                how: "GitHub: HMAC-SHA256 of its body (X-Hub-Signature-256)".into(),
            });
        }
    }
    Err("the X-Hub-Signature-256 does not match this body under the trigger's secret".into())
}

/// What a delivery asks of the trigger's handle: its prompt templates see
/// it as `github`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Mention {
    /// `issues`, `issue_comment` or `pull_request_review_comment`.
    pub event: String,
    /// `owner/name`.
    pub repository: String,
    pub number: u64,
    /// Whether it is a pull request's.
    pub pull_request: bool,
    pub title: String,
    /// The or pull request's text.
    pub body: String,
    /// The comment that mentions the handle (empty for a new issue).
    pub comment: String,
    /// Where it is on GitHub: the comment, or the issue.
    pub url: String,
    /// Who wrote it.
    pub sender: String,
}

/// What the trigger does with a delivery of `event`: act on a mention, or
/// leave it (and why).
pub fn mention(event: &str, payload: &Value, handle: &str) -> Result<Mention, String> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let action = text(&payload["action"]);
    let (thread, comment) = match (event, action.as_str()) {
        ("issues", "opened") => (&payload["issue"], None),
        ("issue_comment", "created") => (&payload["issue"], Some(&payload["comment"])),
        ("pull_request_review_comment", "created") => {
            (&payload["pull_request"], Some(&payload["comment"]))
        }
        ("ping", _) => return Err("a ping: the hook works".into()),
        _ => {
            return Err(format!(
                "a {event} event ({action}): this trigger acts on issues opened and comments \
                 made"
            ))
        }
    };
    let author = comment.unwrap_or(thread);
    let sender = text(&author["user"]["login"]);
    if sender.eq_ignore_ascii_case(handle) {
        return Err(format!("written by @{handle} itself"));
    }
    let said = text(&comment.unwrap_or(thread)["body"]);
    if !mentions(&said, handle) {
        return Err(format!("no mention of @{handle}"));
    }
    Ok(Mention {
        event: event.to_owned(),
        repository: text(&payload["repository"]["full_name"]),
        number: thread["number"].as_u64().unwrap_or_default(),
        pull_request: event == "pull_request_review_comment"
            || thread.get("pull_request").is_some_and(|p| !p.is_null()),
        title: text(&thread["title"]),
        body: text(&thread["body"]),
        comment: comment.map(|c| text(&c["body"])).unwrap_or_default(),
        url: text(&author["html_url"]),
        sender,
    })
}

/// Whether `text` mentions `@handle` as GitHub does: the whole login, not
/// the start of a longer one or part of an e-mail address.
fn mentions(text: &str, handle: &str) -> bool {
    let login = |c: char| c.is_ascii_alphanumeric() || c == '-';
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + 1..];
        let name: String = after.chars().take_while(|c| login(*c)).collect();
        if !before.is_some_and(|c| login(c) || c == '.') && name.eq_ignore_ascii_case(handle) {
            return true;
        }
        rest = after;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// GitHub's documented example: the secret "It's a Secret to
    /// Everybody" over "Hello, World!".
    #[test]
    fn githubs_example_verifies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-delivery", "72d3162e".parse().unwrap());
        headers.insert(
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
                .parse()
                .unwrap(),
        );
        let secret = vec!["It's a Secret to Everybody".to_owned()];
        assert_eq!(
            verify(&headers, b"Hello, World!", &secret).unwrap().id,
            "72d3162e"
        );
        assert!(verify(&headers, b"Hello, World?", &secret).is_err());
        assert!(verify(&headers, b"Hello, World!", &[new_secret()]).is_err());
    }

    #[test]
    fn only_mentions_of_the_handle_are_acted_on() {
        let comment = |body: &str, by: &str| {
            json!({
                "action": "created",
                "issue": {"number": 7, "title": "Crash", "body": "It crashes.", "pull_request": {"url": "x"}},
                "comment": {"body": body, "user": {"login": by}, "html_url": "https://github.example/c/1"},
                "repository": {"full_name": "org/app"}
            })
        };
        let m = mention(
            "issue_comment",
            &comment("@paddock-bot please fix", "ada"),
            "paddock-bot",
        )
        .unwrap();
        assert_eq!(
            (m.number, m.pull_request, m.sender.as_str()),
            (7, true, "ada")
        );
        assert_eq!(m.comment, "@paddock-bot please fix");
        for (body, by) in [
            ("@paddock-bottle", "ada"),
            ("mail me at ops@paddock-bot", "ada"),
            ("nothing here", "ada"),
            ("@paddock-bot thanks", "Paddock-Bot"),
        ] {
            assert!(
                mention("issue_comment", &comment(body, by), "paddock-bot").is_err(),
                "{body}"
            );
        }
        assert!(mention(
            "issue_comment",
            &comment("(@Paddock-Bot)", "ada"),
            "paddock-bot"
        )
        .is_ok());
        assert!(mention("ping", &json!({"zen": "x"}), "paddock-bot").is_err());
    }
}
