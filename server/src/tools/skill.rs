//! The `skill` tool: loads a skill of the workspace (`.claude/skills/<name>/`)
//! when a task calls for it, the way Claude Code's Skill tool does: its
//! instructions first, then any of its other files the instructions point
//! to.

use super::files::{file_error, Verb};
use super::{cap_text, Args, ToolOutput};
use crate::sandbox::{relative, Workspace};
use app::skills::{front_matter, SKILLS_DIR, SKILL_FILE};

/// Files of a skill listed at most.
const FILES_LISTED: usize = 200;
/// Folders of a skill looked in at most (one holding `node_modules`
/// would take each call minutes).
const FOLDERS_LOOKED: usize = 100;

pub(super) async fn skill(ws: &dyn Workspace, args: &Args, cap: usize) -> ToolOutput {
    let name = args.str("name");
    if name.is_empty() || name.contains(['/', '\\', '\0']) || name.starts_with('.') {
        return ToolOutput::error(format!("{name:?} is not a skill's name."));
    }
    let dir = format!("{SKILLS_DIR}/{name}");
    let (path, text) = match args.opt_str("file") {
        Some(file) => {
            // Inside the skill's folder: a relative path that never climbs.
            let outside = || {
                ToolOutput::error(format!(
                    "{file:?} is not a file of the skill {name}: give its path inside the skill's folder."
                ))
            };
            if file.starts_with('/') || file.split('/').any(|seg| seg == "..") {
                return outside();
            }
            let rel = match relative(file) {
                Ok(rel) if rel.as_os_str() != "." => rel,
                _ => return outside(),
            };
            let rel = rel.to_string_lossy();
            let path = format!("{dir}/{rel}");
            match ws.read(&path).await {
                Ok(bytes) => (path, String::from_utf8_lossy(&bytes).into_owned()),
                Err(e) => return file_error(e, Verb::Read),
            }
        }
        None => {
            let path = format!("{dir}/{SKILL_FILE}");
            let markdown = match ws.read(&path).await {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(_) => {
                    return ToolOutput::error(format!(
                        "There is no skill {name:?}: the skills are the folders of /workspace/{SKILLS_DIR}."
                    ))
                }
            };
            let body = front_matter(&markdown).map_or(markdown.as_str(), |(_, body)| body);
            let mut out = format!("Base directory for this skill: /workspace/{dir}\n\n{body}");
            let files = files_of(ws, &dir).await;
            if !files.is_empty() {
                out.push_str(&format!(
                    "\n\nThe skill's other files (read one with the skill tool's `file`): {}",
                    files.join(", ")
                ));
            }
            (path, out)
        }
    };
    let (content, truncated) = cap_text(text, cap, &format!("read {path} in parts with read_file"));
    ToolOutput {
        content,
        is_error: false,
        truncated,
    }
}

/// The files in a skill's folder besides its `SKILL.md`, relative to it
/// ([`FILES_LISTED`] at most, from [`FOLDERS_LOOKED`] folders at most).
async fn files_of(ws: &dyn Workspace, dir: &str) -> Vec<String> {
    let mut files = Vec::new();
    let mut folders = vec![String::new()];
    let mut looked = 0;
    while let Some(sub) = folders.pop() {
        if files.len() >= FILES_LISTED || looked >= FOLDERS_LOOKED {
            break;
        }
        looked += 1;
        let path = if sub.is_empty() {
            dir.to_owned()
        } else {
            format!("{dir}/{sub}")
        };
        let Ok(entries) = ws.list(&path).await else {
            continue;
        };
        for e in entries {
            let rel = if sub.is_empty() {
                e.name.clone()
            } else {
                format!("{sub}/{}", e.name)
            };
            if e.is_dir {
                folders.push(rel);
            } else if rel != SKILL_FILE && files.len() < FILES_LISTED {
                files.push(rel);
            }
        }
    }
    files.sort();
    files
}
