//! Where a session's workspace starts from: an empty folder, a copy of a
//! host folder the server allows, or a git repository the server clones
//! (with a saved token that never enters the sandbox), on a working branch
//! of the session's own.

use serde::{Deserialize, Serialize};

const URL_MAX_BYTES: usize = 2048;
const REV_MAX_BYTES: usize = 255;
const PATH_MAX_BYTES: usize = 4096;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkspaceSource {
    #[default]
    Empty,
    /// A host folder at or under the server's allowlist
    /// (`PADDOCK_MOUNT_ALLOW`), copied into the workspace.
    Folder { path: String },
    /// A git repository, cloned by the server on its own side.
    Git {
        /// `https://`, `http://` or `git://`; no credentials in it.
        url: String,
        /// A branch, tag or commit; the remote's default branch when empty.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rev: Option<String>,
        /// The name of the owner's saved git token to clone and push with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential: Option<String>,
    },
}

/// Why a source cannot be used, in words for the person who gave it.
type Refusal = String;

impl WorkspaceSource {
    pub fn is_empty(&self) -> bool {
        *self == WorkspaceSource::Empty
    }

    /// How the source reads in a session's settings.
    pub fn describe(&self) -> String {
        match self {
            WorkspaceSource::Empty => "an empty folder".to_owned(),
            WorkspaceSource::Folder { path } => format!("a copy of {path}"),
            WorkspaceSource::Git { url, rev, .. } => match rev {
                Some(rev) => format!("{url} at {rev}"),
                None => url.clone(),
            },
        }
    }

    /// The source tidied, or why it cannot be used. A git URL must name a
    /// remote host over `https`, `http` or `git` (never a file on the
    /// server), without a user or password in it: tokens are saved under
    /// Credentials.
    pub fn validate(self) -> Result<Self, Refusal> {
        match self {
            WorkspaceSource::Empty => Ok(WorkspaceSource::Empty),
            WorkspaceSource::Folder { path } => {
                let path = path.trim().to_owned();
                if !path.starts_with('/') || path.len() > PATH_MAX_BYTES || path.contains('\0') {
                    return Err(format!(
                        "{path:?} is not a folder to copy: give an absolute path on the server."
                    ));
                }
                Ok(WorkspaceSource::Folder { path })
            }
            WorkspaceSource::Git {
                url,
                rev,
                credential,
            } => {
                let url = check_git_url(url.trim())?;
                let rev = rev
                    .map(|r| r.trim().to_owned())
                    .filter(|r| !r.is_empty())
                    .map(check_rev)
                    .transpose()?;
                let credential = credential
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty());
                if credential.is_some() && !url.starts_with("https://") && !is_loopback(&url) {
                    return Err(format!(
                        "{url:?} is not https: a token is sent only over https (or to this \
                         machine), never in the clear"
                    ));
                }
                Ok(WorkspaceSource::Git {
                    url,
                    rev,
                    credential,
                })
            }
        }
    }
}

fn check_git_url(url: &str) -> Result<String, Refusal> {
    let refuse = |why: &str| format!("{url:?} is not a repository to clone: {why}.");
    if url.len() > URL_MAX_BYTES || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(refuse("a URL without spaces, at most 2 KiB"));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(refuse("give an https://, http:// or git:// URL"));
    };
    if !matches!(scheme, "https" | "http" | "git") {
        return Err(refuse("only https://, http:// and git:// URLs are cloned"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(refuse(
            "put no user or token in the URL: save the token under Credentials (Git tokens) \
             and name it",
        ));
    }
    let host = authority
        .strip_prefix('[')
        .and_then(|h| h.split_once(']').map(|(h, _)| h))
        .unwrap_or_else(|| authority.split(':').next().unwrap_or_default());
    if host.is_empty() || host.starts_with('-') {
        return Err(refuse("it names no host"));
    }
    Ok(url.to_owned())
}

/// Whether a (checked) URL names this machine.
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .strip_prefix('[')
        .and_then(|h| h.split_once(']').map(|(h, _)| h))
        .unwrap_or_else(|| authority.split(':').next().unwrap_or_default());
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A branch, tag or commit as git reads it, refusing what would read as
/// an option or a range.
fn check_rev(rev: String) -> Result<String, Refusal> {
    if rev.len() > REV_MAX_BYTES
        || rev.starts_with('-')
        || rev.contains("..")
        || rev.contains("@{")
        || rev.ends_with(".lock")
        || rev.ends_with('/')
        || !rev
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '+'))
    {
        return Err(format!(
            "{rev:?} is not a branch, tag or commit: letters, digits and - _ . / +."
        ));
    }
    Ok(rev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(url: &str, rev: Option<&str>) -> WorkspaceSource {
        WorkspaceSource::Git {
            url: url.into(),
            rev: rev.map(Into::into),
            credential: None,
        }
    }

    #[test]
    fn git_sources_name_a_remote_without_credentials() {
        for ok in [
            "https://github.com/org/repo.git",
            "http://127.0.0.1:8080/repo.git",
            "git://git.example.org/x",
            "https://[::1]:9/r",
        ] {
            assert!(git(ok, Some("main")).validate().is_ok(), "{ok}");
        }
        for bad in [
            "file:///etc",
            "/srv/repo",
            "ext::sh -c touch% /tmp/pwned",
            "https://user:tok@github.com/x",
            "https://tok@github.com/x",
            "ssh://git@github.com/x",
            "https:///x",
            "https://-oProxyCommand=x/y",
            "https://github.com/a b",
        ] {
            assert!(git(bad, None).validate().is_err(), "{bad}");
        }
        for bad in ["--upload-pack=x", "a..b", "main@{1}", "x.lock", "a b", "a/"] {
            assert!(git("https://h/r", Some(bad)).validate().is_err(), "{bad}");
        }
        let with_token = |url: &str| WorkspaceSource::Git {
            url: url.into(),
            rev: None,
            credential: Some("GITHUB".into()),
        };
        assert!(
            with_token("http://git.example.org/r").validate().is_err(),
            "no token in the clear"
        );
        assert!(with_token("git://git.example.org/r").validate().is_err());
        assert!(with_token("https://git.example.org/r").validate().is_ok());
        assert!(with_token("http://127.0.0.1:8080/r").validate().is_ok());
        let tidy = git(" https://h/r ", Some(" ")).validate().unwrap();
        assert_eq!(tidy, git("https://h/r", None));
    }

    #[test]
    fn sources_read_from_json() {
        let s: WorkspaceSource =
            serde_json::from_str(r#"{"kind":"git","url":"https://h/r","rev":"v1"}"#).unwrap();
        assert_eq!(s, git("https://h/r", Some("v1")));
        assert!(serde_json::from_str::<WorkspaceSource>(r#"{"kind":"svn"}"#).is_err());
        assert!(
            serde_json::from_str::<WorkspaceSource>(r#"{"kind":"git","url":"https://h/r","x":1}"#)
                .is_err(),
            "unknown fields are refused"
        );
    }
}
