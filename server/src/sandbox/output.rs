//! Bounded capture of a command's output: the first and last halves of the
//! cap are kept, the middle is counted and dropped, so a command printing
//! gigabytes costs the server a fixed amount of memory.

use std::collections::VecDeque;

/// How the marker where the middle of an output was dropped begins...
pub const TRUNCATION_MARK: &str = "\n[… output truncated: ";
/// ...and ends.
pub const TRUNCATION_MARK_END: &str = " …]\n";
/// How the note on a text cut short at its end (a tool's answer) begins.
pub const CUT_SHORT_MARK: &str = "[output truncated: ";

#[derive(Debug)]
pub struct CappedOutput {
    cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl CappedOutput {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let head_cap = self.cap / 2;
        if self.head.len() < head_cap {
            let n = bytes.len().min(head_cap - self.head.len());
            self.head.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        let tail_cap = self.cap - head_cap;
        if bytes.len() >= tail_cap {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - tail_cap..]);
        } else {
            let overflow = (self.tail.len() + bytes.len()).saturating_sub(tail_cap);
            self.tail.drain(..overflow);
            self.tail.extend(bytes);
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn truncated(&self) -> bool {
        self.total > (self.head.len() + self.tail.len()) as u64
    }

    /// The kept text, with a marker where bytes were dropped.
    pub fn finish(self) -> String {
        let truncated = self.truncated();
        let omitted = self.total - (self.head.len() + self.tail.len()) as u64;
        let mut out = String::from_utf8_lossy(&self.head).into_owned();
        if truncated {
            out.push_str(&format!(
                "{TRUNCATION_MARK}{omitted} of {} bytes omitted{TRUNCATION_MARK_END}",
                self.total
            ));
        }
        let (a, b) = self.tail.as_slices();
        let mut tail = Vec::with_capacity(a.len() + b.len());
        tail.extend_from_slice(a);
        tail.extend_from_slice(b);
        out.push_str(&String::from_utf8_lossy(&tail));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut o = CappedOutput::new(100);
        o.push(b"hello ");
        o.push(b"world");
        assert!(!o.truncated());
        assert_eq!(o.finish(), "hello world");
    }

    #[test]
    fn large_output_keeps_head_and_tail() {
        let mut o = CappedOutput::new(10);
        for chunk in [&b"abc"[..], b"defgh", b"ijklmnop", b"qrstuvwxyz"] {
            o.push(chunk);
        }
        assert!(o.truncated());
        assert_eq!(o.total(), 26);
        let text = o.finish();
        assert!(text.starts_with("abcde\n"), "{text}");
        assert!(text.ends_with("\nvwxyz"), "{text}");
        assert!(text.contains("16 of 26 bytes omitted"), "{text}");
    }
}
