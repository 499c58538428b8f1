//! What the workspace tells Paddock's own loop, read at the start of each
//! run the way the Claude Code CLI reads it: the project instructions
//! (`CLAUDE.md`, `.claude/CLAUDE.md`, `CLAUDE.local.md`) go into the
//! system prompt, and the skills under `.claude/skills/` are listed there
//! by name and description, to be loaded with the `skill` tool when a task
//! calls for one. A repository's own instructions and skills count as much
//! as a template's.

use crate::sandbox::{FileError, Workspace};
use app::skills::{front_matter, SkillHeader, SKILLS_DIR, SKILL_FILE};

/// The files of project instructions, in the order they are given.
const INSTRUCTION_FILES: [&str; 3] = ["CLAUDE.md", ".claude/CLAUDE.md", "CLAUDE.local.md"];
/// Bytes of one instructions file given to the model.
const INSTRUCTIONS_MAX_BYTES: usize = 64 * 1024;

/// The workspace's instructions and skills.
#[derive(Debug, Default, PartialEq)]
pub struct Project {
    /// `(path, text)` of each instructions file found.
    pub instructions: Vec<(String, String)>,
    pub skills: Vec<SkillHeader>,
}

/// A file's text, if it is there and readable as text.
async fn text(ws: &dyn Workspace, path: &str) -> Option<String> {
    let bytes = ws.read(path).await.ok()?;
    let mut text = String::from_utf8(bytes).ok()?;
    if text.len() > INSTRUCTIONS_MAX_BYTES {
        let mut cut = INSTRUCTIONS_MAX_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n[… cut: the file is longer …]");
    }
    Some(text)
}

impl Project {
    pub async fn read(ws: &dyn Workspace) -> Self {
        let mut project = Project::default();
        for path in INSTRUCTION_FILES {
            if let Some(text) = text(ws, path).await.filter(|t| !t.trim().is_empty()) {
                project.instructions.push((path.to_owned(), text));
            }
        }
        let folders = match ws.list(SKILLS_DIR).await {
            Ok(entries) => entries,
            Err(FileError::NotFound(_) | FileError::NotDirectory(_)) => Vec::new(),
            Err(e) => {
                tracing::debug!("skills not listed: {e}");
                Vec::new()
            }
        };
        for folder in folders.into_iter().filter(|e| e.is_dir) {
            let path = format!("{SKILLS_DIR}/{}/{SKILL_FILE}", folder.name);
            let Some(markdown) = text(ws, &path).await else {
                continue;
            };
            // The folder names the skill, as the CLI finds it.
            if let Ok((header, _)) = front_matter(&markdown) {
                project.skills.push(SkillHeader {
                    name: folder.name,
                    description: header.description,
                });
            }
        }
        project
    }

    /// What the system prompt gains: the instructions, then the skills.
    pub fn system_prompt(&self) -> Option<String> {
        let mut parts = Vec::new();
        for (path, text) in &self.instructions {
            parts.push(format!(
                "Contents of /workspace/{path} (project instructions; follow them):\n\n{text}"
            ));
        }
        if !self.skills.is_empty() {
            let list: Vec<String> = self
                .skills
                .iter()
                .map(|s| format!("- {}: {}", s.name, s.description))
                .collect();
            parts.push(format!(
                "Skills are available in /workspace/{SKILLS_DIR}/. When a task matches a \
                 skill's description, call the skill tool with its name first and follow what \
                 it says; read its other files with the skill tool's `file` as it directs.\n\n{}",
                list.join("\n")
            ));
        }
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }
}
