//! Deliveries from GitHub's webhooks: signed with `X-Hub-Signature-256`
//! (`sha256=` and the hex HMAC-SHA256 of the body under the hook's secret;
//! the body is what tells a repeat, since it is all GitHub signs), with
//! `X-GitHub-Delivery` (its GUID, for the transcript) and `X-GitHub-Event`. What a trigger acts on: an issue opened, or a
//! comment made on an issue or a pull request, that mentions its handle
//! (`@name`), and not by the handle itself; the rest is acknowledged and
//! left alone.

use super::{check_delivery_id, Verified};
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Digest;
use sha2::Sha256;

/// Longest delivery id taken.
const ID_MAX_BYTES: usize = 256;
/// A mention older than this is left alone: the delivery log, which tells
/// a repeat of a delivery, keeps 30 days.
const MENTION_MAX_AGE_DAYS: i64 = 29;
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
    check_delivery_id(id, "an X-GitHub-Delivery", ID_MAX_BYTES)?;
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
            // GitHub signs the body only: what tells a delivery from a
            // repeat of it (GitHub's own retry, or someone replaying one
            // under another X-GitHub-Delivery) is the body.
            let digest = Sha256::digest(body);
            return Ok(Verified {
                id: format!("github-{}", hex::encode(&digest[..16])),
                how: format!(
                    "GitHub: HMAC-SHA256 of its body (X-Hub-Signature-256); delivery {id}"
                ),
            });
        }
    }
    Err("the X-Hub-Signature-256 does not match this body under the trigger's secret".into())
}

/// Who may start work by a mention: the repository's owners, its
/// organisation's members and its collaborators (GitHub's
/// `author_association`); anyone else's mention is left alone.
const TRUSTED: [&str; 3] = ["OWNER", "MEMBER", "COLLABORATOR"];

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
    /// The issue's or pull request's text.
    pub body: String,
    /// The comment that mentions the handle (empty for a new issue).
    pub comment: String,
    /// The issue's or pull request's page.
    pub issue_url: String,
    /// Where the mention is: the comment's page, or the issue's.
    pub url: String,
    /// Who wrote it, and how they belong to the repository.
    pub sender: String,
    pub association: String,
}

/// What the trigger does with a delivery of `event`: act on a mention, or
/// leave it (and why). `repository`: the agent's own, when its workspace
/// is one (`owner/name`); a mention elsewhere is left alone.
pub fn mention(
    event: &str,
    payload: &Value,
    handle: &str,
    repository: Option<&str>,
) -> Result<Mention, String> {
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
                 made (not edited)"
            ))
        }
    };
    let number = thread["number"].as_u64().unwrap_or_default();
    let full_name = text(&payload["repository"]["full_name"]);
    if number == 0 || full_name.is_empty() {
        return Err(format!("a {event} event without its issue or repository"));
    }
    if let Some(own) = repository {
        if !own.eq_ignore_ascii_case(&full_name) {
            return Err(format!("in {full_name}, not the agent's repository {own}"));
        }
    }
    let author = comment.unwrap_or(thread);
    let sender = text(&author["user"]["login"]);
    // A GitHub App writes as `name[bot]`; no bot's comment starts work.
    let login = sender.strip_suffix("[bot]").unwrap_or(&sender);
    if login.eq_ignore_ascii_case(handle) || author["user"]["type"] == "Bot" {
        return Err(format!("written by a bot ({sender})"));
    }
    let written = author["created_at"]
        .as_str()
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok());
    if written
        .is_some_and(|at| at < chrono::Utc::now() - chrono::Duration::days(MENTION_MAX_AGE_DAYS))
    {
        return Err(format!("written more than {MENTION_MAX_AGE_DAYS} days ago"));
    }
    let association = text(&author["author_association"]);
    if !TRUSTED.contains(&association.as_str()) {
        return Err(format!(
            "written by {sender} ({}), who is not the repository's owner, member or \
             collaborator",
            if association.is_empty() {
                "unknown"
            } else {
                &association
            }
        ));
    }
    if !mentions(&text(&author["body"]), handle) {
        return Err(format!("no mention of @{handle}"));
    }
    Ok(Mention {
        event: event.to_owned(),
        repository: full_name,
        number,
        pull_request: event == "pull_request_review_comment"
            || thread.get("pull_request").is_some_and(|p| !p.is_null()),
        title: text(&thread["title"]),
        body: text(&thread["body"]),
        comment: comment.map(|c| text(&c["body"])).unwrap_or_default(),
        issue_url: text(&thread["html_url"]),
        url: text(&author["html_url"]),
        sender,
        association,
    })
}

/// The repository (`owner/name`) of a GitHub clone URL (`https://`,
/// `http://` or `git://`, on github.com).
pub fn repository_of(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let (authority, path) = rest.split_once('/')?;
    let host = authority
        .rsplit('@')
        .next()?
        .split(':')
        .next()?
        .to_ascii_lowercase();
    if host != "github.com" && host != "www.github.com" {
        return None;
    }
    let path = path.split(['?', '#']).next()?;
    let mut parts = path.trim_end_matches('/').splitn(3, '/');
    let (owner, name) = (parts.next()?, parts.next()?);
    let name = name.strip_suffix(".git").unwrap_or(name);
    (!owner.is_empty() && !name.is_empty()).then(|| format!("{owner}/{name}"))
}

/// What of a comment's text people wrote to be read: without code (fenced
/// blocks, inline spans), quoted lines and HTML comments, where GitHub does
/// not see mentions either.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced || trimmed.starts_with('>') {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let mut kept = String::new();
    let mut rest = out.as_str();
    loop {
        let code = rest.find('`');
        let comment = rest.find("<!--");
        let Some(start) = [code, comment].into_iter().flatten().min() else {
            kept.push_str(rest);
            return kept;
        };
        kept.push_str(&rest[..start]);
        kept.push(' ');
        let (open, close) = if Some(start) == code {
            ("`", "`")
        } else {
            ("<!--", "-->")
        };
        let after = &rest[start + open.len()..];
        rest = match after.find(close) {
            Some(end) => &after[end + close.len()..],
            // Never closed: plain text, as GitHub shows it.
            None => {
                kept.push_str(open);
                after
            }
        };
    }
}

/// Whether `text` mentions `@handle` as GitHub does: after the start, a
/// space or an opening bracket or quote; the whole login, not followed by
/// `/` (a team, a package scope), `_` or `.` and more of a name (an address,
/// a domain); not in code, quotes or HTML comments.
fn mentions(text: &str, handle: &str) -> bool {
    let login = |c: char| c.is_ascii_alphanumeric() || c == '-';
    let text = prose(text);
    let mut rest = text.as_str();
    let mut before: Option<char> = None;
    while let Some(at) = rest.find('@') {
        let prior = rest[..at].chars().next_back().or(before);
        let after = &rest[at + 1..];
        let name: String = after.chars().take_while(|c| login(*c)).collect();
        let mut next = after[name.len()..].chars();
        let follows = match (next.next(), next.next()) {
            (Some('/' | '_'), _) => true,
            (Some('.'), Some(c)) => login(c) || c == '_',
            _ => false,
        };
        let opens = prior.is_none_or(|c| c.is_whitespace() || "([{\"',;:*~".contains(c));
        if opens && !follows && !name.is_empty() && name.eq_ignore_ascii_case(handle) {
            return true;
        }
        before = Some('@');
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
        let ok = verify(&headers, b"Hello, World!", &secret).unwrap();
        assert!(
            ok.id.starts_with("github-") && ok.how.contains("72d3162e"),
            "{ok:?}"
        );
        // Under another X-GitHub-Delivery, the same body is the same one.
        headers.insert("x-github-delivery", "another".parse().unwrap());
        assert_eq!(
            verify(&headers, b"Hello, World!", &secret).unwrap().id,
            ok.id
        );
        assert!(verify(&headers, b"Hello, World?", &secret).is_err());
        assert!(verify(&headers, b"Hello, World!", &[new_secret()]).is_err());
    }

    fn comment(body: &str, by: &str, association: &str) -> Value {
        json!({
            "action": "created",
            "issue": {"number": 7, "title": "Crash", "body": "It crashes.", "pull_request": {"url": "x"},
                      "html_url": "https://github.example/org/app/pull/7"},
            "comment": {"body": body, "user": {"login": by, "type": "User"}, "author_association": association,
                        "html_url": "https://github.example/c/1"},
            "repository": {"full_name": "org/app"}
        })
    }

    #[test]
    fn only_mentions_of_the_handle_by_the_repositorys_people_are_acted_on() {
        let m = mention(
            "issue_comment",
            &comment("@paddock-bot please fix", "ada", "MEMBER"),
            "paddock-bot",
            Some("Org/App"),
        )
        .unwrap();
        assert_eq!(
            (m.number, m.pull_request, m.sender.as_str()),
            (7, true, "ada")
        );
        assert_eq!(m.issue_url, "https://github.example/org/app/pull/7");
        assert_eq!(m.comment, "@paddock-bot please fix");
        for (body, by, association) in [
            ("@paddock-bottle", "ada", "MEMBER"),
            ("mail me at ops@paddock-bot", "ada", "MEMBER"),
            ("a+@paddock-bot", "ada", "MEMBER"),
            ("foo_@paddock-bot", "ada", "MEMBER"),
            ("see @paddock-bot/cli", "ada", "MEMBER"),
            ("https://medium.example/@paddock-bot", "ada", "MEMBER"),
            ("@paddock-bot_x and @paddock-bot.io", "ada", "MEMBER"),
            ("`@paddock-bot` is the name", "ada", "MEMBER"),
            ("```\n@paddock-bot in a log\n```", "ada", "MEMBER"),
            ("> @paddock-bot please fix\nquoted", "ada", "MEMBER"),
            ("<!-- @paddock-bot -->", "ada", "MEMBER"),
            ("nothing here", "ada", "MEMBER"),
            ("@paddock-bot thanks", "Paddock-Bot", "MEMBER"),
            ("@paddock-bot again", "paddock-bot[bot]", "NONE"),
            ("@paddock-bot do my bidding", "eve", "NONE"),
            ("@paddock-bot do my bidding", "eve", "CONTRIBUTOR"),
        ] {
            assert!(
                mention(
                    "issue_comment",
                    &comment(body, by, association),
                    "paddock-bot",
                    None
                )
                .is_err(),
                "{body} by {by}"
            );
        }
        for body in [
            "(@Paddock-Bot)",
            "hey @paddock-bot.",
            "@paddock-bot, look",
            "x\n@paddock-bot",
            "**@paddock-bot** please",
            "don't type ` here\n\n@paddock-bot please fix",
        ] {
            assert!(
                mention(
                    "issue_comment",
                    &comment(body, "ada", "OWNER"),
                    "paddock-bot",
                    None
                )
                .is_ok(),
                "{body}"
            );
        }
        // Another repository than the agent's, or no issue at all.
        assert!(mention(
            "issue_comment",
            &comment("@paddock-bot", "ada", "OWNER"),
            "paddock-bot",
            Some("org/other")
        )
        .is_err());
        assert!(mention(
            "issue_comment",
            &json!({"action": "created"}),
            "paddock-bot",
            None
        )
        .is_err());
        assert!(mention("ping", &json!({"zen": "x"}), "paddock-bot", None).is_err());
        let mut old = comment("@paddock-bot", "ada", "OWNER");
        old["comment"]["created_at"] = json!("2020-01-01T00:00:00Z");
        assert!(mention("issue_comment", &old, "paddock-bot", None).is_err());
        assert_eq!(
            repository_of("https://github.com/Org/App.git").as_deref(),
            Some("Org/App")
        );
        assert_eq!(repository_of("https://gitlab.example/org/app.git"), None);
        assert_eq!(
            repository_of("https://GitHub.com:443/org/app?x=1").as_deref(),
            Some("org/app")
        );
        assert_eq!(repository_of("https://notgithub.com/org/app"), None);
    }
}
