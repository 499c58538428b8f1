//! Paddock's own agent loop over the Messages API: send the conversation
//! with the tool definitions, stream the answer to viewers, store each
//! completed block, run the tools it asks for in the sandbox (asking first
//! when the permission mode says so), send the results back, and repeat
//! until the model ends its turn or a limit is reached. The conversation is
//! rebuilt from the transcript ([`history`]) at the start of every run, so a
//! session resumes after a restart where its transcript stands.

mod context;
mod history;
mod mcp;
mod project;

use super::{denial, AgentEngine, EngineLimits, Permissions, RunError};
use crate::journal::Journal;
use crate::llm::{
    budget_refusal, cost_usd, ContentBlock, LlmError, Message, Provider, Request, Role,
    StreamDelta, Usage,
};
use crate::sandbox::Sandbox;
use crate::store::Store;
use crate::tools::{self, Access, ToolContext};
use crate::vault::Vault;
use app::domain::{AppError, Delta, DeltaKind, EventKind, PermissionMode, Session};
use history::OpenCall;
use mcp::McpTools;
use project::Project;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The result of a call whose input the answer's token limit cut off: it
/// is not run, and the model is told why, to make it again smaller.
const CUT_OFF: &str = "Not run: your answer reached its limit (max_tokens, or the context \
window) while it wrote this call's input, which was cut off. Make the call again with less in it: write a large \
file in parts (write_file with the first part, then edit_file to add the rest).";

/// Paddock's own agent loop.
pub struct NativeEngine {
    pub store: Arc<dyn Store>,
    pub journal: Journal,
    pub sandbox: Arc<dyn Sandbox>,
    pub provider: Arc<dyn Provider>,
    /// Where the model credential of each call comes from.
    pub vault: Arc<Vault>,
    pub permissions: Arc<Permissions>,
    pub limits: EngineLimits,
}

/// Whether a tool needs a person's approval in this mode (`None`: refused).
fn needs_approval(mode: PermissionMode, access: Access) -> Option<bool> {
    match (mode, access) {
        (_, Access::Read) | (PermissionMode::Auto, _) => Some(false),
        (PermissionMode::ReadOnly, _) => None,
        (PermissionMode::AcceptEdits, Access::Edit) => Some(false),
        (PermissionMode::Ask | PermissionMode::AcceptEdits, _) => Some(true),
    }
}

#[async_trait::async_trait]
impl AgentEngine for NativeEngine {
    async fn run(&self, s: Session, cancel: &CancellationToken) -> Result<(), RunError> {
        let limits = &self.limits.for_session(&s);
        let env: Vec<(String, String)> = s
            .env
            .iter()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect();
        // The session's MCP servers live as long as the run; their tools
        // may change anything, so a read-only session runs none.
        let mcp = if s.mcp_servers.is_empty() || s.permission_mode == PermissionMode::ReadOnly {
            McpTools::default()
        } else {
            let (mcp, failed) =
                McpTools::start(self.sandbox.as_ref(), s.id, &s.mcp_servers, &env, cancel).await;
            for message in failed {
                if let Err(e) = self
                    .journal
                    .record(s.id, EventKind::Error { message })
                    .await
                {
                    mcp.stop().await;
                    return Err(e.into());
                }
            }
            mcp
        };
        let result = if cancel.is_cancelled() {
            Err(RunError::Stopped)
        } else {
            self.converse(&s, limits, &env, &mcp, cancel).await
        };
        mcp.stop().await;
        result
    }

    async fn listen_again(&self, s: &Session) -> Result<bool, AppError> {
        let events = self.store.conversation_after(s.id, 0).await?;
        let mut any = false;
        for call in history::unfinished(&events) {
            if let Some((request_id, _)) = call.request {
                self.permissions.listen_again(s.id, &request_id);
                any = true;
            }
        }
        Ok(any)
    }
}

impl NativeEngine {
    /// The run's conversation: tool calls left open by a restart first,
    /// then model turns until the model ends its turn or a limit is met.
    async fn converse(
        &self,
        s: &Session,
        limits: &EngineLimits,
        env: &[(String, String)],
        mcp: &McpTools,
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        let session = s.id;
        let load = || self.store.conversation_after(session, 0);
        let mut events = load().await?;
        let mut allowed = super::permissions::allowed_for_session(&events);
        allowed.extend(s.allowed_tools.iter().cloned());
        self.permissions.set_allowed(session, allowed);
        // Calls the server stopped in the middle of (waiting for a decision)
        // are finished first, so the model gets their real results.
        let unfinished = history::unfinished(&events);
        if !unfinished.is_empty() {
            for call in unfinished {
                let (content, is_error, truncated) =
                    self.run_tool(s, limits, env, mcp, &call, cancel).await?;
                self.journal
                    .record(
                        session,
                        EventKind::ToolResult {
                            id: call.id,
                            output: content,
                            is_error,
                            truncated,
                        },
                    )
                    .await?;
            }
            events = load().await?;
        }
        let mut messages = history::rebuild(&events);
        // Not held for the run (hours, waiting on decisions): the messages
        // are what it goes on with.
        drop(events);
        let project = Project::read(self.sandbox.workspace(session).as_ref()).await;
        let mut tool_defs = tools::definitions(s.permission_mode, !project.skills.is_empty());
        let paddocks_tools = tool_defs.len();
        tool_defs.extend(mcp.definitions.iter().cloned());
        let system = [Some(s.system_prompt.clone()), project.system_prompt()]
            .into_iter()
            .flatten()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n");

        // (The tools' definitions, as sent, are JSON.)
        let beside = context::rough_tokens(&system)
            + context::rough_tokens(&serde_json::to_string(&tool_defs).unwrap_or_default());
        let mut budget = context::BUDGET_TOKENS.saturating_sub(beside);
        let mut refitted = false;
        // Model calls answered (a refit's refusal is none).
        let mut turns = 0;
        while turns < limits.max_turns {
            context::fit(&mut messages, budget);
            let request = Request {
                model: s.model.clone(),
                max_tokens: limits.max_tokens,
                system: (!system.is_empty()).then(|| system.clone()),
                messages: messages.clone(),
                tools: tool_defs.clone(),
            };
            let now = self
                .store
                .get_session(session)
                .await?
                .ok_or(RunError::Deleted)?;
            if let Some(refusal) = budget_refusal(&now) {
                return Err(RunError::Limit(refusal));
            }
            let seq_hint = now.last_seq;
            let journal = &self.journal;
            let mut on_delta = |d: StreamDelta| {
                let (block, kind, text) = match d {
                    StreamDelta::Text { block, text } => (block, DeltaKind::Text, text),
                    StreamDelta::Thinking { block, text } => (block, DeltaKind::Thinking, text),
                    StreamDelta::ToolInput {
                        block,
                        partial_json,
                    } => (block, DeltaKind::ToolInput, partial_json),
                    StreamDelta::Restart { .. } => {
                        journal.restart_deltas(session);
                        return;
                    }
                };
                journal.delta(Delta {
                    session_id: session,
                    seq_hint,
                    block,
                    kind,
                    text,
                });
            };
            let credential = self.vault.llm_credential(now.owner).await?;
            let mut spent = Usage::default();
            let streamed = self
                .provider
                .stream(
                    credential.as_ref(),
                    &request,
                    cancel,
                    &mut on_delta,
                    &mut spent,
                )
                .await;
            // Every call is billed, a retry's and one stopped or cut off
            // too (one that never began used nothing: no turn).
            let charge = || async {
                if spent == Usage::default() {
                    return Ok(());
                }
                // (Paddock's loop asks for no prompt caching.)
                let cost = cost_usd(&s.model, spent.input_tokens as f64, spent.output_tokens);
                let (input, output) = (spent.input_tokens as i64, spent.output_tokens as i64);
                self.journal
                    .record_usage(session, input, output, cost)
                    .await
                    .map(drop)
            };
            let mut response = match streamed {
                Ok(r) => r,
                Err(e) => {
                    if let Err(failed) = charge().await {
                        tracing::warn!(%session, "cannot charge a call that ended early: {failed}");
                    }
                    // Too long by the API's count, short of the rough one:
                    // fitted again within as much less, once.
                    if let LlmError::InvalidRequest(said) = &e {
                        let smaller = context::budget_after_refusal(said, budget);
                        if let Some(smaller) = smaller.filter(|_| !refitted) {
                            (budget, refitted) = (smaller, true);
                            continue;
                        }
                        // An MCP server's tool the API refuses (its schema):
                        // left out, said, and the call made again without it,
                        // rather than every call of the session refused.
                        let refused = mcp::refused_tool(said)
                            .filter(|at| (paddocks_tools..tool_defs.len()).contains(at));
                        if let Some(at) = refused {
                            let tool = tool_defs.remove(at);
                            let message = format!(
                                "The MCP tool {} is not offered: the model's API refused it ({}).",
                                tool.name,
                                app::text::elided(said, 200)
                            );
                            self.journal
                                .record(session, EventKind::Error { message })
                                .await?;
                            continue;
                        }
                    }
                    return Err(match e {
                        LlmError::Cancelled => RunError::Stopped,
                        e => RunError::Model(e),
                    });
                }
            };
            turns += 1;

            // Store the completed blocks, in order; a text of white space
            // alone is left out, as the API refuses it in a request.
            response
                .content
                .retain(|b| !matches!(b, ContentBlock::Text { text } if text.trim().is_empty()));
            let mut calls = Vec::new();
            let recorded = async {
                for block in &response.content {
                    let kind = match block {
                        ContentBlock::Text { text } => {
                            EventKind::AssistantText { text: text.clone() }
                        }
                        ContentBlock::Thinking { thinking, .. } => EventKind::Thinking {
                            text: thinking.clone(),
                        },
                        ContentBlock::ToolUse { id, name, input } => {
                            calls.push(OpenCall {
                                id: id.clone(),
                                name: name.clone(),
                                input: input.clone(),
                                request: None,
                            });
                            EventKind::ToolCall {
                                id: id.clone(),
                                name: name.clone(),
                                input: input.clone(),
                            }
                        }
                        ContentBlock::ToolResult { .. } => continue,
                    };
                    self.journal.record(session, kind).await?;
                }
                Ok::<_, RunError>(())
            }
            .await;
            // Charged whether or not its blocks could be recorded.
            charge().await?;
            recorded?;
            if response.stop_reason.as_deref() == Some(crate::llm::REFUSAL) {
                // The turn ends; the conversation leaves it out from now on
                // (see history::rebuild), or every later call is declined.
                self.journal
                    .record(
                        session,
                        EventKind::Refused {
                            explanation: response.explanation,
                        },
                    )
                    .await?;
                return Ok(());
            }
            messages.push(Message {
                role: Role::Assistant,
                content: response
                    .content
                    .iter()
                    .filter(|b| !matches!(b, ContentBlock::Thinking { .. }))
                    .cloned()
                    .collect(),
            });

            let calling =
                response.stop_reason.as_deref() == Some("tool_use") || response.cut_off.is_some();
            if !calling || calls.is_empty() {
                return Ok(());
            }
            // A call the output limit cut off is answered first: recorded
            // before the others run, so a restart while one of them waits
            // for a decision does not find it open and run it with an
            // empty input.
            calls.sort_by_key(|c| Some(&c.id) != response.cut_off.as_ref());
            let mut results = Vec::new();
            for call in calls {
                let (content, is_error, truncated) = if Some(&call.id) == response.cut_off.as_ref()
                {
                    (CUT_OFF.to_owned(), true, false)
                } else {
                    self.run_tool(s, limits, env, mcp, &call, cancel).await?
                };
                let id = call.id;
                self.journal
                    .record(
                        session,
                        EventKind::ToolResult {
                            id: id.clone(),
                            output: content.clone(),
                            is_error,
                            truncated,
                        },
                    )
                    .await?;
                results.push(ContentBlock::ToolResult {
                    tool_use_id: id,
                    content,
                    is_error,
                });
            }
            messages.push(Message {
                role: Role::User,
                content: results,
            });
        }
        Err(RunError::Limit(format!(
            "Reached the limit of {} model turns for one prompt; send another prompt to continue.",
            limits.max_turns
        )))
    }

    /// Runs one tool call, asking for permission first where the mode says
    /// so (or waiting again for a request asked before a restart). Failures
    /// and refusals are results for the model, not errors.
    async fn run_tool(
        &self,
        s: &Session,
        limits: &EngineLimits,
        env: &[(String, String)],
        mcp: &McpTools,
        call: &OpenCall,
        cancel: &CancellationToken,
    ) -> Result<(String, bool, bool), RunError> {
        let (session, mode) = (s.id, s.permission_mode);
        let (id, name, input) = (call.id.as_str(), call.name.as_str(), &call.input);
        // An MCP server's tool may do anything: it is asked for like bash.
        let from_mcp = mcp.has(name);
        let access = if from_mcp {
            Some(Access::Execute)
        } else {
            tools::access(name)
        };
        let asks = access.and_then(|a| needs_approval(mode, a)) == Some(true);
        if let (Some((request_id, _)), false) = (&call.request, asks) {
            let decided = self
                .permissions
                .withdraw(
                    session,
                    request_id,
                    name,
                    "The session does not ask for it any more (its permission mode or its \
                     tools changed while the server restarted).",
                )
                .await?;
            // Denied by someone meanwhile: it stays denied.
            if let Some((false, reason)) = decided {
                return Ok((denial(name, reason), true, false));
            }
        }
        let Some(access) = access else {
            return Ok((format!("Unknown tool {name:?}."), true, false));
        };
        match needs_approval(mode, access) {
            None => {
                return Ok((
                    format!("{name} is not allowed in read-only mode."),
                    true,
                    false,
                ))
            }
            Some(true) => {
                let (allowed, reason) = match &call.request {
                    Some((request_id, asked_at)) => {
                        self.permissions
                            .ask_again(session, request_id.clone(), *asked_at, name, cancel)
                            .await?
                    }
                    None => {
                        self.permissions
                            .ask(session, id, name, input, cancel)
                            .await?
                    }
                };
                if !allowed {
                    return Ok((denial(name, reason), true, false));
                }
            }
            Some(false) => {}
        }
        let ctx = ToolContext {
            sandbox: self.sandbox.as_ref(),
            session,
            cancel,
            exec_timeout: limits.tool_timeout,
            output_cap: limits.output_cap,
            env,
        };
        let started = std::time::Instant::now();
        let out = if from_mcp {
            tokio::select! {
                out = mcp.call(name, input, limits.tool_timeout) => out.capped(limits.output_cap),
                () = cancel.cancelled() => return Err(RunError::Stopped),
            }
        } else {
            tools::run(&ctx, name, input, &mut |_, _| {}).await
        };
        if cancel.is_cancelled() {
            return Err(RunError::Stopped);
        }
        let tool = if from_mcp {
            "mcp"
        } else {
            tools::metric_name(name)
        };
        crate::metrics::tool_call(tool, started.elapsed(), out.is_error);
        // The model gets the output as the transcript shows it, secrets
        // masked: the conversation is rebuilt from the transcript anyway,
        // and a value the model never read is one it cannot repeat.
        let content = self.journal.mask_output(session, &out.content);
        let content = history::worded(&content, out.is_error).to_owned();
        Ok((content, out.is_error, out.truncated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_modes() {
        use Access::*;
        use PermissionMode::*;
        assert_eq!(needs_approval(Ask, Read), Some(false));
        assert_eq!(needs_approval(Ask, Edit), Some(true));
        assert_eq!(needs_approval(Ask, Execute), Some(true));
        assert_eq!(needs_approval(AcceptEdits, Edit), Some(false));
        assert_eq!(needs_approval(AcceptEdits, Execute), Some(true));
        assert_eq!(needs_approval(Auto, Execute), Some(false));
        assert_eq!(needs_approval(ReadOnly, Edit), None);
        assert_eq!(needs_approval(ReadOnly, Read), Some(false));
    }
}
