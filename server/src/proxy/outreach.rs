//! What a Messages request would have Anthropic's servers reach for past
//! the sandbox's closed network: tools they run (a search or fetch of any
//! host, code execution), MCP servers they connect to, and images or
//! documents they fetch from a URL. Read with serde visitors that keep
//! only those few fields, never the conversation itself.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

/// Tools the API defines that reach nothing outside: those the client
/// runs (the sandbox, here), and the search over the request's own tool
/// definitions. The others (web search and fetch, code execution, …)
/// Anthropic's servers run.
const TOOLS_WITHIN: &[&str] = &[
    "bash_",
    "text_editor_",
    "computer_",
    "memory_",
    "tool_search_tool_",
];

#[derive(Deserialize)]
struct Asked {
    #[serde(default)]
    tools: Vec<Tool>,
    mcp_servers: Option<IgnoredAny>,
    #[serde(default)]
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Tool {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Blocks,
}

/// A content block, and the blocks it holds (a tool result's).
#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    source: Source,
    #[serde(default)]
    content: Blocks,
}

/// A visitor's answer to a string, a number, a boolean or null: the
/// default (nothing of it is fetched).
macro_rules! nothing_from_scalars {
    ($value:ty) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<$value, E> {
            Ok(<$value>::default())
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<$value, E> {
            Ok(<$value>::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<$value, E> {
            Ok(<$value>::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<$value, E> {
            Ok(<$value>::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<$value, E> {
            Ok(<$value>::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<$value, E> {
            Ok(<$value>::default())
        }
    };
}

/// Content as blocks: a list of them, or one (a result's content given as
/// an object); none where it is a string, or anything else.
#[derive(Default)]
struct Blocks(Vec<Block>);

impl<'de> Deserialize<'de> for Blocks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = Blocks;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("content")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Blocks, A::Error> {
                let mut blocks = Vec::new();
                while let Some(block) = seq.next_element()? {
                    blocks.push(block);
                }
                Ok(Blocks(blocks))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Blocks, A::Error> {
                let block = Block::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Blocks(vec![block]))
            }
            nothing_from_scalars!(Blocks);
        }
        d.deserialize_any(List)
    }
}

/// Where a block's data comes from: its `type` (`base64`, `url`, `file`,
/// `text`, `content`, …) and the blocks a `content` source holds; none
/// where the source is a string (a search result's).
#[derive(Default)]
struct Source(Option<String>, Blocks);

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Of;
        impl<'de> Visitor<'de> for Of {
            type Value = Source;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a source")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Source, A::Error> {
                let (mut kind, mut content) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "type" if kind.is_some() => return Err(de::Error::duplicate_field("type")),
                        "type" => kind = Some(map.next_value::<String>()?),
                        "content" if content.is_some() => {
                            return Err(de::Error::duplicate_field("content"))
                        }
                        "content" => content = Some(map.next_value::<Blocks>()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Source(kind, content.unwrap_or_default()))
            }
            // A source that is not an object fetches nothing.
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Source, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Source::default())
            }
            nothing_from_scalars!(Source);
        }
        d.deserialize_any(Of)
    }
}

impl Block {
    /// The first block here or within that has the API fetch a URL.
    fn fetched(&self) -> Option<&str> {
        if self.source.0.as_deref() == Some("url") {
            return Some(self.kind.as_deref().unwrap_or("block"));
        }
        let within = self.source.1 .0.iter().chain(&self.content.0);
        within.into_iter().find_map(Block::fetched)
    }
}

/// Why a request may not pass, if it would have Anthropic's servers reach
/// past the sandbox's closed network. A body this cannot read as a request
/// is refused too: what it cannot read, it cannot vouch for (the API would
/// take the last of two `tools`, say).
pub fn reaches_out(body: &[u8]) -> Option<String> {
    let asked: Asked = match serde_json::from_slice(body) {
        Ok(asked) => asked,
        Err(e) => {
            return Some(format!(
                "The request is not a Messages request Paddock can read: {e}."
            ))
        }
    };
    let closed = "this session's sandbox has no network, and Paddock's proxy passes no request \
                  that has Anthropic's servers reach out for it";
    if asked.mcp_servers.is_some() {
        return Some(format!(
            "MCP servers the API connects to (mcp_servers): {closed}."
        ));
    }
    let tool = asked.tools.iter().find_map(|tool| {
        let kind = tool.kind.as_deref().filter(|k| *k != "custom")?;
        let within = TOOLS_WITHIN.iter().any(|prefix| kind.starts_with(prefix));
        (!within).then(|| format!("The tool {kind:?} runs on Anthropic's servers: {closed}."))
    });
    tool.or_else(|| {
        let fetched = asked
            .messages
            .iter()
            .find_map(|m| m.content.0.iter().find_map(Block::fetched))?;
        Some(format!(
            "An {fetched} from a URL, which Anthropic's servers would fetch: {closed}."
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refused(body: serde_json::Value) -> Option<String> {
        reaches_out(body.to_string().as_bytes())
    }

    fn said(content: serde_json::Value) -> serde_json::Value {
        json!({"model": "m", "messages": [{"role": "user", "content": content}]})
    }

    #[test]
    fn what_reaches_out_is_refused_wherever_it_is() {
        let url = json!({"type": "url", "url": "https://collect.example/?d=secret"});
        for body in [
            said(json!([{"type": "image", "source": url}])),
            said(json!([{"type": "text", "text": "hi"}, {"type": "document", "source": url}])),
            said(
                json!([{"type": "tool_result", "tool_use_id": "t", "content": [
                    {"type": "text", "text": "see"}, {"type": "image", "source": url}
                ]}]),
            ),
            said(
                json!([{"type": "document", "source": {"type": "content", "content": [
                    {"type": "text", "text": "a page"}, {"type": "image", "source": url}
                ]}}]),
            ),
            said(
                json!([{"type": "tool_result", "tool_use_id": "t", "content": [
                    {"type": "document", "source": {"type": "content", "content": [{"type": "image", "source": url}]}}
                ]}]),
            ),
            said(json!([{"type": "web_fetch_tool_result", "tool_use_id": "t",
                "content": {"type": "web_fetch_result", "content": {"type": "document", "source": url}}}])),
            json!({"model": "m", "messages": [], "tools": [{"type": "web_fetch_20250910", "name": "f"}]}),
            json!({"model": "m", "messages": [], "mcp_servers": []}),
        ] {
            assert!(refused(body.clone()).is_some(), "{body}");
        }
        for broken in [
            "not json",
            r#"{"tools": [], "tools": []}"#,
            r#"{"messages": [{"content": [{"source": {"type": "base64", "type": "url"}}]}]}"#,
        ] {
            assert!(reaches_out(broken.as_bytes()).is_some(), "{broken}");
        }
    }

    #[test]
    fn what_stays_within_passes() {
        let image = json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="});
        for body in [
            said(json!("just text")),
            said(json!([{"type": "image", "source": image}])),
            said(json!([{"type": "tool_result", "tool_use_id": "t", "content": "done"}])),
            said(
                json!([{"type": "search_result", "source": "https://docs.example/a", "title": "a",
                "content": [{"type": "text", "text": "x"}]}]),
            ),
            said(
                json!([{"type": "web_search_tool_result", "tool_use_id": "t",
                "content": {"type": "web_search_tool_result_error", "error_code": "unavailable"}}]),
            ),
            json!({"model": "m", "messages": [], "tools": [
                {"name": "Read", "input_schema": {"type": "object"}},
                {"type": "custom", "name": "x", "input_schema": {}},
                {"type": "bash_20250124", "name": "bash"},
                {"type": "tool_search_tool_regex_20251119", "name": "s"}
            ]}),
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "tool_use", "id": "t", "name": "Fetch", "input": {"source": {"type": "url"}}}
            ]}]}),
        ] {
            assert_eq!(refused(body.clone()), None, "{body}");
        }
    }
}
