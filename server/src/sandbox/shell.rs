//! Composing a command line for a sandbox's shell from a value of its own
//! (the egress relay's socket path): programs with arguments are started
//! with them as they are ([`SpawnRequest::argv`](super::SpawnRequest)),
//! and searches run no command.

/// `s` as one bash word that stands for exactly `s`: wrapped in single quotes,
/// inside which bash interprets nothing, and each `'` written as `'\''`
/// (close the quotes, an escaped quote, reopen). `$(…)`, backticks, `;`,
/// globs and newlines all stay plain text. (A NUL byte cannot be passed to a
/// program at all; callers refuse it.)
pub(crate) fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What bash makes of the quoted word.
    fn through_bash(s: &str) -> String {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(s)))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn quoting_survives_hostile_strings() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let m = marker.display();
        for s in [
            String::new(),
            "plain".into(),
            "it's".into(),
            "'".into(),
            "''".into(),
            r"'\''".into(),
            format!("$(touch {m})"),
            format!("`touch {m}`"),
            format!("'; touch {m}; '"),
            format!("\"; touch {m}; \""),
            format!("x\ntouch {m}\n"),
            format!("a' $(touch {m}) 'b"),
            format!("\\'; touch {m} #"),
            "*".into(),
            "${HOME} $PATH !! \\ \t ~".into(),
            "-n".into(),
            "é ü 日本 🦀".into(),
        ] {
            assert_eq!(through_bash(&s), s, "{s:?}");
        }
        assert!(!marker.exists(), "a quoted string ran a command");
    }
}
