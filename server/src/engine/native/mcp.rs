//! MCP servers for Paddock's own loop: each of a session's stdio servers is
//! started inside its sandbox for the run (a process like any command of
//! the agent's, with the session's variables), and spoken to over that
//! process's stdin and stdout by the official Rust SDK (`rmcp`) as the
//! client. Their tools reach the model as `mcp__<server>__<tool>`, each
//! call under the session's permission mode; a server that does not start,
//! does not answer `initialize`, or fails a call is an error the model (or
//! the transcript) reads, never the run's end.

use crate::llm::ToolDef;
use crate::sandbox::{spawn_within, OutputStream, ProcessControl, Sandbox, SpawnRequest};
use crate::tools::ToolOutput;
use app::domain::{McpServer, SessionId};
use futures_util::StreamExt;
use rmcp::model::{
    CallToolRequestParams, ContentBlock, ErrorCode, ErrorData, JsonRpcMessage,
    PaginatedRequestParams, ServerRequest,
};
use rmcp::service::{RoleClient, RunningService, RxJsonRpcMessage, ServiceExt, TxJsonRpcMessage};
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::Transport;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a server has to answer `initialize` and list its tools.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest message a server may send (rmcp's own default is 16 MiB): a
/// result of a few images fits, cut for the model afterwards. Past it, the
/// server's link ends, and what waits on it fails at once.
const LINE_MAX_BYTES: usize = 8 * 1024 * 1024;
/// Requests of a server's (`ping`, `roots/list`) answered at once: past
/// them, one is let go unanswered, as a server that never reads its input
/// would otherwise have one task and answer held here for each it sends.
const SERVER_REQUESTS_AT_ONCE: usize = 16;
/// Longest tool name taken from a server, in bytes (the model's name for
/// it is cut at 128 characters; the server's own is kept whole to call it).
const TOOL_NAME_MAX_BYTES: usize = 1024;
/// A server's names and messages quoted in an error, at most (characters).
const QUOTED_MAX_CHARS: usize = 200;
/// Tools one server may offer, pages of its list read, and the size of a
/// tool's description and input schema: what every model call carries.
const TOOLS_MAX: usize = 128;
const PAGES_MAX: usize = 16;
const DESCRIPTION_MAX_CHARS: usize = 4096;
const SCHEMA_MAX_BYTES: usize = 64 * 1024;
/// What the tools of all a run's servers may take of every model call, as
/// JSON: past it, a tool is left out (so many as the servers allow would
/// fill the context, and every call be refused as too long).
const DEFINITIONS_MAX_BYTES: usize = 128 * 1024;
/// Longest a server's process may live. A run ends its servers when it
/// ends (the time it waits for people's decisions has no bound of its
/// own); this ends one a server that stopped without ending them left.
const SERVER_LIFETIME_MAX: Duration = Duration::from_secs(24 * 3600);

/// The prefix of every MCP tool's name.
pub const PREFIX: &str = "mcp__";

struct Server {
    client: RunningService<RoleClient, ()>,
    control: Box<dyn ProcessControl>,
}

/// One tool, as the model knows it and as its server does.
struct Tool {
    model_name: String,
    server: usize,
    name: String,
}

/// The MCP servers of one run and their tools.
#[derive(Default)]
pub struct McpTools {
    servers: Vec<Server>,
    tools: Vec<Tool>,
    pub definitions: Vec<ToolDef>,
    /// The size of `definitions` as JSON, near enough.
    definitions_bytes: usize,
}

/// A name the Messages API takes (`^[a-zA-Z0-9_-]{1,128}$`).
fn model_name(server: &str, tool: &str) -> String {
    let tool: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{PREFIX}{server}__{tool}")
        .chars()
        .take(128)
        .collect()
}

/// A tool as its server listed it, kept as far as it may be offered: its
/// description cut, and its input schema only if the Messages API takes
/// it (an object, nothing at the top that combines schemas, of a size a
/// request can carry) with its size as JSON.
struct Listed {
    name: String,
    /// Its name is over [`TOOL_NAME_MAX_BYTES`] (`name` is its quote).
    too_long: bool,
    description: Option<String>,
    schema: Option<(serde_json::Value, usize)>,
}

impl Listed {
    fn of(tool: rmcp::model::Tool) -> Self {
        let schema = &*tool.input_schema;
        let bytes = serde_json::to_vec(schema).map_or(usize::MAX, |json| json.len());
        let usable = bytes <= SCHEMA_MAX_BYTES
            && schema.get("type").is_some_and(|t| t == "object")
            && ["oneOf", "anyOf", "allOf"]
                .iter()
                .all(|k| schema.get(*k).is_none());
        // (A name too long to be offered is kept as quoted, to say so.)
        let too_long = tool.name.len() > TOOL_NAME_MAX_BYTES;
        let name = match too_long {
            true => quoted(&tool.name),
            false => tool.name.into_owned(),
        };
        Self {
            name,
            too_long,
            description: tool
                .description
                .map(|d| d.chars().take(DESCRIPTION_MAX_CHARS).collect()),
            schema: usable.then(|| (serde_json::Value::Object(schema.clone()), bytes)),
        }
    }
}

/// A server's tools, page by page, within [`TOOLS_MAX`] and [`PAGES_MAX`];
/// each page is let go once its tools are kept as far as they may be
/// offered ([`Listed`]), as a server's whole list may be large.
async fn list_tools(client: &RunningService<RoleClient, ()>) -> Result<Vec<Listed>, String> {
    let mut tools = Vec::new();
    let mut cursor = None;
    for _ in 0..PAGES_MAX {
        let page = client
            .list_tools(Some(PaginatedRequestParams::default().with_cursor(cursor)))
            .await
            .map_err(|e| e.to_string())?;
        tools.extend(page.tools.into_iter().map(Listed::of));
        if tools.len() >= TOOLS_MAX {
            tools.truncate(TOOLS_MAX);
            break;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(tools)
}

/// The tool a refusal of the Messages API names, by its place among the
/// request's tools (`tools.3.custom.input_schema: JSON schema is invalid…`):
/// a schema past the few rules checked here, which the API alone knows.
pub fn refused_tool(said: &str) -> Option<usize> {
    let at = said.find("tools.")? + "tools.".len();
    let digits = &said[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// `text` as an error quotes it: at most [`QUOTED_MAX_CHARS`].
fn quoted(text: &str) -> String {
    app::text::elided(text, QUOTED_MAX_CHARS)
}

/// Counts `bytes` into the line under way (`line`: its bytes so far):
/// `false` once a line is longer than [`LINE_MAX_BYTES`].
fn within_line_limit(line: &mut usize, bytes: &[u8]) -> bool {
    for piece in bytes.split_inclusive(|b| *b == b'\n') {
        *line += piece.len();
        if *line > LINE_MAX_BYTES + 1 {
            return false;
        }
        if piece.ends_with(b"\n") {
            *line = 0;
        }
    }
    true
}

/// A server's link as the client reads it: its notifications (a log
/// line, progress) are let go, as Paddock uses none and rmcp would log
/// each whole; of its requests, `ping` and `roots/list` once it answered
/// `initialize` are rmcp's to answer, [`SERVER_REQUESTS_AT_ONCE`] at a
/// time, and the rest refused here, one after the other (rmcp would refuse
/// each too, but log it with the method and id the server wrote, and
/// before `initialize` the whole message).
struct Link<T> {
    inner: T,
    answering: Arc<AtomicUsize>,
    /// Whether the server answered anything yet (`initialize` first).
    answered: bool,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Link<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        // (The client's responses and errors answer the server's requests.)
        let answer = matches!(item, JsonRpcMessage::Response(_) | JsonRpcMessage::Error(_));
        let answering = self.answering.clone();
        let sent = self.inner.send(item);
        async move {
            let sent = sent.await;
            if answer {
                answering.fetch_sub(1, Ordering::Relaxed);
            }
            sent
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            let message = self.inner.receive().await?;
            match &message {
                JsonRpcMessage::Notification(_) => continue,
                JsonRpcMessage::Request(request)
                    if !self.answered
                        || !matches!(
                            request.request,
                            ServerRequest::PingRequest(_) | ServerRequest::ListRootsRequest(_)
                        ) =>
                {
                    // Sent on its own, within the same count as rmcp's
                    // answers: reading never waits on the server's input.
                    if !take_slot(&self.answering) {
                        continue;
                    }
                    let refusal = ErrorData::new(
                        ErrorCode::METHOD_NOT_FOUND,
                        "Paddock's MCP client takes no such request",
                        None,
                    );
                    let sent = self
                        .inner
                        .send(JsonRpcMessage::error(refusal, Some(request.id.clone())));
                    let answering = self.answering.clone();
                    tokio::spawn(async move {
                        let _ = sent.await;
                        answering.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                JsonRpcMessage::Request(_) => {
                    if !take_slot(&self.answering) {
                        continue;
                    }
                    return Some(message);
                }
                _ => {
                    self.answered = true;
                    return Some(message);
                }
            }
        }
    }

    fn close(&mut self) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// Takes one of the [`SERVER_REQUESTS_AT_ONCE`] answers under way, if one
/// is free.
fn take_slot(answering: &AtomicUsize) -> bool {
    answering
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < SERVER_REQUESTS_AT_ONCE).then_some(n + 1)
        })
        .is_ok()
}

/// A tool call's content as text for the model.
fn text_of(content: &[ContentBlock]) -> String {
    content
        .iter()
        .map(|c| match c {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Image(i) => format!("[an image, {}]", i.mime_type),
            other => serde_json::to_string(other).unwrap_or_default(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl McpTools {
    /// Starts each server in the session's sandbox; what it could not start
    /// is said in the returned messages.
    pub async fn start(
        sandbox: &dyn Sandbox,
        session: SessionId,
        servers: &[McpServer],
        env: &[(String, String)],
        cancel: &CancellationToken,
    ) -> (Self, Vec<String>) {
        let mut tools = McpTools::default();
        let mut failed = Vec::new();
        for server in servers {
            if cancel.is_cancelled() {
                break;
            }
            match tools
                .start_one(sandbox, session, server, env, cancel)
                .await
            {
                // (One message a server, however many it leaves out.)
                Ok(left_out) if left_out.is_empty() => {}
                Ok(left_out) => failed.push(format!(
                    "Tools of the MCP server {} are not offered: {}.",
                    server.name,
                    left_out.join("; ")
                )),
                Err(why) => failed.push(format!(
                    "The MCP server {} did not start: {why}. Its tools are not offered in this run.",
                    server.name
                )),
            }
        }
        (tools, failed)
    }

    async fn start_one(
        &mut self,
        sandbox: &dyn Sandbox,
        session: SessionId,
        server: &McpServer,
        env: &[(String, String)],
        cancel: &CancellationToken,
    ) -> Result<Vec<String>, String> {
        let request = SpawnRequest {
            argv: std::iter::once(&server.command)
                .chain(&server.args)
                .cloned()
                .collect(),
            env: env
                .iter()
                .cloned()
                .chain(server.env.iter().map(|v| (v.name.clone(), v.value.clone())))
                .collect(),
            timeout: SERVER_LIFETIME_MAX,
        };
        let spawned = spawn_within(sandbox, session, &request, START_TIMEOUT, cancel);
        let Some(process) = spawned.await.map_err(|e| e.to_string())? else {
            return Err("the run was stopped".into());
        };
        // Its stdout is the protocol; what it says on stderr is its own.
        let mut line = 0;
        let stdout = process.output.filter_map(move |item| {
            std::future::ready(match item {
                Ok((OutputStream::Stdout, bytes)) if within_line_limit(&mut line, &bytes) => {
                    Some(Ok(bytes))
                }
                Ok((OutputStream::Stdout, _)) => Some(Err(std::io::Error::other(format!(
                    "it sent a message over {} MiB",
                    LINE_MAX_BYTES / 1024 / 1024
                )))),
                Ok((OutputStream::Stderr, _)) => None,
                Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
            })
        });
        let reader = tokio_util::io::StreamReader::new(Box::pin(stdout));
        let transport = Link {
            inner: AsyncRwTransport::new_client(reader, process.stdin)
                .with_max_line_length(LINE_MAX_BYTES + 1),
            answering: Arc::default(),
            answered: false,
        };
        let handshake = tokio::time::timeout(START_TIMEOUT, async {
            let client = ().serve(transport).await.map_err(|e| e.to_string())?;
            let listed = list_tools(&client).await?;
            Ok::<_, String>((client, listed))
        });
        let started = tokio::select! {
            started = handshake => started,
            () = cancel.cancelled() => {
                process.control.kill().await;
                return Err("the run was stopped".into());
            }
        };
        let (client, listed) = match started {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                process.control.kill().await;
                return Err(format!(
                    "it did not answer as an MCP server ({})",
                    quoted(&e)
                ));
            }
            Err(_) => {
                process.control.kill().await;
                return Err(format!(
                    "it did not answer initialize within {} s",
                    START_TIMEOUT.as_secs()
                ));
            }
        };
        let index = self.servers.len();
        let mut left_out = Vec::new();
        let mut past_room = Vec::new();
        for tool in listed {
            if tool.too_long {
                left_out.push(format!("{} (its name is too long)", tool.name));
                continue;
            }
            let model_name = model_name(&server.name, &tool.name);
            if self.tools.iter().any(|t| t.model_name == model_name) {
                left_out.push(format!("{} (its name is taken)", quoted(&tool.name)));
                continue;
            }
            let Some((schema, schema_bytes)) = tool.schema else {
                left_out.push(format!(
                    "{} (its input schema cannot be offered)",
                    quoted(&tool.name)
                ));
                continue;
            };
            let description = tool
                .description
                .unwrap_or_else(|| format!("{} of the MCP server {}", tool.name, server.name));
            let bytes = model_name.len() + description.len() + schema_bytes;
            if self.definitions_bytes + bytes > DEFINITIONS_MAX_BYTES {
                past_room.push(quoted(&tool.name));
                continue;
            }
            self.definitions_bytes += bytes;
            self.definitions.push(ToolDef {
                name: model_name.clone(),
                description,
                input_schema: schema,
            });
            self.tools.push(Tool {
                model_name,
                server: index,
                name: tool.name,
            });
        }
        if !past_room.is_empty() {
            left_out.push(format!(
                "{} (the run's MCP tools would take more than {} KiB of every model call)",
                past_room.join(", "),
                DEFINITIONS_MAX_BYTES / 1024
            ));
        }
        self.servers.push(Server {
            client,
            control: process.control,
        });
        Ok(left_out)
    }

    /// Whether the model's tool `name` is one of these.
    pub fn has(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.model_name == name)
    }

    /// Calls a tool; its failures, its errors and a call past `limit` are
    /// error results for the model.
    pub async fn call(&self, name: &str, input: &serde_json::Value, limit: Duration) -> ToolOutput {
        let Some(tool) = self.tools.iter().find(|t| t.model_name == name) else {
            return ToolOutput::error(format!("Unknown tool {name:?}."));
        };
        let Some(arguments) = input.as_object().cloned() else {
            return ToolOutput::error("The input of an MCP tool is a JSON object.");
        };
        let server = &self.servers[tool.server];
        let request = CallToolRequestParams::new(tool.name.clone()).with_arguments(arguments);
        match tokio::time::timeout(limit, server.client.call_tool(request)).await {
            Ok(Ok(result)) => ToolOutput {
                content: text_of(&result.content),
                is_error: result.is_error.unwrap_or(false),
                truncated: false,
            },
            Ok(Err(e)) => ToolOutput::error(format!(
                "The MCP server failed the call: {}",
                quoted(&e.to_string())
            )),
            Err(_) => ToolOutput::error(format!(
                "The MCP server did not answer within {} s.",
                limit.as_secs()
            )),
        }
    }

    /// Ends every server of the run: killed first, so that closing the
    /// client never waits on a server that stopped reading.
    pub async fn stop(self) {
        for server in self.servers {
            server.control.kill().await;
            let _ = tokio::time::timeout(Duration::from_secs(2), server.client.cancel()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_tool_by_its_place() {
        assert_eq!(
            refused_tool("tools.12.custom.input_schema: JSON schema is invalid"),
            Some(12)
        );
        assert_eq!(refused_tool("tools.3: unknown field"), Some(3));
        for other in [
            "prompt is too long",
            "tools.x.custom",
            "tools.",
            "tools.99999999999999999999",
        ] {
            assert_eq!(refused_tool(other), None, "{other}");
        }
    }
}
