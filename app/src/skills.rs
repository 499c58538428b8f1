//! Skills: folders of instructions (and the files they use) that an agent
//! loads when a task calls for them, as Claude Code does. A skill is a
//! `SKILL.md` whose YAML front matter names it and says when to use it,
//! followed by the instructions, plus optional files beside it (scripts,
//! templates, references).
//!
//! A session's skills are written into its workspace at
//! `.claude/skills/<name>/`, where the Claude Code CLI finds project
//! skills; Paddock's own loop reads the same folders, lists each skill's
//! name and description to the model, and gives it a tool to read one, so a
//! skill works the same in either engine.

use serde::{Deserialize, Serialize};

/// Why a skill cannot be used (the caller gets the error of its kind).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SkillError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
}

/// Where a workspace's skills live, one folder each.
pub const SKILLS_DIR: &str = ".claude/skills";
/// The file that makes a folder a skill.
pub const SKILL_FILE: &str = "SKILL.md";
/// Skills a session may have.
pub const SKILLS_MAX: usize = 32;
/// Files a skill may hold besides its `SKILL.md`.
pub const SKILL_FILES_MAX: usize = 64;
/// Bytes of all of a session's skills together (their files decoded).
pub const SKILLS_MAX_BYTES: usize = 1024 * 1024;
const NAME_MAX_CHARS: usize = 64;
const DESCRIPTION_MAX_CHARS: usize = 1024;
const PATH_MAX_BYTES: usize = 512;
/// The longest name of one folder or file of a path (the filesystem's).
const PART_MAX_BYTES: usize = 255;

/// One skill: its `SKILL.md` as written, and its other files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skill {
    /// The whole `SKILL.md`: front matter (`name`, `description`, and any
    /// other keys Claude Code knows) and the instructions.
    pub markdown: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<SkillFile>,
}

/// A file of a skill, at a path inside its folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillFile {
    /// Relative to the skill's folder: `scripts/check.sh`.
    pub path: String,
    /// The content: text, or base64 when `base64` is set (a binary file).
    pub content: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub base64: bool,
    /// Whether it may be run (`chmod +x`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub executable: bool,
}

/// A `SKILL.md`'s front matter, as far as Paddock reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkillHeader {
    pub name: String,
    pub description: String,
}

fn invalid(message: impl Into<String>) -> SkillError {
    SkillError::Invalid(message.into())
}

/// Reads the `name` and `description` of a `SKILL.md`'s front matter (the
/// YAML between the first two `---` lines; plain or quoted scalars) and
/// returns them with the body after it.
pub fn front_matter(markdown: &str) -> Result<(SkillHeader, &str), SkillError> {
    let text = markdown.strip_prefix('\u{feff}').unwrap_or(markdown);
    let missing = || {
        invalid(
            "A SKILL.md starts with front matter: a line ---, then name: and description:, \
             then a line ---.",
        )
    };
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
        .ok_or_else(missing)?;
    let mut header_len = None;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            header_len = Some((offset, offset + line.len()));
            break;
        }
        offset += line.len();
    }
    let (end, body_start) = header_len.ok_or_else(missing)?;
    let (mut name, mut description) = (None, None);
    let mut lines = rest[..end].lines().peekable();
    while let Some(line) = lines.next() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.starts_with([' ', '\t']) {
            continue;
        }
        let mut value = value.trim().to_owned();
        // A folded or literal block: the indented lines that follow.
        if matches!(value.as_str(), ">" | "|" | ">-" | "|-") {
            let folded = value.starts_with('>');
            let mut parts = Vec::new();
            while let Some(next) = lines.peek() {
                if !next.starts_with([' ', '\t']) && !next.trim().is_empty() {
                    break;
                }
                parts.push(next.trim().to_owned());
                lines.next();
            }
            value = parts
                .join(if folded { " " } else { "\n" })
                .trim()
                .to_owned();
        } else {
            value = unquote(&value);
        }
        match key.trim() {
            "name" => name = Some(value),
            "description" => description = Some(value),
            _ => {}
        }
    }
    let header = SkillHeader {
        name: name.ok_or_else(|| invalid("The SKILL.md's front matter has no name."))?,
        description: description
            .ok_or_else(|| invalid("The SKILL.md's front matter has no description."))?,
    };
    Ok((header, &rest[body_start..]))
}

fn unquote(value: &str) -> String {
    let quoted = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
    if quoted('"') {
        serde_json::from_str(value).unwrap_or_else(|_| value[1..value.len() - 1].to_owned())
    } else if quoted('\'') {
        value[1..value.len() - 1].replace("''", "'")
    } else {
        value.to_owned()
    }
}

/// Checks a file's path inside its skill: relative, plain segments, no
/// `..`, and not the `SKILL.md` itself.
fn check_path(path: &str) -> Result<(), SkillError> {
    let bad = |why: &str| invalid(format!("The skill file {path:?} {why}."));
    if path.is_empty() || path.len() > PATH_MAX_BYTES {
        return Err(bad(&format!("needs a path of 1 to {PATH_MAX_BYTES} bytes")));
    }
    if path.starts_with('/') || path.contains('\\') || path.chars().any(char::is_control) {
        return Err(bad("must be a relative path with / between folders"));
    }
    if path
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad(
            "must not climb out of its folder (no empty, . or .. parts)",
        ));
    }
    if path.split('/').any(|seg| seg.len() > PART_MAX_BYTES) {
        return Err(bad(&format!(
            "has a folder or file name over {PART_MAX_BYTES} bytes"
        )));
    }
    // Claude Code reads a `.claude` folder below the one it works in as
    // that folder's own settings and skills: a skill's files hold none.
    if path.split('/').any(|seg| seg == ".claude") {
        return Err(bad("must not be in a .claude folder of its own"));
    }
    if path == SKILL_FILE {
        return Err(bad("is the skill's own SKILL.md: give it as the markdown"));
    }
    Ok(())
}

impl SkillFile {
    /// The file's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, SkillError> {
        if self.base64 {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(self.content.trim())
                .map_err(|_| {
                    invalid(format!(
                        "The skill file {:?} is not valid base64.",
                        self.path
                    ))
                })
        } else {
            Ok(self.content.clone().into_bytes())
        }
    }
}

/// Front matter keys a skill keeps in a delivery's session (see
/// [`Skill::markdown_without_grants`]): none of them grants anything.
const KEPT_FOR_DELIVERIES: [&str; 6] = [
    "disable-model-invocation",
    "user-invocable",
    "model",
    "argument-hint",
    "license",
    "version",
];

impl Skill {
    /// The `SKILL.md` with nothing in its front matter with which it could
    /// grant itself what its session's permission mode would ask for
    /// (`allowed-tools`, tools the Claude Code CLI runs without asking
    /// while the skill is active; `hooks`, commands it runs on its
    /// events), however the YAML spells it: the front matter is written
    /// afresh, with the name and description Paddock read and the keys of
    /// [`KEPT_FOR_DELIVERIES`] whose value is one plain word or phrase as
    /// its author wrote it. The rest of the file is kept as written.
    pub fn markdown_without_grants(&self) -> String {
        let text = self
            .markdown
            .strip_prefix('\u{feff}')
            .unwrap_or(&self.markdown);
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let end = match lines.first().map(|l| l.trim_end()) {
            Some("---") => lines
                .iter()
                .skip(1)
                .position(|l| l.trim_end() == "---")
                .map(|p| p + 1),
            _ => None,
        };
        let Some(end) = end else {
            return text.to_owned();
        };
        let body: String = lines[end + 1..].concat();
        let Ok(SkillHeader { name, description }) = self.header() else {
            return body;
        };
        let quoted = |s: &str| serde_json::Value::from(s).to_string();
        let mut front = format!(
            "---\nname: {}\ndescription: {}\n",
            quoted(&name),
            quoted(&description)
        );
        let plain = |v: &str| {
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || " ._/+=,<>[]-".contains(c))
        };
        for line in &lines[1..end] {
            let Some((key, value)) = line.trim_end().split_once(':') else {
                continue;
            };
            if !KEPT_FOR_DELIVERIES.contains(&key) || !value.is_empty() && !value.starts_with(' ') {
                continue;
            }
            // Without a comment after it, and its quotes.
            let value = value.split(" #").next().unwrap_or_default().trim();
            let value = unquote(value);
            if key == "disable-model-invocation" {
                // Kept from the model unless plainly not: a value it
                // cannot read does not open the skill to the model.
                let off = value.eq_ignore_ascii_case("false");
                front.push_str(&format!("{key}: {}\n", !off));
            } else if plain(&value) {
                front.push_str(&format!("{key}: {value}\n"));
            }
        }
        front.push_str("---\n");
        front + &body
    }

    /// The skill's name and description, from its front matter.
    pub fn header(&self) -> Result<SkillHeader, SkillError> {
        front_matter(&self.markdown).map(|(h, _)| h)
    }

    /// Checks the skill as Claude Code requires it (a name of lowercase
    /// letters, digits and hyphens, up to 64; a description up to 1024
    /// characters), and its files; returns its size in bytes.
    fn validate(&self) -> Result<usize, SkillError> {
        let SkillHeader { name, description } = self.header()?;
        if name.is_empty()
            || name.chars().count() > NAME_MAX_CHARS
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || name.starts_with('-')
        {
            return Err(invalid(format!(
                "{name:?} is not a skill name: lowercase letters, digits and hyphens, at most \
                 {NAME_MAX_CHARS}."
            )));
        }
        if description.trim().is_empty() || description.chars().count() > DESCRIPTION_MAX_CHARS {
            return Err(invalid(format!(
                "The skill {name} needs a description (at most {DESCRIPTION_MAX_CHARS} \
                 characters): it is how the agent knows when to use it."
            )));
        }
        // What the agent reads of it, and a person looks over: nothing
        // hidden from the one in it for the other.
        if description.chars().any(crate::text::is_hidden_format) {
            return Err(invalid(format!(
                "The description of the skill {name} holds hidden characters (such as ones \
                 that turn text around)."
            )));
        }
        if self.markdown.contains('\0') {
            return Err(invalid(format!("The SKILL.md of {name} holds a NUL byte.")));
        }
        if self.files.len() > SKILL_FILES_MAX {
            return Err(invalid(format!(
                "The skill {name} has more than {SKILL_FILES_MAX} files."
            )));
        }
        let mut size = self.markdown.len();
        for (i, f) in self.files.iter().enumerate() {
            check_path(&f.path)?;
            if self.files[..i].iter().any(|o| {
                o.path == f.path
                    || f.path.starts_with(&format!("{}/", o.path))
                    || o.path.starts_with(&format!("{}/", f.path))
            }) {
                return Err(invalid(format!(
                    "The skill {name} has {:?} twice (or as a file and a folder).",
                    f.path
                )));
            }
            size += f.bytes()?.len();
        }
        Ok(size)
    }
}

/// Checks a session's skills: each valid, names unique, all within
/// [`SKILLS_MAX_BYTES`].
pub fn validate(skills: &[Skill]) -> Result<(), SkillError> {
    if skills.len() > SKILLS_MAX {
        return Err(invalid(format!(
            "A session has at most {SKILLS_MAX} skills."
        )));
    }
    let mut total = 0;
    let mut names: Vec<String> = Vec::new();
    for skill in skills {
        total += skill.validate()?;
        let name = skill.header()?.name;
        if names.contains(&name) {
            return Err(invalid(format!("Two skills are named {name}.")));
        }
        names.push(name);
    }
    if total > SKILLS_MAX_BYTES {
        return Err(SkillError::TooLarge(format!(
            "Skills are at most {} KiB together.",
            SKILLS_MAX_BYTES / 1024
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skill_without_its_grants_keeps_the_rest_as_written() {
        let without = |markdown: &str| {
            Skill {
                markdown: markdown.into(),
                files: Vec::new(),
            }
            .markdown_without_grants()
        };
        assert_eq!(
            without(
                "---\nname: deploy\nallowed-tools: Bash, Read\ndescription: Ships it.\n\
                 hooks:\n  PreToolUse:\n    - command: curl x\nallowed-tools:\n- Bash\n\
                 license: MIT\n---\n# Deploy\nallowed-tools: stays in the body\n"
            ),
            "---\nname: \"deploy\"\ndescription: \"Ships it.\"\nlicense: MIT\n---\n# Deploy\n\
             allowed-tools: stays in the body\n"
        );
        // However the YAML spells the key (quoted, escaped, as `? key`,
        // tagged, anchored, in flow style, indented); what keeps a skill
        // from being used on the model's own stays.
        for grants in [
            "\"allowed-tools\": Bash\n'hooks':\n  Stop: []\n",
            "? allowed-tools\n: [Bash]\n",
            "\"allowed\\x2dtools\": Bash\n\"hook\\x73\":\n  Stop: []\n",
            "!!str allowed-tools: Bash\n&a hooks: {}\n",
            "? \"allowed-\\\n  tools\"\n: [Bash]\n",
            "{allowed-tools: [Bash]}: x\n",
            "  allowed-tools: Bash\n",
        ] {
            let markdown = format!(
                "---\r\nname: deploy\r\n{grants}disable-model-invocation: true\r\n\
                 description: >\r\n  Ships\r\n  it.\r\n---\r\nbody\r\n"
            );
            assert_eq!(
                without(&markdown),
                "---\nname: \"deploy\"\ndescription: \"Ships it.\"\n\
                 disable-model-invocation: true\n---\nbody\r\n",
                "{grants:?}"
            );
        }
        // A value that is more than a plain phrase is left out; the one
        // that keeps the skill from the model stays however it is written,
        // and where it cannot be read, keeps it from the model.
        assert_eq!(
            without("---\nname: a\ndescription: b\nmodel: \"x\\nhooks: y\"\n---\n"),
            "---\nname: \"a\"\ndescription: \"b\"\n---\n"
        );
        for (written, kept) in [
            ("true # manual only", "true"),
            ("\"true\"", "true"),
            ("'false'", "false"),
            ("yes please", "true"),
        ] {
            assert_eq!(
                without(&format!(
                    "---\nname: a\ndescription: b\ndisable-model-invocation: {written}\n\
                     model: 'claude-opus-4-5' # the best\n---\n"
                )),
                format!(
                    "---\nname: \"a\"\ndescription: \"b\"\ndisable-model-invocation: {kept}\n\
                     model: claude-opus-4-5\n---\n"
                ),
                "{written}"
            );
        }
        assert_eq!(without("no front matter\n"), "no front matter\n");
    }

    fn skill(markdown: &str) -> Skill {
        Skill {
            markdown: markdown.into(),
            files: Vec::new(),
        }
    }

    #[test]
    fn front_matter_gives_name_description_and_body() {
        let (h, body) = front_matter(
            "---\nname: pdf-tools\ndescription: \"Fills PDF forms: use for \\\"forms\\\".\"\nallowed-tools: Bash\n---\n# PDF\nSteps.\n",
        )
        .unwrap();
        assert_eq!(h.name, "pdf-tools");
        assert_eq!(h.description, "Fills PDF forms: use for \"forms\".");
        assert_eq!(body, "# PDF\nSteps.\n");
        let (h, _) =
            front_matter("---\r\nname: 'it''s'\r\ndescription: >\r\n  two\r\n  lines\r\n---\r\n")
                .unwrap();
        assert_eq!(
            (h.name.as_str(), h.description.as_str()),
            ("it's", "two lines")
        );
        for bad in [
            "# no front matter",
            "---\nname: x\n",
            "---\ndescription: d\n---\n",
        ] {
            assert!(front_matter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn skills_are_checked_as_claude_code_needs_them() {
        let ok = skill("---\nname: review\ndescription: Reviews a diff.\n---\nLook closely.");
        validate(std::slice::from_ref(&ok)).unwrap();
        assert!(
            validate(&[ok.clone(), ok.clone()]).is_err(),
            "two of one name"
        );
        for bad in ["Review", "re view", "-x", ""] {
            let s = skill(&format!("---\nname: {bad}\ndescription: d\n---\n"));
            assert!(validate(&[s]).is_err(), "{bad:?}");
        }
        assert!(validate(&[skill("---\nname: x\ndescription:\n---\n")]).is_err());
        assert!(validate(&[skill("---\nname: x\ndescription: a\u{202e}b\n---\n")]).is_err());
        for path in [
            "../x",
            "/etc/passwd",
            "a//b",
            "a/./b",
            "SKILL.md",
            "a\\b",
            "",
            "x/.claude/skills/evil/SKILL.md",
            ".claude/settings.json",
            &format!("scripts/{}.sh", "a".repeat(253)),
        ] {
            let mut s = ok.clone();
            s.files.push(SkillFile {
                path: path.into(),
                content: "x".into(),
                base64: false,
                executable: false,
            });
            assert!(validate(&[s]).is_err(), "{path:?}");
        }
        let mut s = ok.clone();
        for path in ["scripts", "scripts/run.sh"] {
            s.files.push(SkillFile {
                path: path.into(),
                content: "x".into(),
                base64: false,
                executable: false,
            });
        }
        assert!(validate(&[s]).is_err(), "a file and a folder");
        let mut big = ok;
        big.files.push(SkillFile {
            path: "big.bin".into(),
            content: "a".repeat(SKILLS_MAX_BYTES),
            base64: false,
            executable: false,
        });
        assert!(matches!(validate(&[big]), Err(SkillError::TooLarge(_))));
    }
}
