//! Logging: `RUST_LOG` filters, defaulting to info for Paddock and warnings
//! for its dependencies; lines of text, or one JSON object per line
//! (`PADDOCK_LOG_FORMAT=json`) with the spans a line was logged in, such as
//! the `request` span carrying the request id (`x-request-id`) that the
//! runs a prompt starts keep. Every line is written with the secrets of the
//! sessions this process runs masked ([`SecretMasks::in_log`]), whatever
//! logged it.

use crate::journal::secret_mask::SecretMasks;
use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Without `RUST_LOG`: info for Paddock's crates (the server, its binary,
/// the app) and requests, warnings for the libraries; errors only of the
/// MCP client, whose warnings quote what a session's MCP server wrote.
const DEFAULT_FILTER: &str = "warn,server=info,paddock=info,app=info,tower_http=info,rmcp=error";

pub fn init(format: LogFormat) {
    let (filter, refused) = filter(std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(MaskedStdout);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_span_list(true).init(),
    }
    if let Some(why) = refused {
        tracing::warn!("{why}: logging with the default filter");
    }
}

/// The filter `RUST_LOG` says: the default where it is unset or empty
/// (an empty filter would log nothing, not even errors), or where it is
/// no filter, with why not.
fn filter(rust_log: Option<&str>) -> (EnvFilter, Option<String>) {
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => (EnvFilter::new(DEFAULT_FILTER), None),
        Some(said) => match EnvFilter::try_new(said) {
            Ok(filter) => (filter, None),
            Err(e) => (
                EnvFilter::new(DEFAULT_FILTER),
                Some(format!("RUST_LOG={said:?} is not a log filter ({e})")),
            ),
        },
    }
}

/// Standard output, one masked line at a time.
struct MaskedStdout;

impl MakeWriter<'_> for MaskedStdout {
    type Writer = MaskedLine;

    fn make_writer(&self) -> MaskedLine {
        MaskedLine(Vec::new())
    }
}

/// One formatted event, written out masked when the formatter is done
/// with it.
struct MaskedLine(Vec<u8>);

impl Write for MaskedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for MaskedLine {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.0);
        let line = SecretMasks::global().in_log(&line);
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_empty_or_unreadable_rust_log_keeps_the_default_filter() {
        let default = EnvFilter::new(DEFAULT_FILTER).to_string();
        let said = |rust_log| {
            let (filter, refused) = filter(rust_log);
            (filter.to_string(), refused)
        };
        for unset in [None, Some(""), Some("  ")] {
            assert_eq!(said(unset), (default.clone(), None));
        }
        let (kept, refused) = said(Some("server=verbose"));
        assert_eq!(kept, default);
        assert!(refused.unwrap().contains("\"server=verbose\""));
        assert_eq!(said(Some("hyper=warn")), ("hyper=warn".into(), None));
    }
}
