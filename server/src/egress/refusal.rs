//! Why the egress proxy refuses a request, and the HTTP answer that says
//! it to the client.

/// Why a request is refused: the status and its reason phrase.
#[derive(Debug, PartialEq)]
pub(super) struct Refusal {
    pub status: u16,
    pub reason: String,
}

impl Refusal {
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }

    /// The HTTP answer: the reason in the status line (clients show it for a
    /// failed tunnel) and in the body.
    pub fn answer(&self) -> Vec<u8> {
        let body = format!("Paddock egress proxy: {}\n", self.reason);
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
             Connection: close\r\nX-Paddock-Egress: refused\r\n\r\n{body}",
            self.status,
            self.reason,
            body.len()
        )
        .into_bytes()
    }
}
