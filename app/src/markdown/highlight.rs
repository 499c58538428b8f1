//! A small syntax highlighter for code blocks in the transcript.
//!
//! Full grammars (syntect, tree-sitter) would multiply the size of the
//! browser bundle. Agents mostly show shell, Rust, Python, JavaScript/
//! TypeScript, Go, JSON, TOML and YAML, and what helps reading those is the
//! same everywhere: comments, strings, numbers and keywords stand out. So one
//! tokenizer handles them all, with each language's comment syntax and
//! keywords. Everything it emits is escaped.

use super::escape;

/// Comment markers and keywords of a language family.
struct Lang {
    /// `'` starts a char literal only (`'x'`, `'\n'`), not a string: Rust,
    /// where `'a` is a lifetime.
    char_literals: bool,
    line_comments: &'static [&'static str],
    block_comments: bool,
    keywords: &'static [&'static str],
}

const C_LIKE: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "crate",
    "default",
    "defer",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "fn",
    "for",
    "from",
    "func",
    "function",
    "go",
    "if",
    "impl",
    "import",
    "in",
    "interface",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "new",
    "nil",
    "null",
    "package",
    "pub",
    "return",
    "self",
    "Self",
    "static",
    "struct",
    "super",
    "switch",
    "this",
    "throw",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "undefined",
    "use",
    "var",
    "where",
    "while",
    "yield",
];
const SHELL: &[&str] = &[
    "case", "do", "done", "elif", "else", "esac", "exit", "export", "fi", "for", "function", "if",
    "in", "local", "return", "set", "then", "until", "while",
];
const PYTHON: &[&str] = &[
    "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del", "elif",
    "else", "except", "False", "finally", "for", "from", "if", "import", "in", "is", "lambda",
    "None", "not", "or", "pass", "raise", "return", "self", "True", "try", "while", "with",
    "yield",
];
const DATA: &[&str] = &["true", "false", "null"];

fn lang(name: &str) -> Lang {
    match name.to_ascii_lowercase().as_str() {
        "sh" | "bash" | "shell" | "zsh" | "console" | "dockerfile" => Lang {
            char_literals: false,
            line_comments: &["#"],
            block_comments: false,
            keywords: SHELL,
        },
        "py" | "python" => Lang {
            char_literals: false,
            line_comments: &["#"],
            block_comments: false,
            keywords: PYTHON,
        },
        "toml" | "yaml" | "yml" | "ini" => Lang {
            char_literals: false,
            line_comments: &["#"],
            block_comments: false,
            keywords: DATA,
        },
        "json" => Lang {
            char_literals: false,
            line_comments: &[],
            block_comments: false,
            keywords: DATA,
        },
        "sql" | "lua" => Lang {
            char_literals: false,
            line_comments: &["--"],
            block_comments: true,
            keywords: C_LIKE,
        },
        "" | "text" | "txt" | "plain" | "diff" | "html" | "xml" | "markdown" | "md" => Lang {
            char_literals: false,
            line_comments: &[],
            block_comments: false,
            keywords: &[],
        },
        other => Lang {
            char_literals: matches!(other, "rs" | "rust"),
            line_comments: &["//"],
            block_comments: true,
            keywords: C_LIKE,
        },
    }
}

fn span(class: &str, text: &str, out: &mut String) {
    out.push_str("<span class=\"");
    out.push_str(class);
    out.push_str("\">");
    escape(text, out);
    out.push_str("</span>");
}

/// Appends `code`, highlighted as `language`, to `out`.
pub fn highlight(language: &str, code: &str, out: &mut String) {
    let lang = lang(language);
    let mut rest = code;
    while let Some(c) = rest.chars().next() {
        let token_len = if let Some(len) = comment_len(&lang, rest) {
            span("tok-comment", &rest[..len], out);
            len
        } else if matches!(c, '"' | '\'' | '`') && (c != '\'' || quote_closes(&lang, rest)) {
            let len = string_len(rest, c);
            span("tok-str", &rest[..len], out);
            len
        } else if c.is_ascii_digit() {
            let len = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '.' || ch == '_'))
                .unwrap_or(rest.len());
            span("tok-num", &rest[..len], out);
            len
        } else if c.is_alphabetic() || c == '_' {
            let len = rest
                .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len());
            let word = &rest[..len];
            if lang.keywords.contains(&word) {
                span("tok-kw", word, out);
            } else {
                escape(word, out);
            }
            len
        } else {
            escape(&rest[..c.len_utf8()], out);
            c.len_utf8()
        };
        rest = &rest[token_len..];
    }
}

fn comment_len(lang: &Lang, rest: &str) -> Option<usize> {
    if lang.block_comments && rest.starts_with("/*") {
        return Some(rest[2..].find("*/").map_or(rest.len(), |i| i + 4));
    }
    lang.line_comments
        .iter()
        .any(|m| rest.starts_with(m))
        .then(|| rest.find('\n').unwrap_or(rest.len()))
}

/// A single quote starts a string only when it closes on the same line (so
/// apostrophes in comments-less text stay plain), and in Rust only as a char
/// literal (so lifetimes stay plain).
/// Reads up to the next quote or the line's end only, so a line of many
/// quotes is read once, not once for each.
fn quote_closes(lang: &Lang, rest: &str) -> bool {
    let after = &rest[1..];
    let inside = match after.find(['\'', '\n']) {
        Some(at) if after[at..].starts_with('\'') => &after[..at],
        _ => return false,
    };
    if lang.char_literals {
        let mut chars = inside.chars();
        return match chars.next() {
            Some('\\') => true,
            Some(_) => chars.next().is_none(),
            None => false,
        };
    }
    true
}

/// Length of the string literal at the start of `rest`, quotes included;
/// backslash escapes are skipped. Unclosed strings end at the line's end
/// (or, for backticks, at the end of the text).
fn string_len(rest: &str, quote: char) -> usize {
    let mut chars = rest.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '\n' if quote != '`' => return i,
            c if c == quote => return i + c.len_utf8(),
            _ => {}
        }
    }
    rest.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hl(lang: &str, code: &str) -> String {
        let mut out = String::new();
        highlight(lang, code, &mut out);
        out
    }

    #[test]
    fn marks_tokens() {
        assert_eq!(
            hl("rust", "let x = 42; // answer"),
            "<span class=\"tok-kw\">let</span> x = <span class=\"tok-num\">42</span>; \
             <span class=\"tok-comment\">// answer</span>"
        );
        assert_eq!(
            hl("sh", "echo \"a\\\"b\" # c"),
            "echo <span class=\"tok-str\">&quot;a\\&quot;b&quot;</span> <span class=\"tok-comment\"># c</span>"
        );
        assert_eq!(
            hl("rust", "fn f<'a>(x: &'a str)"),
            "<span class=\"tok-kw\">fn</span> f&lt;&#39;a&gt;(x: &amp;&#39;a str)"
        );
    }

    #[test]
    fn a_single_quote_is_a_string_only_where_it_closes_on_its_line() {
        assert_eq!(
            hl("py", "it's\n'ok'"),
            "it&#39;s\n<span class=\"tok-str\">&#39;ok&#39;</span>"
        );
        assert_eq!(
            hl("rust", "'\\n' 'ab'"),
            "<span class=\"tok-str\">&#39;\\n&#39;</span> &#39;ab&#39;"
        );
        assert_eq!(
            hl("js", "'''"),
            "<span class=\"tok-str\">&#39;&#39;</span>&#39;"
        );
    }

    #[test]
    fn text_is_always_escaped_and_nothing_is_lost() {
        for (lang, code) in [
            ("js", "</span><script>alert('x')</script>"),
            ("py", "'''unclosed"),
            ("", "<img src=x onerror=alert(1)>"),
            ("c", "/* unclosed <b>"),
            ("rust", "é — 日本 \"ünï\""),
        ] {
            let html = hl(lang, code);
            assert!(
                !html.contains("<script") && !html.contains("<img") && !html.contains("<b>"),
                "{html}"
            );
            let mut text = html.clone();
            while let Some(start) = text.find("<span") {
                let end = start + text[start..].find('>').unwrap() + 1;
                text.replace_range(start..end, "");
            }
            let text = text
                .replace("</span>", "")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&");
            assert_eq!(text, code);
        }
    }
}
