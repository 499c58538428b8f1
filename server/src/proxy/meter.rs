//! Reading a Messages API answer's usage as it passes, to charge the
//! session: the counts the sandbox's CLI reports about itself are never used
//! for money.

use crate::journal::Journal;
use crate::llm::{cost_usd, rough_tokens, CACHE_READ, CACHE_WRITE, CACHE_WRITE_HOUR};
use app::domain::SessionId;
use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A non-streamed answer is read whole for its usage up to this size.
const JSON_USAGE_LIMIT: usize = 8 * 1024 * 1024;

/// The upstream answer passed through untouched, with its usage read on
/// the way.
pub(super) struct Metered<S> {
    pub(super) inner: S,
    pub(super) meter: Meter,
}

impl<S> Stream for Metered<S>
where
    S: Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    type Item = reqwest::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            self.meter.feed(chunk);
        }
        polled
    }
}

/// Reads a Messages API answer's usage as it passes: SSE line by line (the
/// `message_start` and `message_delta` events), or a whole JSON message.
/// What it counted is charged when the answer ends or is dropped half-way
/// (tokens already generated are billed either way). An answer dropped
/// before its final usage (the `message_delta` that ends a stream, or the
/// JSON whole) is charged a rough count, a quarter of the characters: of
/// the request for its input when none was said, of what streamed for its
/// output (a sandbox that closed each answer before its end paid nothing
/// for what it read).
pub(super) struct Meter {
    journal: Journal,
    session: SessionId,
    json: bool,
    pending: Vec<u8>,
    model: String,
    input_tokens: u64,
    /// The input tokens weighted by their price: cache writes above the
    /// input price, reads below it.
    input_weighted: f64,
    output_tokens: u64,
    /// Bytes of the request, and of the answer's events so far.
    request_bytes: usize,
    streamed_bytes: usize,
    /// Whether the answer's final usage was read.
    told: bool,
}

impl Meter {
    pub(super) fn new(
        journal: Journal,
        session: SessionId,
        json: bool,
        request_bytes: usize,
    ) -> Self {
        Self {
            journal,
            session,
            json,
            pending: Vec::new(),
            model: String::new(),
            input_tokens: 0,
            input_weighted: 0.0,
            output_tokens: 0,
            request_bytes,
            streamed_bytes: 0,
            told: false,
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        if self.json {
            if self.pending.len() + chunk.len() <= JSON_USAGE_LIMIT {
                self.pending.extend_from_slice(chunk);
            }
            return;
        }
        // Only the unfinished last line is kept between chunks.
        let mut start = 0;
        for (i, b) in chunk.iter().enumerate() {
            if *b == b'\n' {
                if self.pending.is_empty() {
                    self.line(&chunk[start..i]);
                } else {
                    self.pending.extend_from_slice(&chunk[start..i]);
                    let line = std::mem::take(&mut self.pending);
                    self.line(&line);
                }
                start = i + 1;
            }
        }
        self.pending.extend_from_slice(&chunk[start..]);
    }

    fn line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        self.streamed_bytes += data.len();
        // Deltas of text are most of the stream: skip them unparsed.
        let wanted = |needle: &[u8]| data.windows(needle.len()).any(|w| w == needle);
        if !wanted(b"\"message_start\"") && !wanted(b"\"message_delta\"") {
            return;
        }
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) else {
            return;
        };
        match event["type"].as_str() {
            Some("message_start") => self.message(&event["message"]),
            // Cumulative: the last one holds the totals.
            Some("message_delta") => {
                self.usage(&event["usage"]);
                self.told = true;
            }
            _ => {}
        }
    }

    fn message(&mut self, message: &serde_json::Value) {
        if let Some(model) = message["model"].as_str() {
            self.model = model.to_owned();
        }
        self.usage(&message["usage"]);
    }

    fn usage(&mut self, usage: &serde_json::Value) {
        if let Some((tokens, weighted)) = input_of(usage) {
            self.input_tokens = tokens;
            self.input_weighted = weighted;
        }
        if let Some(output) = usage["output_tokens"].as_u64() {
            self.output_tokens = output;
        }
    }
}

/// A usage's input tokens, and the same weighted by their price: cache
/// writes and reads are input too, an hour's writes (when the answer tells
/// them apart) at twice the input price, the rest at 1.25 times, reads at
/// a tenth. `None` when it says none.
fn input_of(usage: &serde_json::Value) -> Option<(u64, f64)> {
    let count = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let (plain, written, read) = (
        count(&usage["input_tokens"]),
        count(&usage["cache_creation_input_tokens"]),
        count(&usage["cache_read_input_tokens"]),
    );
    let hour = count(&usage["cache_creation"]["ephemeral_1h_input_tokens"]).min(written);
    let tokens = plain + written + read;
    (tokens > 0).then(|| {
        let weighted = plain as f64
            + (written - hour) as f64 * CACHE_WRITE
            + hour as f64 * CACHE_WRITE_HOUR
            + read as f64 * CACHE_READ;
        (tokens, weighted)
    })
}

impl Drop for Meter {
    fn drop(&mut self) {
        if self.json {
            let pending = std::mem::take(&mut self.pending);
            self.streamed_bytes = pending.len();
            if let Ok(message) = serde_json::from_slice::<serde_json::Value>(&pending) {
                self.message(&message);
                self.told = true;
            }
        }
        if !self.told {
            if self.input_tokens == 0 {
                self.input_tokens = rough_tokens(self.request_bytes);
                self.input_weighted = self.input_tokens as f64;
            }
            self.output_tokens = self.output_tokens.max(rough_tokens(self.streamed_bytes));
        }
        if self.input_tokens == 0 && self.output_tokens == 0 {
            return;
        }
        let (journal, session) = (self.journal.clone(), self.session);
        let (model, input, weighted, output) = (
            std::mem::take(&mut self.model),
            self.input_tokens,
            self.input_weighted,
            self.output_tokens,
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let cost = cost_usd(&model, weighted, output);
            // The session may have been deleted meanwhile: nothing to record.
            if let Err(e) = journal
                .record_usage(session, input as i64, output as i64, cost)
                .await
            {
                tracing::debug!(%session, "model call not metered: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_writes_and_reads_are_weighed_at_their_prices() {
        let usage = serde_json::json!({
            "input_tokens": 100,
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 10_000,
            "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 400}
        });
        let (tokens, weighted) = input_of(&usage).unwrap();
        assert_eq!(tokens, 11_100);
        assert!((weighted - (100.0 + 600.0 * 1.25 + 400.0 * 2.0 + 1000.0)).abs() < 1e-9);
        assert_eq!(input_of(&serde_json::json!({"output_tokens": 3})), None);
    }
}
