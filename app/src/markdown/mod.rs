//! Markdown for the model's text, rendered to HTML that is safe to insert.
//!
//! Model output is untrusted: it can contain whatever a prompt, a file or a
//! web page put into the model. Rather than render everything and then
//! sanitise the HTML (an HTML sanitiser is large in WebAssembly), the
//! Markdown events are filtered on the way in: raw HTML is shown as text,
//! link targets other than http(s), mailto and relative ones are dropped,
//! images become links (nothing loads by itself), and code blocks are
//! highlighted here from escaped text. pulldown-cmark escapes all other text.

mod highlight;

use crate::domain::{self, EventHtml, EventKind};
use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};

/// The rendered Markdown of an event that has some: the model's text.
pub fn event_html(event: &domain::Event) -> Option<EventHtml> {
    match &event.kind {
        EventKind::AssistantText { text } => Some(EventHtml {
            seq: event.seq,
            html: render(text),
        }),
        _ => None,
    }
}

/// Escapes text for an HTML text node or a quoted attribute.
pub fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Whether a link target is harmless: http(s), mailto, or relative.
fn safe_url(url: &str) -> bool {
    let end = url.find(['/', '?', '#']).unwrap_or(url.len());
    match url[..end].find(':') {
        None => true,
        Some(i) => matches!(
            url[..i].to_ascii_lowercase().as_str(),
            "http" | "https" | "mailto"
        ),
    }
}

fn link_target(url: CowStr<'_>) -> CowStr<'_> {
    if safe_url(&url) {
        url
    } else {
        CowStr::Borrowed("")
    }
}

/// Renders Markdown to HTML safe to insert into the page.
pub fn render(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_GFM;
    let mut code: Option<(String, String)> = None; // (language, text)
    let events = Parser::new_ext(markdown, options).filter_map(|event| {
        if let Some((_, text)) = &mut code {
            return match event {
                Event::Text(t) | Event::Html(t) => {
                    text.push_str(&t);
                    None
                }
                Event::End(TagEnd::CodeBlock | TagEnd::HtmlBlock) => {
                    let (lang, text) = code.take().unwrap_or_default();
                    Some(Event::Html(code_block(&lang, &text).into()))
                }
                _ => None,
            };
        }
        Some(match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(info) => {
                        info.split_whitespace().next().unwrap_or("").to_owned()
                    }
                    CodeBlockKind::Indented => String::new(),
                };
                code = Some((lang, String::new()));
                return None;
            }
            // Raw HTML is shown, not interpreted.
            Event::Start(Tag::HtmlBlock) => {
                code = Some(("html".into(), String::new()));
                return None;
            }
            Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            })
            | Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => Event::Start(Tag::Link {
                link_type,
                dest_url: link_target(dest_url),
                title,
                id,
            }),
            Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
            other => other,
        })
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// A highlighted `<pre><code>` block with a copy button (see
/// [`crate::copy`]); every piece of the text is escaped.
pub fn code_block(lang: &str, text: &str) -> String {
    let mut html = String::from(
        "<figure class=\"code-block\" data-copy-scope><button type=\"button\" data-copy>Copy</button><pre class=\"code\"><code",
    );
    if !lang.is_empty() {
        html.push_str(" data-lang=\"");
        escape(lang, &mut html);
        html.push('"');
    }
    html.push('>');
    highlight::highlight(lang, text, &mut html);
    html.push_str("</code></pre></figure>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_markdown() {
        let html = render("# Title\n\nSome **bold** and `code`.\n\n- a\n- b\n");
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<strong>bold</strong>"));
        assert!(html.contains("<code>code</code>"));
        assert!(html.contains("<li>a</li>"));
        let html = render("| a | b |\n|---|---|\n| 1 | 2 |\n");
        assert!(html.contains("<table>"), "{html}");
    }

    #[test]
    fn hostile_html_is_text() {
        for hostile in [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "hi <b onmouseover=alert(1)>there</b>",
            "<div>\n<script>alert(1)</script>\n</div>",
            "```\n</code></pre><script>alert(1)</script>\n```",
            "<iframe src=javascript:alert(1)>",
        ] {
            let html = render(hostile);
            assert!(!html.contains("<script"), "{hostile} → {html}");
            assert!(!html.contains("<img"), "{hostile} → {html}");
            assert!(!html.contains("<b "), "{hostile} → {html}");
            assert!(!html.contains("<iframe"), "{hostile} → {html}");
            assert!(!html.contains("<div"), "{hostile} → {html}");
        }
    }

    #[test]
    fn unsafe_links_lose_their_target() {
        for hostile in [
            "[x](javascript:alert(1))",
            "[x](JavaScript:alert(1))",
            "[x](java\tscript:alert(1))",
            "[x](data:text/html,<script>alert(1)</script>)",
            "[x](vbscript:msgbox)",
            "![x](javascript:alert(1))",
            "<javascript:alert(1)>",
        ] {
            let html = render(hostile);
            for href in html.split("href=\"").skip(1) {
                let target = href.split('"').next().unwrap();
                assert_eq!(target, "", "{hostile} → {html}");
            }
        }
        let html = render("[docs](https://example.org/a?b#c) [rel](src/main.rs) [m](mailto:a@b.c)");
        assert!(
            html.contains("href=\"https://example.org/a?b#c\""),
            "{html}"
        );
        assert!(html.contains("href=\"src/main.rs\""));
        assert!(html.contains("href=\"mailto:a@b.c\""));
        let html = render("![diagram](https://example.org/x.png)");
        assert!(!html.contains("<img"), "images do not load: {html}");
        assert!(html.contains(">diagram</a>"));
    }

    #[test]
    fn code_blocks_are_highlighted_and_escaped() {
        let html = render("```rust\nfn main() { let s = \"<b>\"; } // done\n```\n");
        assert!(html.contains("data-lang=\"rust\""), "{html}");
        assert!(html.contains("<span class=\"tok-kw\">fn</span>"), "{html}");
        assert!(html.contains("&lt;b&gt;"), "{html}");
        assert!(html.contains("tok-comment"), "{html}");
    }
}
