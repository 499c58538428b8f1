//! The senders' own libraries (PyPI, in the virtual environment
//! `scripts/setup --tests` makes from `tests/senders/`), run through
//! `tests/senders/sign.py`: the trigger tests sign with them, and the
//! notification tests verify what Paddock sends with them.

use std::io::Write;
use std::process::{Command, Stdio};

/// The Python with the senders' libraries.
pub fn senders_python() -> std::path::PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
    let python = cache.join("paddock/senders/bin/python");
    assert!(
        python.exists(),
        "the senders' libraries (scripts/setup --tests)"
    );
    python
}

/// What `tests/senders/sign.py` prints for `args`, with `stdin`: a
/// signature made by the sender's own library (or documented algorithm),
/// or a verified payload.
pub fn sender_sign(args: &[&str], stdin: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/senders/sign.py");
    let mut child = Command::new(senders_python())
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
