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
/// Skills read from the workspace, by name; more are left out (the
/// listing says how many).
const SKILLS_READ_MAX: usize = 100;
/// Characters of a skill's description listed.
const DESCRIPTION_MAX_CHARS: usize = 1024;
/// Bytes of the skills' listing in the system prompt.
const LISTING_MAX_BYTES: usize = 16 * 1024;

/// The workspace's instructions and skills.
#[derive(Debug, Default, PartialEq)]
pub struct Project {
    /// `(path, text)` of each instructions file found.
    pub instructions: Vec<(String, String)>,
    pub skills: Vec<SkillHeader>,
    /// Skill folders past [`SKILLS_READ_MAX`], not read.
    pub skills_left_out: usize,
}

/// A file's text, if it is there and readable as text.
async fn text(ws: &dyn Workspace, path: &str) -> Option<String> {
    let bytes = match ws.read(path).await {
        Ok(bytes) => bytes,
        Err(FileError::NotFound(_) | FileError::NotDirectory(_)) => return None,
        Err(e) => {
            tracing::warn!("the instructions in {path} were not read: {e}");
            return None;
        }
    };
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
        let mut folders: Vec<_> = folders.into_iter().filter(|e| e.is_dir).collect();
        folders.sort_by(|a, b| a.name.cmp(&b.name));
        project.skills_left_out = folders.len().saturating_sub(SKILLS_READ_MAX);
        folders.truncate(SKILLS_READ_MAX);
        for folder in folders {
            let path = format!("{SKILLS_DIR}/{}/{SKILL_FILE}", folder.name);
            let Some(markdown) = text(ws, &path).await else {
                continue;
            };
            // The folder names the skill, as the CLI finds it.
            if let Ok((header, _)) = front_matter(&markdown) {
                project.skills.push(SkillHeader {
                    name: folder.name,
                    description: header
                        .description
                        .chars()
                        .take(DESCRIPTION_MAX_CHARS)
                        .collect(),
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
            // Listed while they fit; the rest are counted.
            let mut list = String::new();
            let mut listed = 0;
            for s in &self.skills {
                let line = format!("- {}: {}\n", s.name, s.description);
                if list.len() + line.len() > LISTING_MAX_BYTES {
                    break;
                }
                list.push_str(&line);
                listed += 1;
            }
            let unlisted = self.skills.len() - listed + self.skills_left_out;
            if unlisted > 0 {
                list.push_str(&format!(
                    "- … and {unlisted} more, not listed here: look in /workspace/{SKILLS_DIR}/\n"
                ));
            }
            parts.push(format!(
                "Skills are available in /workspace/{SKILLS_DIR}/. When a task matches a \
                 skill's description, call the skill tool with its name first and follow what \
                 it says; read its other files with the skill tool's `file` as it directs.\n\n{}",
                list.trim_end()
            ));
        }
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workspace of many skills with long descriptions (a repository's,
    /// or the agent's own making) lists what fits and counts the rest: the
    /// system prompt stays small enough for every call.
    #[test]
    fn a_crowd_of_skills_is_listed_within_its_bytes() {
        let project = Project {
            instructions: Vec::new(),
            skills: (0..100)
                .map(|i| SkillHeader {
                    name: format!("skill-{i:03}"),
                    description: "d".repeat(DESCRIPTION_MAX_CHARS),
                })
                .collect(),
            skills_left_out: 1900,
        };
        let prompt = project.system_prompt().unwrap();
        assert!(prompt.len() < LISTING_MAX_BYTES + 1024, "{}", prompt.len());
        assert!(prompt.contains("- skill-000: ddd"));
        let listed = prompt.matches("- skill-").count();
        assert!(prompt.ends_with(&format!(
            "- … and {} more, not listed here: look in /workspace/{SKILLS_DIR}/",
            2000 - listed
        )));
    }
}
