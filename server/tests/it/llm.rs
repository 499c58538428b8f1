//! The Messages API client against the project's scripted model server
//! (the real API is unreachable here), over real HTTP and SSE.

use crate::common;
use paddock_model::ScriptedModel;
use serde_json::json;
use server::llm::{
    Anthropic, AnthropicConfig, ContentBlock, LlmCredential, LlmError, Message, Provider, Request,
    Role, StreamDelta, ToolDef,
};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

async fn model(scenario: serde_json::Value) -> (ScriptedModel, Anthropic) {
    let (model, url) = common::scripted(&scenario, Some("sk-test")).await;
    let client = Anthropic::new(AnthropicConfig {
        base_url: url,
        backoff: Duration::from_millis(10),
        ..AnthropicConfig::default()
    })
    .unwrap();
    (model, client)
}

fn request(text: &str) -> Request {
    Request {
        model: "claude-sonnet-4-5".into(),
        max_tokens: 1024,
        system: Some("You are testing.".into()),
        messages: vec![Message {
            role: Role::User,
            content: vec![ContentBlock::Text { text: text.into() }],
        }],
        tools: vec![ToolDef {
            name: "write_file".into(),
            description: "Write a file".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}),
        }],
    }
}

async fn call(
    client: &Anthropic,
    req: &Request,
) -> (Result<server::llm::Response, LlmError>, Vec<StreamDelta>) {
    call_with(client, "sk-test", req).await
}

async fn call_with(
    client: &Anthropic,
    key: &str,
    req: &Request,
) -> (Result<server::llm::Response, LlmError>, Vec<StreamDelta>) {
    let mut deltas = Vec::new();
    let credential = LlmCredential::ApiKey(key.into());
    let result = client
        .stream(
            Some(&credential),
            req,
            &CancellationToken::new(),
            &mut |d| deltas.push(d),
            &mut server::llm::Usage::default(),
        )
        .await;
    (result, deltas)
}

#[tokio::test]
async fn streams_text_thinking_and_tool_use() {
    let scenario = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../paddock-model/scenarios/write-file.json"
    ))
    .unwrap();
    let (model, client) = model(serde_json::from_str(&scenario).unwrap()).await;
    let (result, deltas) = call(&client, &request("write hello.txt")).await;
    let response = result.unwrap();
    assert_eq!(response.stop_reason.as_deref(), Some("tool_use"));
    assert!(
        matches!(&response.content[0], ContentBlock::Thinking { thinking, signature } if thinking.contains("hello.txt") && !signature.is_empty())
    );
    assert_eq!(
        response.content[1],
        ContentBlock::Text {
            text: "I'll create the file now.".into()
        }
    );
    assert_eq!(
        response.content[2],
        ContentBlock::ToolUse {
            id: "toolu_01WriteHello".into(),
            name: "write_file".into(),
            input: json!({"path": "hello.txt", "content": "Hello from Paddock!\n"}),
        }
    );
    assert!(response.usage.input_tokens > 0 && response.usage.output_tokens > 0);
    // Deltas came piece by piece, and add up to the blocks.
    let text: String = deltas
        .iter()
        .filter_map(|d| match d {
            StreamDelta::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "I'll create the file now.");
    assert!(
        deltas
            .iter()
            .filter(|d| matches!(d, StreamDelta::ToolInput { .. }))
            .count()
            > 1
    );

    // The follow-up carries the tool result; the server checks the protocol.
    let mut next = request("write hello.txt");
    next.messages.push(Message {
        role: Role::Assistant,
        content: response.content,
    });
    next.messages.push(Message {
        role: Role::User,
        content: vec![ContentBlock::ToolResult {
            tool_use_id: "toolu_01WriteHello".into(),
            content: "ok".into(),
            is_error: false,
        }],
    });
    let (result, _) = call(&client, &next).await;
    assert_eq!(result.unwrap().stop_reason.as_deref(), Some("end_turn"));
    let sent = model.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["stream"], true);
    assert_eq!(sent[0]["system"], "You are testing.");
}

#[tokio::test]
async fn retries_overloaded_and_rate_limited_then_succeeds() {
    let (model, client) = model(json!([
        {"error": {"status": 529}},
        {"error": {"status": 429, "retry_after": 0}},
        {"reply": [{"text": "partial then"}], "stream_error": {"after": 4}},
        {"reply": "finally"}
    ]))
    .await;
    let (result, deltas) = call(&client, &request("hi")).await;
    assert_eq!(
        result.unwrap().content,
        vec![ContentBlock::Text {
            text: "finally".into()
        }]
    );
    let restarts = deltas
        .iter()
        .filter(|d| matches!(d, StreamDelta::Restart { .. }))
        .count();
    assert_eq!(restarts, 3, "{deltas:?}");
    assert_eq!(model.turns_used(), 4);
}

#[tokio::test]
async fn retries_are_bounded() {
    let (model, client) = model(json!([
        {"error": {"status": 529}}, {"error": {"status": 529}}, {"error": {"status": 529}},
        {"error": {"status": 529}}, {"error": {"status": 529}}, {"reply": "too late"}
    ]))
    .await;
    let (result, _) = call(&client, &request("hi")).await;
    assert!(matches!(result, Err(LlmError::Overloaded(_))), "{result:?}");
    assert_eq!(model.turns_used(), 5, "one try and four retries");
}

#[tokio::test]
async fn a_refused_key_is_a_clear_error_and_not_retried() {
    let (model, _) = model(json!([{"reply": "never"}])).await;
    let addr = model.spawn().await.unwrap();
    let client = Anthropic::new(AnthropicConfig {
        base_url: format!("http://{addr}"),
        ..AnthropicConfig::default()
    })
    .unwrap();
    let (result, _) = call_with(&client, "sk-wrong", &request("hi")).await;
    let err = result.unwrap_err();
    assert!(matches!(err, LlmError::Auth(_)), "{err:?}");
    assert!(err.to_string().contains("API key"));
    assert_eq!(model.turns_used(), 0);
}

#[tokio::test]
async fn protocol_mistakes_come_back_as_invalid_request() {
    let (_model, client) = model(json!([{"reply": "x"}])).await;
    let mut bad = request("hi");
    bad.messages.push(Message {
        role: Role::User,
        content: vec![ContentBlock::Text {
            text: "twice".into(),
        }],
    });
    let (result, _) = call(&client, &bad).await;
    assert!(
        matches!(result, Err(LlmError::InvalidRequest(m)) if m.contains("alternate")),
        "roles must alternate"
    );
}

/// A gateway's keep-alive that is not JSON, in an event Paddock reads
/// nothing of, is passed over; the answer around it is whole.
#[tokio::test]
async fn an_event_read_for_nothing_need_not_be_json() {
    const STREAM: &str = "event: message_start\n\
        data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n\
        event: keepalive\ndata: ok\n\n\
        event: content_block_start\n\
        data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
        event: content_block_delta\n\
        data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi.\"}}\n\n\
        event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
        event: message_delta\n\
        data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n\
        event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let app = axum::Router::new()
        .fallback(|| async { ([("content-type", "text/event-stream")], STREAM) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Anthropic::new(AnthropicConfig {
        base_url: url,
        ..AnthropicConfig::default()
    })
    .unwrap();
    let (result, _) = call(&client, &request("hi")).await;
    let answer = result.unwrap();
    assert_eq!(
        answer.content,
        vec![ContentBlock::Text { text: "Hi.".into() }]
    );
}

/// A client of the scripted model playing `scenario`, with a timeout of
/// 300 ms and no retries.
async fn slow(scenario: serde_json::Value) -> Anthropic {
    let (slow_model, _) = model(scenario).await;
    let addr = slow_model.spawn().await.unwrap();
    Anthropic::new(AnthropicConfig {
        base_url: format!("http://{addr}"),
        timeout: Duration::from_millis(300),
        max_retries: 0,
        ..AnthropicConfig::default()
    })
    .unwrap()
}

/// The timeout is of silence: an answer that streams for longer than it,
/// each piece soon after the last, comes whole.
#[tokio::test]
async fn a_long_answer_streams_past_the_timeout() {
    let reply = "An answer that streams in many small pieces, longer in all than the timeout.";
    let client = slow(json!([{"reply": reply, "chunk": 4, "delay_ms": 60}])).await;
    let started = std::time::Instant::now();
    let (result, _) = call(&client, &request("hi")).await;
    let answer = result.unwrap();
    assert!(
        started.elapsed() > Duration::from_millis(300),
        "the answer took less than the timeout, so it shows nothing"
    );
    assert!(matches!(&answer.content[0], ContentBlock::Text { text } if text == reply));
}

#[tokio::test]
async fn times_out_and_cancels() {
    let client = slow(json!([{"reply": "slow answer", "delay_ms": 400}, {"reply": "slow again", "delay_ms": 400}])).await;
    let (result, _) = call(&client, &request("hi")).await;
    assert!(matches!(result, Err(LlmError::Timeout(_))), "{result:?}");

    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    let credential = LlmCredential::ApiKey("sk-test".into());
    let mut spent = server::llm::Usage::default();
    let result = client
        .stream(
            Some(&credential),
            &request("hi"),
            &cancel,
            &mut |_| {},
            &mut spent,
        )
        .await;
    assert_eq!(result, Err(LlmError::Cancelled));
}

/// An answer stopped halfway is billed for what came of it: the prompt,
/// and the output streamed so far.
#[tokio::test]
async fn a_call_stopped_halfway_counts_what_it_used() {
    let client = slow(json!([{"reply": "a long answer that streams in small pieces, slowly", "chunk": 4, "delay_ms": 100}])).await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        trigger.cancel();
    });
    let credential = LlmCredential::ApiKey("sk-test".into());
    let mut spent = server::llm::Usage::default();
    let mut pieces = 0;
    let result = client
        .stream(
            Some(&credential),
            &request("hi"),
            &cancel,
            &mut |_| pieces += 1,
            &mut spent,
        )
        .await;
    assert_eq!(result, Err(LlmError::Cancelled));
    assert!(pieces > 0, "some of it streamed");
    assert!(
        spent.input_tokens > 0 && spent.output_tokens > 0,
        "{spent:?}"
    );
}
