//! Request checks: the structural rules the real Messages API enforces (so a
//! client bug fails here as it would against Anthropic, instead of passing a
//! lenient fake), and the per-turn expectations a scenario states.
//!
//! Every function answers `Err(message)`; the caller turns that into a 400
//! `invalid_request_error` carrying the message.

use super::scenario::{Action, Expect, Turn};
use serde_json::Value;
use std::collections::BTreeSet;

/// Checks a `POST /v1/messages` body.
pub fn messages_request(body: &Value) -> Result<(), String> {
    let obj = body
        .as_object()
        .ok_or("request body must be a JSON object")?;
    model(body)?;
    match obj.get("max_tokens") {
        None => return Err("max_tokens: Field required".into()),
        Some(v) if v.as_u64().is_some_and(|n| n >= 1) => {}
        Some(_) => return Err("max_tokens: must be a positive integer".into()),
    }
    if let Some(stream) = obj.get("stream") {
        if !stream.is_boolean() {
            return Err("stream: must be a boolean".into());
        }
    }
    messages(body)?;
    tools(body)?;
    Ok(())
}

/// Checks a `POST /v1/messages/count_tokens` body (no `max_tokens` there).
pub fn count_tokens_request(body: &Value) -> Result<(), String> {
    if !body.is_object() {
        return Err("request body must be a JSON object".into());
    }
    model(body)?;
    messages(body)?;
    tools(body)?;
    Ok(())
}

fn model(body: &Value) -> Result<(), String> {
    match body.get("model") {
        None => Err("model: Field required".into()),
        Some(Value::String(m)) if !m.is_empty() => Ok(()),
        Some(_) => Err("model: must be a non-empty string".into()),
    }
}

fn messages(body: &Value) -> Result<(), String> {
    let messages = match body.get("messages") {
        None => return Err("messages: Field required".into()),
        Some(Value::Array(m)) => m,
        Some(_) => return Err("messages: must be an array".into()),
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    let mut expected_role = "user";
    // tool_use ids of the previous assistant message still to be answered.
    let mut pending: Option<(usize, BTreeSet<String>)> = None;
    for (i, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("messages.{i}.role: Field required"))?;
        if role != "user" && role != "assistant" {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
        if role != expected_role {
            return Err(if i == 0 {
                "messages: first message must use the \"user\" role".into()
            } else {
                format!(
                    "messages: roles must alternate between \"user\" and \"assistant\", \
                     but messages.{} and messages.{i} are both \"{role}\"",
                    i - 1
                )
            });
        }
        let blocks = content_blocks(message, i)?;
        if role == "user" {
            let answered = tool_result_ids(&blocks, i)?;
            match pending.take() {
                Some((at, ids)) => {
                    if let Some(extra) = answered.difference(&ids).next() {
                        return Err(format!(
                            "messages.{i}: unexpected `tool_use_id` found in `tool_result` \
                             blocks: {extra}. Each `tool_result` block must have a \
                             corresponding `tool_use` block in the previous message."
                        ));
                    }
                    let missing: Vec<&str> =
                        ids.difference(&answered).map(String::as_str).collect();
                    if !missing.is_empty() {
                        return Err(format!(
                            "messages.{i}: `tool_use` ids were found without `tool_result` \
                             blocks immediately after: {}. Each `tool_use` block (in \
                             messages.{at}) must have a corresponding `tool_result` block \
                             in the next message.",
                            missing.join(", ")
                        ));
                    }
                }
                None => {
                    if let Some(extra) = answered.iter().next() {
                        return Err(format!(
                            "messages.{i}: unexpected `tool_use_id` found in `tool_result` \
                             blocks: {extra}. Each `tool_result` block must have a \
                             corresponding `tool_use` block in the previous message."
                        ));
                    }
                }
            }
            expected_role = "assistant";
        } else {
            let ids = tool_use_ids(&blocks, i)?;
            if !ids.is_empty() {
                pending = Some((i, ids));
            }
            expected_role = "user";
        }
    }
    if let Some((at, ids)) = pending {
        return Err(format!(
            "messages.{at}: `tool_use` ids were found without `tool_result` blocks \
             immediately after: {}",
            ids.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(())
}

/// A message's content as blocks; a string content has none that matter here.
fn content_blocks(message: &Value, i: usize) -> Result<Vec<&Value>, String> {
    match message.get("content") {
        None => Err(format!("messages.{i}.content: Field required")),
        Some(Value::String(_)) => Ok(Vec::new()),
        Some(Value::Array(blocks)) => {
            for (j, block) in blocks.iter().enumerate() {
                if block.get("type").and_then(Value::as_str).is_none() {
                    return Err(format!("messages.{i}.content.{j}.type: Field required"));
                }
            }
            Ok(blocks.iter().collect())
        }
        Some(_) => Err(format!(
            "messages.{i}.content: must be a string or an array of content blocks"
        )),
    }
}

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

fn tool_result_ids(blocks: &[&Value], i: usize) -> Result<BTreeSet<String>, String> {
    let mut ids = BTreeSet::new();
    for (j, block) in blocks.iter().enumerate() {
        if block_type(block) == "tool_result" {
            let id = block
                .get("tool_use_id")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("messages.{i}.content.{j}.tool_use_id: Field required"))?;
            if !ids.insert(id.to_owned()) {
                return Err(format!(
                    "messages.{i}.content.{j}: each tool_use must have a single result. \
                     Found multiple `tool_result` blocks with id: {id}"
                ));
            }
        }
    }
    Ok(ids)
}

fn tool_use_ids(blocks: &[&Value], i: usize) -> Result<BTreeSet<String>, String> {
    let mut ids = BTreeSet::new();
    for (j, block) in blocks.iter().enumerate() {
        if block_type(block) == "tool_result" {
            return Err(format!(
                "messages.{i}.content.{j}: `tool_result` blocks are only allowed in user messages"
            ));
        }
        if block_type(block) == "tool_use" {
            let id = block
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("messages.{i}.content.{j}.id: Field required"))?;
            if block.get("name").and_then(Value::as_str).is_none() {
                return Err(format!("messages.{i}.content.{j}.name: Field required"));
            }
            if !ids.insert(id.to_owned()) {
                return Err(format!(
                    "messages.{i}.content.{j}: `tool_use` ids must be unique, {id} repeats"
                ));
            }
        }
    }
    Ok(ids)
}

fn tools(body: &Value) -> Result<(), String> {
    let tools = match body.get("tools") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(t)) => t,
        Some(_) => return Err("tools: must be an array".into()),
    };
    let mut seen = BTreeSet::new();
    for (k, tool) in tools.iter().enumerate() {
        let name = tool
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("tools.{k}.name: Field required"))?;
        if !seen.insert(name) {
            return Err(format!(
                "tools: Tool names must be unique, `{name}` repeats"
            ));
        }
    }
    Ok(())
}

/// Names of the tools the request declares.
pub fn declared_tools(body: &Value) -> Vec<&str> {
    body.get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks `turn` (number `index`, from 0) against the request it answers:
/// its expectations, and that every tool it uses is declared.
pub fn turn_matches(turn: &Turn, index: usize, body: &Value) -> Result<(), String> {
    expectations(&turn.expect, body)
        .map_err(|e| format!("scenario turn {index}: expectation failed: {e}"))?;
    if let Action::Reply(reply) = &turn.action {
        let declared = declared_tools(body);
        for tool in reply.tool_uses() {
            if !declared.contains(&tool.name.as_str()) {
                return Err(format!(
                    "scenario turn {index} uses tool `{}`, which the request does not \
                     declare in `tools` (declared: [{}])",
                    tool.name,
                    declared.join(", ")
                ));
            }
        }
    }
    Ok(())
}

fn expectations(expect: &Expect, body: &Value) -> Result<(), String> {
    if !expect.contains.is_empty() {
        let mut text = String::new();
        if let Some(messages) = body.get("messages") {
            collect_strings(messages, &mut text);
        }
        for needle in &expect.contains {
            if !text.contains(needle.as_str()) {
                return Err(format!("request messages do not contain {needle:?}"));
            }
        }
    }
    if !expect.tools.is_empty() {
        let declared = declared_tools(body);
        for name in &expect.tools {
            if !declared.contains(&name.as_str()) {
                return Err(format!(
                    "request does not declare tool `{name}` (declared: [{}])",
                    declared.join(", ")
                ));
            }
        }
    }
    if !expect.system_contains.is_empty() {
        let mut text = String::new();
        if let Some(system) = body.get("system") {
            collect_strings(system, &mut text);
        }
        for needle in &expect.system_contains {
            if !text.contains(needle.as_str()) {
                return Err(format!("request system prompt does not contain {needle:?}"));
            }
        }
    }
    if !expect.tool_result_contains.is_empty() {
        let mut text = String::new();
        let last_user = body
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"));
        if let Some(Value::Array(blocks)) = last_user.and_then(|m| m.get("content")) {
            for block in blocks.iter().filter(|b| block_type(b) == "tool_result") {
                collect_strings(block, &mut text);
            }
        }
        for needle in &expect.tool_result_contains {
            if !text.contains(needle.as_str()) {
                return Err(format!(
                    "tool_result blocks of the last user message do not contain {needle:?}"
                ));
            }
        }
    }
    Ok(())
}

/// Appends every string inside `value` (not keys), one per line, so a needle
/// is matched against the text as the client sent it rather than JSON-escaped.
pub fn collect_strings(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}
