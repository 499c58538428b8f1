//! Paddock's own agent loop over the Messages API: send the conversation
//! with the tool definitions, stream the answer to viewers, store each
//! completed block, run the tools it asks for in the sandbox (asking first
//! when the permission mode says so), send the results back, and repeat
//! until the model ends its turn or a limit is reached.

use super::history::{self, OpenCall};
use super::{lock, RunError};
use crate::backend::Paddock;
use crate::llm::{cost_usd, ContentBlock, LlmError, Message, Request, Role, StreamDelta};
use crate::tools::{self, Access, ToolContext};
use app::model::{Delta, DeltaKind, EventKind, PermissionMode, Session, SessionId};
use tokio_util::sync::CancellationToken;

/// Whether a tool needs a person's approval in this mode (`None`: refused).
fn needs_approval(mode: PermissionMode, access: Access) -> Option<bool> {
    match (mode, access) {
        (_, Access::Read) | (PermissionMode::Auto, _) => Some(false),
        (PermissionMode::ReadOnly, _) => None,
        (PermissionMode::AcceptEdits, Access::Edit) => Some(false),
        (PermissionMode::Ask | PermissionMode::AcceptEdits, _) => Some(true),
    }
}

impl Paddock {
    pub(crate) async fn run_native(
        &self,
        s: Session,
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        let session = s.id;
        let limits = self.engine_limits();
        self.start_sandbox(&s)
            .await
            .map_err(|e| RunError::Failed(format!("The sandbox could not start: {e}")))?;
        let load = || async {
            self.store
                .events_after(session, 0, i64::MAX)
                .await
                .map_err(|e| RunError::Failed(e.to_string()))
        };
        let mut events = load().await?;
        lock(&self.engine.allowed).insert(session, history::allowed_for_session(&events));
        // Calls the server stopped in the middle of (waiting for a decision)
        // are finished first, so the model gets their real results.
        let unfinished = history::unfinished(&events);
        if !unfinished.is_empty() {
            for call in unfinished {
                let (content, is_error, truncated) = self
                    .run_tool(session, s.permission_mode, &call, cancel)
                    .await?;
                self.record(
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
        let tool_defs = tools::definitions(s.permission_mode);

        for _turn in 0..limits.max_turns {
            let request = Request {
                model: s.model.clone(),
                max_tokens: limits.max_tokens,
                system: (!s.system_prompt.is_empty()).then(|| s.system_prompt.clone()),
                messages: messages.clone(),
                tools: tool_defs.clone(),
            };
            let now = self
                .store
                .get_session(session)
                .await
                .map_err(|e| RunError::Failed(e.to_string()))?
                .ok_or_else(|| RunError::Failed("the session was deleted".into()))?;
            if let Some(refusal) = super::budget_refusal(&now) {
                return Err(RunError::Failed(refusal));
            }
            let seq_hint = now.last_seq;
            let hub = self.hub.clone();
            let mut on_delta = |d: StreamDelta| {
                let (block, kind, text) = match d {
                    StreamDelta::Text { block, text } => (block, DeltaKind::Text, text),
                    StreamDelta::Thinking { block, text } => (block, DeltaKind::Thinking, text),
                    StreamDelta::ToolInput {
                        block,
                        partial_json,
                    } => (block, DeltaKind::ToolInput, partial_json),
                    StreamDelta::Restart { .. } => return,
                };
                hub.publish_delta(Delta {
                    session_id: session,
                    seq_hint,
                    block,
                    kind,
                    text,
                });
            };
            let response = match self.provider.stream(&request, cancel, &mut on_delta).await {
                Ok(r) => r,
                Err(LlmError::Cancelled) => return Err(RunError::Stopped),
                Err(e) => return Err(RunError::Failed(format!("The model call failed: {e}"))),
            };

            // Store the completed blocks, in order.
            let mut calls = Vec::new();
            for block in &response.content {
                let kind = match block {
                    ContentBlock::Text { text } => EventKind::AssistantText { text: text.clone() },
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
                self.record(session, kind).await?;
            }
            let (input, output) = (
                response.usage.input_tokens as i64,
                response.usage.output_tokens as i64,
            );
            let cost = cost_usd(
                &s.model,
                response.usage.input_tokens,
                response.usage.output_tokens,
            );
            self.store
                .add_usage(session, input, output, cost)
                .await
                .map_err(|e| RunError::Failed(e.to_string()))?;
            self.record(
                session,
                EventKind::Usage {
                    input_tokens: input,
                    output_tokens: output,
                    cost_usd: cost,
                },
            )
            .await?;
            messages.push(Message {
                role: Role::Assistant,
                content: response
                    .content
                    .iter()
                    .filter(|b| !matches!(b, ContentBlock::Thinking { .. }))
                    .cloned()
                    .collect(),
            });

            if response.stop_reason.as_deref() != Some("tool_use") || calls.is_empty() {
                return Ok(());
            }
            let mut results = Vec::new();
            for call in calls {
                let (content, is_error, truncated) = self
                    .run_tool(session, s.permission_mode, &call, cancel)
                    .await?;
                let id = call.id;
                self.record(
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
        Err(RunError::Failed(format!(
            "Reached the limit of {} model turns for one prompt; send another prompt to continue.",
            limits.max_turns
        )))
    }

    /// Runs one tool call, asking for permission first where the mode says
    /// so (or waiting again for a request asked before a restart). Failures
    /// and refusals are results for the model, not errors.
    async fn run_tool(
        &self,
        session: SessionId,
        mode: PermissionMode,
        call: &OpenCall,
        cancel: &CancellationToken,
    ) -> Result<(String, bool, bool), RunError> {
        let (id, name, input) = (call.id.as_str(), call.name.as_str(), &call.input);
        let Some(access) = tools::access(name) else {
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
                        self.resume_permission(session, request_id.clone(), *asked_at, name, cancel)
                            .await?
                    }
                    None => {
                        self.ask_permission(session, id, name, input, cancel)
                            .await?
                    }
                };
                if !allowed {
                    return Ok((super::denial(name, reason), true, false));
                }
            }
            Some(false) => {}
        }
        let limits = self.engine_limits();
        let ctx = ToolContext {
            sandbox: self.sandbox.as_ref(),
            session,
            cancel,
            exec_timeout: limits.tool_timeout,
            output_cap: limits.output_cap,
        };
        let out = tools::run(&ctx, name, input, &mut |_, _| {}).await;
        if cancel.is_cancelled() {
            return Err(RunError::Stopped);
        }
        Ok((out.content, out.is_error, out.truncated))
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
