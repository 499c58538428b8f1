//! The built-in tools the native agent loop offers the model: reading,
//! writing and editing files, listing folders, finding files and searching
//! their contents, and running commands.
//!
//! Each tool is declared once (a `Spec`): the same declaration gives the
//! JSON schema the model sees and validates the input the model sends, so the
//! two cannot drift apart. File and search tools go through the session's
//! [`Workspace`], which confines every path to it and never runs anything
//! but a search; `bash` runs in the session's sandbox.
//!
//! [`run`] never fails: an unknown tool, bad input, a missing file or a
//! command that exits non-zero is a [`ToolOutput`] with `is_error` set and a
//! message written for the model, which is how it learns to do better.
//!
//! [`Workspace`]: crate::sandbox::Workspace

mod files;
mod search;
mod shell;
mod skill;

use crate::llm::ToolDef;
use crate::sandbox::{OutputSink, Sandbox, CUT_SHORT_MARK};
use app::domain::{PermissionMode, SessionId};
use serde_json::{json, Map, Value};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a tool call needs from the session running it.
pub struct ToolContext<'a> {
    pub sandbox: &'a dyn Sandbox,
    pub session: SessionId,
    pub cancel: &'a CancellationToken,
    /// Time limit of `bash` (the model may ask for less), `glob` and `grep`.
    pub exec_timeout: Duration,
    /// Bytes of output kept for the model.
    pub output_cap: usize,
    /// The session's environment variables, for `bash`.
    pub env: &'a [(String, String)],
}

/// What a tool may do, for permission checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Edit,
    Execute,
}

/// The result of one tool call, as the model will see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOutput {
    pub content: String,
    pub is_error: bool,
    /// Some of the output was left out to respect the output cap (or the
    /// default line limit of `read_file`).
    pub truncated: bool,
}

impl ToolOutput {
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
            truncated: false,
        }
    }

    pub fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
            truncated: false,
        }
    }

    /// The output within `cap` bytes: its start and end kept, as a
    /// command's are.
    pub fn capped(self, cap: usize) -> Self {
        if self.content.len() <= cap {
            return self;
        }
        let mut kept = crate::sandbox::CappedOutput::new(cap);
        kept.push(self.content.as_bytes());
        Self {
            content: kept.finish(),
            truncated: true,
            ..self
        }
    }
}

/// A tool's name as metrics label it: its own for a tool that exists,
/// `unknown` for any other name a model made up.
pub fn metric_name(tool_name: &str) -> &'static str {
    spec(tool_name).map_or("unknown", |s| s.name)
}

/// The access a tool needs; `None` for a tool that does not exist.
pub fn access(tool_name: &str) -> Option<Access> {
    spec(tool_name).map(|s| s.access)
}

/// The tools offered to the model in `mode`: a read-only session gets only
/// the tools that read, and `skill` only a workspace that has skills.
pub fn definitions(mode: PermissionMode, has_skills: bool) -> Vec<ToolDef> {
    TOOLS
        .iter()
        .filter(|s| mode != PermissionMode::ReadOnly || s.access == Access::Read)
        .filter(|s| has_skills || s.name != "skill")
        .map(Spec::definition)
        .collect()
}

/// Runs one tool call. Never fails: every failure is an error output.
pub async fn run(
    ctx: &ToolContext<'_>,
    name: &str,
    input: &Value,
    on_output: OutputSink<'_>,
) -> ToolOutput {
    let Some(spec) = spec(name) else {
        let names: Vec<&str> = TOOLS.iter().map(|s| s.name).collect();
        return ToolOutput::error(format!(
            "Unknown tool {name:?}. The available tools are: {}.",
            names.join(", ")
        ));
    };
    let args = match spec.validate(input) {
        Ok(args) => args,
        Err(message) => return ToolOutput::error(message),
    };
    let cap = ctx.output_cap;
    let ws = ctx.sandbox.workspace(ctx.session);
    let ws = ws.as_ref();
    match name {
        "read_file" => files::read_file(ws, &args, cap).await,
        "write_file" => files::write_file(ws, &args).await,
        "edit_file" => files::edit_file(ws, &args, cap).await,
        "list_files" => files::list_files(ws, &args, cap).await,
        "glob" => search::glob(ctx, ws, &args).await,
        "grep" => search::grep(ctx, ws, &args).await,
        "bash" => shell::bash(ctx, &args, on_output).await,
        "skill" => skill::skill(ws, &args, cap).await,
        _ => ToolOutput::error(format!("Tool {name:?} is declared but not implemented.")),
    }
}

// ---------------------------------------------------------------------------
// Declarations

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    String,
    Integer,
    Boolean,
}

impl Kind {
    fn schema_name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Integer => "integer",
            Kind::Boolean => "boolean",
        }
    }
}

struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
    /// Smallest allowed value of an integer.
    minimum: Option<u64>,
    description: &'static str,
}

const fn field(name: &'static str, kind: Kind, description: &'static str) -> Field {
    Field {
        name,
        kind,
        required: true,
        minimum: None,
        description,
    }
}

const fn optional(name: &'static str, kind: Kind, description: &'static str) -> Field {
    Field {
        name,
        kind,
        required: false,
        minimum: None,
        description,
    }
}

const fn at_least(mut f: Field, minimum: u64) -> Field {
    f.minimum = Some(minimum);
    f
}

struct Spec {
    name: &'static str,
    access: Access,
    description: &'static str,
    fields: &'static [Field],
}

static TOOLS: &[Spec] = &[
    Spec {
        name: "read_file",
        access: Access::Read,
        description: "Reads a text file from the workspace. Lines are numbered like `cat -n` \
(line number, a tab, then the line). By default up to 2000 lines are returned from the start; \
for longer files pass `offset` (the 1-based line to start at) and `limit` (how many lines). \
Lines longer than 2000 characters are cut. Binary files are refused. Read a file before \
editing it, and never include the line-number prefix in edit_file's strings.",
        fields: &[
            field(
                "path",
                Kind::String,
                "The file to read, relative to /workspace, or absolute under /workspace.",
            ),
            at_least(
                optional(
                    "offset",
                    Kind::Integer,
                    "The line number to start reading at (1-based). Only needed for files too long to read at once.",
                ),
                1,
            ),
            at_least(
                optional("limit", Kind::Integer, "The number of lines to read."),
                1,
            ),
        ],
    },
    Spec {
        name: "write_file",
        access: Access::Edit,
        description: "Writes a file in the workspace, creating missing parent folders and \
replacing the file if it already exists. To change part of an existing file prefer edit_file; \
read an existing file before overwriting it.",
        fields: &[
            field(
                "path",
                Kind::String,
                "The file to write, relative to /workspace, or absolute under /workspace.",
            ),
            field("content", Kind::String, "The complete new content of the file."),
        ],
    },
    Spec {
        name: "edit_file",
        access: Access::Edit,
        description: "Replaces an exact string in a file. `old_string` must match the file's \
current text exactly, including whitespace and indentation (without read_file's line-number \
prefixes), and must occur exactly once unless `replace_all` is true: include enough \
surrounding lines to make it unique. `new_string` must differ from `old_string`. Use \
write_file to create a new file.",
        fields: &[
            field(
                "path",
                Kind::String,
                "The file to edit, relative to /workspace, or absolute under /workspace.",
            ),
            field("old_string", Kind::String, "The exact text to replace."),
            field("new_string", Kind::String, "The text to replace it with."),
            optional(
                "replace_all",
                Kind::Boolean,
                "Replace every occurrence of old_string instead of exactly one (default false).",
            ),
        ],
    },
    Spec {
        name: "list_files",
        access: Access::Read,
        description: "Lists the entries of a folder in the workspace, sorted by name: folders \
end with `/`, files show their size in bytes. Not recursive; use glob to find files by name \
anywhere below a folder.",
        fields: &[optional(
            "path",
            Kind::String,
            "The folder to list, relative to /workspace, or absolute under /workspace (default: the workspace root).",
        )],
    },
    Spec {
        name: "glob",
        access: Access::Read,
        description: "Finds files and folders by name pattern, with bash glob syntax: `*` \
matches within one path segment, `**` any number of folders, `?` one character, `[abc]` one \
of a set, `{a,b}` alternatives; e.g. `**/*.rs` or `src/**/*.{ts,tsx}`. Names starting with `.` \
match only when the pattern spells the dot (e.g. `.github/**/*.yml`). Returns paths relative \
to /workspace, sorted, folders ending with `/`, at most 1000.",
        fields: &[
            field(
                "pattern",
                Kind::String,
                "The glob pattern, relative to `path`.",
            ),
            optional(
                "path",
                Kind::String,
                "The folder to search in, relative to /workspace, or absolute under /workspace (default: the workspace root).",
            ),
        ],
    },
    Spec {
        name: "grep",
        access: Access::Read,
        description: "Searches file contents, as ripgrep does. `pattern` is a regular expression \
(Rust regex syntax, ripgrep's: escape literal special characters, e.g. `fn main\\(`). Returns \
matching lines as `path:line:text`, paths relative to /workspace, sorted by path. Hidden files, \
binary files and files ignored by .gitignore or .ignore are skipped. Prefer this to running \
grep or rg with bash.",
        fields: &[
            field(
                "pattern",
                Kind::String,
                "The regular expression to search for.",
            ),
            optional(
                "path",
                Kind::String,
                "A file or folder to search, relative to /workspace, or absolute under /workspace (default: the workspace root).",
            ),
            optional(
                "glob",
                Kind::String,
                "Only search files whose path matches this glob, e.g. `*.rs` or `**/*.{ts,tsx}`; a leading `!` excludes instead.",
            ),
            optional(
                "case_insensitive",
                Kind::Boolean,
                "Ignore case (default false).",
            ),
        ],
    },
    Spec {
        name: "bash",
        access: Access::Execute,
        description: "Runs a command with `bash -c` in the session's sandbox, in /workspace. \
Only /workspace persists between calls; each call is a fresh shell, so `cd` and variables do \
not carry over. There is no network access. stdout and stderr come back interleaved; long \
output keeps its beginning and end. The command and everything it started are killed after \
`timeout` seconds (default and maximum: the session's limit), so do not start servers or \
other long-lived processes. Prefer read_file, edit_file, write_file, glob and grep to cat, \
sed, echo >, find and grep.",
        fields: &[
            field("command", Kind::String, "The bash command to run."),
            at_least(
                optional(
                    "timeout",
                    Kind::Integer,
                    "Seconds after which the command is killed; at most the session's limit, which is also the default.",
                ),
                1,
            ),
        ],
    },
    Spec {
        name: "skill",
        access: Access::Read,
        description: "Loads a skill: instructions for a kind of task, kept in the workspace's \
.claude/skills/<name>/ folder. Call it with a skill's name (from the list in the system prompt) \
before doing a task that matches its description, and follow what it says. Pass `file` to read \
one of the skill's other files (a script, a template, a reference) that its instructions name.",
        fields: &[
            field("name", Kind::String, "The skill's name, as listed."),
            optional(
                "file",
                Kind::String,
                "A file of the skill to read instead of its instructions, relative to its folder (e.g. `reference.md`).",
            ),
        ],
    },
];

fn spec(name: &str) -> Option<&'static Spec> {
    TOOLS.iter().find(|s| s.name == name)
}

impl Spec {
    fn definition(&self) -> ToolDef {
        let mut properties = Map::new();
        for f in self.fields {
            let mut p = json!({ "type": f.kind.schema_name(), "description": f.description });
            if let (Some(min), Some(obj)) = (f.minimum, p.as_object_mut()) {
                obj.insert("minimum".into(), min.into());
            }
            properties.insert(f.name.into(), p);
        }
        let required: Vec<&str> = self
            .fields
            .iter()
            .filter(|f| f.required)
            .map(|f| f.name)
            .collect();
        ToolDef {
            name: self.name.into(),
            description: self.description.into(),
            input_schema: json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            }),
        }
    }

    /// Checks `input` against the schema, naming every problem like a
    /// JSON-schema validator would.
    fn validate(&self, input: &Value) -> Result<Args, String> {
        let Some(obj) = input.as_object() else {
            return Err(format!(
                "Invalid input for {}: the input must be a JSON object, not {}.",
                self.name,
                type_name(input)
            ));
        };
        let mut problems = Vec::new();
        for f in self.fields {
            match obj.get(f.name) {
                None if f.required => problems.push(format!("{:?} is a required property", f.name)),
                None => {}
                Some(v) => {
                    if let Err(p) = check(f, v) {
                        problems.push(p);
                    }
                }
            }
        }
        for key in obj.keys() {
            if !self.fields.iter().any(|f| f.name == key) {
                let known: Vec<&str> = self.fields.iter().map(|f| f.name).collect();
                problems.push(format!(
                    "{key:?} is not a property of {} (it takes: {})",
                    self.name,
                    known.join(", ")
                ));
            }
        }
        if problems.is_empty() {
            Ok(Args(obj.clone()))
        } else {
            Err(format!(
                "Invalid input for {}: {}.",
                self.name,
                problems.join("; ")
            ))
        }
    }
}

fn check(f: &Field, v: &Value) -> Result<(), String> {
    let wrong = || {
        format!(
            "{:?} must be {} {}, not {}",
            f.name,
            if f.kind == Kind::Integer { "an" } else { "a" },
            f.kind.schema_name(),
            type_name(v)
        )
    };
    match f.kind {
        Kind::String => v.as_str().map(|_| ()).ok_or_else(wrong),
        Kind::Boolean => v.as_bool().map(|_| ()).ok_or_else(wrong),
        Kind::Integer => {
            let n = integer(v).ok_or_else(wrong)?;
            match f.minimum {
                Some(min) if n < min as f64 => {
                    Err(format!("{:?} must be at least {min}, not {n}", f.name))
                }
                _ => Ok(()),
            }
        }
    }
}

/// A JSON integer (JSON schema counts `3.0` as one).
fn integer(v: &Value) -> Option<f64> {
    let n = v.as_f64()?;
    (v.is_i64() || v.is_u64() || n.fract() == 0.0).then_some(n)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Input that passed validation: the getters cannot meet a wrong type.
#[derive(Clone, Debug)]
struct Args(Map<String, Value>);

impl Args {
    fn str(&self, name: &str) -> &str {
        self.opt_str(name).unwrap_or_default()
    }

    fn opt_str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    fn opt_u64(&self, name: &str) -> Option<u64> {
        let n = self.0.get(name).and_then(integer)?;
        // Saturating: a huge limit means "all of it".
        Some(if n >= u64::MAX as f64 {
            u64::MAX
        } else {
            n as u64
        })
    }

    fn flag(&self, name: &str) -> bool {
        self.0
            .get(name)
            .and_then(Value::as_bool)
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// Shared helpers

/// Cuts `text` to at most `cap` bytes, at a line end when there is one, and
/// says so with `hint` (how to get the rest).
fn cap_text(mut text: String, cap: usize, hint: &str) -> (String, bool) {
    if text.len() <= cap {
        return (text, false);
    }
    let total = text.len();
    let mut cut = cap;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    if let Some(nl) = text[..cut].rfind('\n') {
        cut = nl + 1;
    }
    text.truncate(cut);
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "{CUT_SHORT_MARK}{} of {total} bytes omitted; {hint}]",
        total - cut
    ));
    (text, true)
}

/// Seconds for messages: `30`, or `2.5` when not whole.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}", d.as_secs())
    } else {
        format!("{s:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_text_at_a_line_end() {
        let (t, cut) = cap_text("aaa\nbbb\nccc\n".into(), 9, "read less");
        assert!(cut);
        assert!(t.starts_with("aaa\nbbb\n["), "{t}");
        assert!(t.contains("4 of 12 bytes omitted; read less"), "{t}");
        assert_eq!(cap_text("short".into(), 9, "x"), ("short".into(), false));
        // Never splits a character.
        let (t, _) = cap_text("ééééé".into(), 3, "x");
        assert!(t.starts_with("é\n"), "{t}");
    }

    #[test]
    fn validation_names_every_problem() {
        let read = spec("read_file").unwrap();
        let err = read
            .validate(&json!({"offset": "5", "limit": 0, "extra": 1}))
            .unwrap_err();
        assert!(err.contains("\"path\" is a required property"), "{err}");
        assert!(
            err.contains("\"offset\" must be an integer, not a string"),
            "{err}"
        );
        assert!(err.contains("\"limit\" must be at least 1, not 0"), "{err}");
        assert!(
            err.contains("\"extra\" is not a property of read_file"),
            "{err}"
        );
        assert!(read.validate(&json!([1])).unwrap_err().contains("an array"));
        let ok = read.validate(&json!({"path": "a", "offset": 3.0})).unwrap();
        assert_eq!(ok.opt_u64("offset"), Some(3));
        assert!(read.validate(&json!({"path": "a", "offset": 2.5})).is_err());
    }

    #[test]
    fn seconds_read_naturally() {
        assert_eq!(seconds(Duration::from_secs(30)), "30");
        assert_eq!(seconds(Duration::from_millis(2500)), "2.5");
    }
}
