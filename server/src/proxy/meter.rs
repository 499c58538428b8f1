//! Reading a Messages API answer's usage as it passes, to charge the
//! session: the counts the sandbox's CLI reports about itself are never used
//! for money.

use crate::journal::Journal;
use crate::llm::{cost_usd, rough_tokens, CACHE_READ, CACHE_WRITE, CACHE_WRITE_HOUR};
use app::domain::{AppError, SessionId};
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
/// JSON whole) is charged for its output a rough count, a quarter of the
/// characters the model wrote in what came (a sandbox that closed each
/// answer before its end paid nothing for what it read); a JSON answer cut
/// short, which says no input before its end and was made whole upstream,
/// for its input the same of the request, also when it was dropped before
/// it began (it was made whole upstream all the same). A stream dropped
/// before it began is not charged: nothing of it was made.
pub(super) struct Meter {
    journal: Journal,
    session: SessionId,
    /// Whether the answer is one JSON message (else SSE): as the request
    /// asked, until the answer says.
    json: bool,
    /// Whether there is nothing to charge (refused, or never sent).
    void: bool,
    pending: Vec<u8>,
    /// The answer's model, else the request's.
    model: String,
    input: Input,
    output_tokens: u64,
    /// Bytes of the request, and of what the model wrote in the stream's
    /// deltas so far (without their events' wrapping).
    request_bytes: usize,
    written_bytes: usize,
    /// Whether the answer's final usage was read.
    told: bool,
    /// Whether the event being read is a delta (its `event:` line said so).
    in_delta: bool,
}

/// The kinds of input tokens an answer says it took, each as last said
/// (the counts are cumulative).
#[derive(Default)]
struct Input {
    plain: u64,
    cache_written: u64,
    /// Of those written, the ones kept an hour (dearer).
    cache_written_hour: u64,
    cache_read: u64,
}

impl Input {
    fn tokens(&self) -> u64 {
        self.plain + self.cache_written + self.cache_read
    }

    /// The tokens weighed by their price, as a count at the input price:
    /// cache writes at 1.25 times it (an hour's at twice), reads at a
    /// tenth.
    fn weighed(&self) -> f64 {
        let hour = self.cache_written_hour.min(self.cache_written);
        self.plain as f64
            + (self.cache_written - hour) as f64 * CACHE_WRITE
            + hour as f64 * CACHE_WRITE_HOUR
            + self.cache_read as f64 * CACHE_READ
    }

    fn update(&mut self, usage: &serde_json::Value) {
        // (A count of 0 says nothing new: a gateway may send it in the
        // last usage for what the first one counted.)
        let set = |field: &mut u64, v: &serde_json::Value| {
            if let Some(n) = v.as_u64().filter(|n| *n > 0) {
                *field = n;
            }
        };
        set(&mut self.plain, &usage["input_tokens"]);
        set(
            &mut self.cache_written,
            &usage["cache_creation_input_tokens"],
        );
        set(&mut self.cache_read, &usage["cache_read_input_tokens"]);
        set(
            &mut self.cache_written_hour,
            &usage["cache_creation"]["ephemeral_1h_input_tokens"],
        );
    }
}

/// The wrapping of one delta event around what the model wrote
/// (`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}`),
/// and of a tool input's and a thought's.
const TEXT_DELTA_WRAPPING: usize = 78;
const INPUT_DELTA_WRAPPING: usize = 94;
const THINKING_DELTA_WRAPPING: usize = 86;

impl Meter {
    /// For `request`, before it is sent.
    pub(super) fn new(journal: Journal, session: SessionId, request: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Asked {
            model: Option<String>,
            stream: Option<bool>,
        }
        let asked = serde_json::from_slice::<Asked>(request).ok();
        let streams = asked.as_ref().and_then(|a| a.stream) == Some(true);
        Self {
            journal,
            session,
            json: !streams,
            void: false,
            model: asked.and_then(|a| a.model).unwrap_or_default(),
            pending: Vec::new(),
            input: Input::default(),
            output_tokens: 0,
            request_bytes: request.len(),
            written_bytes: 0,
            told: false,
            in_delta: false,
        }
    }

    /// Its answer began: one JSON message, or SSE.
    pub(super) fn answered(&mut self, json: bool) {
        self.json = json;
    }

    /// Nothing to charge: the call was refused, or never reached upstream.
    pub(super) fn void(mut self) {
        self.void = true;
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
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // An event's name comes before its data.
        if let Some(name) = line.strip_prefix(b"event:") {
            self.in_delta = name.trim_ascii() == b"content_block_delta";
            return;
        }
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        let wanted = |needle: &[u8]| data.windows(needle.len()).any(|w| w == needle);
        // Deltas are most of the stream: skipped unparsed, only counting
        // what the model wrote in them, their wrapping taken off (a
        // signature is nothing it wrote).
        if self.in_delta {
            let wrapping = if wanted(b"\"signature_delta\"") {
                usize::MAX
            } else if wanted(b"\"input_json_delta\"") {
                INPUT_DELTA_WRAPPING
            } else if wanted(b"\"thinking_delta\"") {
                THINKING_DELTA_WRAPPING
            } else {
                TEXT_DELTA_WRAPPING
            };
            self.written_bytes += data.len().saturating_sub(wrapping);
            return;
        }
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
        self.input.update(usage);
        if let Some(output) = usage["output_tokens"].as_u64() {
            self.output_tokens = output;
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if self.void {
            return;
        }
        if self.json {
            let pending = std::mem::take(&mut self.pending);
            match serde_json::from_slice::<serde_json::Value>(&pending) {
                Ok(message) => {
                    self.message(&message);
                    self.told = true;
                }
                // Cut short, or dropped before any of it came: it says
                // nothing until its end, and was made whole upstream.
                Err(_) => {
                    self.input.plain = rough_tokens(self.request_bytes);
                    self.written_bytes = pending.len();
                }
            }
        }
        if !self.told {
            self.output_tokens = self.output_tokens.max(rough_tokens(self.written_bytes));
        }
        let (input, output) = (self.input.tokens(), self.output_tokens);
        if input == 0 && output == 0 {
            return;
        }
        let (journal, session) = (self.journal.clone(), self.session);
        let (model, weighed) = (std::mem::take(&mut self.model), self.input.weighed());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let cost = cost_usd(&model, weighed, output);
            match journal
                .record_usage(session, input as i64, output as i64, cost)
                .await
            {
                Ok(_) => {}
                // The session deleted meanwhile: nothing to record.
                Err(AppError::NotFound(_)) => {}
                Err(e) => tracing::warn!(%session, "a model call's cost was not recorded: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_writes_and_reads_are_weighed_at_their_prices() {
        let mut input = Input::default();
        input.update(&serde_json::json!({
            "input_tokens": 100,
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 10_000,
            "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 400}
        }));
        // A later usage without the breakdown keeps the hour's share.
        input.update(&serde_json::json!({"cache_creation_input_tokens": 1000}));
        assert_eq!(input.tokens(), 11_100);
        let expected = 100.0 + 600.0 * 1.25 + 400.0 * 2.0 + 1000.0;
        assert!((input.weighed() - expected).abs() < 1e-9);
    }
}
