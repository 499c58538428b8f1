//! A session's workspace as people browse it: folders and files, a file
//! shown with highlighting, and the addresses to download one file or the
//! whole workspace and to upload into it.
//!
//! Paths are relative to the workspace (`src/main.rs`; `""` is the
//! workspace itself), as the agent's tools name them; the server confines
//! each one to the workspace.

use crate::domain::SessionId;
use serde::{Deserialize, Serialize};

/// Largest file the dashboard shows (highlighted); larger ones are
/// downloaded instead.
pub const VIEW_MAX_BYTES: usize = 512 * 1024;
/// Largest upload, all its files together.
pub const UPLOAD_MAX_BYTES: usize = 64 * 1024 * 1024;

/// One entry of a folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    /// From the workspace's root.
    pub path: String,
    pub is_dir: bool,
    /// Bytes (0 for a folder).
    pub size: u64,
}

/// What just changed in a session's workspace, as its transcript's stream
/// says it (the `files` frame), for the Files view to follow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesChanged {
    /// Paths from the workspace's root that were made, written, moved or
    /// deleted, sorted.
    pub paths: Vec<String>,
    /// More changed than is named: anything may have.
    pub more: bool,
}

/// How much of its disk a session's workspace uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUse {
    pub used_bytes: u64,
    /// The workspace's size where it has a disk limit; `None`: no limit.
    pub limit_bytes: Option<u64>,
}

impl DiskUse {
    /// Whether next to nothing is left under the limit: less than what
    /// ext4 keeps for itself (2 % of it, at most 16 MiB) and 2 MiB more.
    pub fn is_full(&self) -> bool {
        self.limit_bytes.is_some_and(|limit| {
            let kept = (limit / 50).min(16 << 20) + (2 << 20);
            limit.saturating_sub(self.used_bytes) < kept
        })
    }

    /// `12.0 MiB of 64.0 MiB`, or `12.0 MiB (no limit)`.
    pub fn describe(&self) -> String {
        match self.limit_bytes {
            Some(limit) => format!("{} of {}", format_size(self.used_bytes), format_size(limit)),
            None => format!("{} (no limit)", format_size(self.used_bytes)),
        }
    }
}

/// A file as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileView {
    pub path: String,
    pub size: u64,
    pub content: FileContent,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileContent {
    /// Text, as highlighted HTML (every piece of it escaped).
    Text(String),
    /// Not UTF-8 text: download it to look at it.
    Binary,
    /// More than [`VIEW_MAX_BYTES`].
    TooLarge,
}

impl FileView {
    /// What the dashboard shows for `data`, the bytes of `path`.
    #[cfg(feature = "ssr")]
    pub fn of(path: String, data: &[u8]) -> Self {
        let size = data.len() as u64;
        let content = if data.len() > VIEW_MAX_BYTES {
            FileContent::TooLarge
        } else {
            match std::str::from_utf8(data) {
                Ok(text) if !text.contains('\0') => {
                    FileContent::Text(crate::markdown::code_block(language(&path), text))
                }
                _ => FileContent::Binary,
            }
        };
        FileView {
            path,
            size,
            content,
        }
    }
}

/// The highlighter's language for a file name (its extension; plain text
/// for one it does not know).
#[cfg(feature = "ssr")]
fn language(path: &str) -> &'static str {
    let name = name_of(path);
    if name == "Dockerfile" {
        return "dockerfile";
    }
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    const KNOWN: &[&str] = &[
        "rs", "py", "sh", "bash", "zsh", "toml", "yaml", "yml", "ini", "json", "sql", "lua", "js",
        "mjs", "cjs", "ts", "tsx", "jsx", "go", "c", "h", "cc", "cpp", "hpp", "java", "kt",
        "swift", "cs", "php", "rb", "scala", "css", "scss",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(ext))
        .copied()
        .unwrap_or("text")
}

/// The last part of a path: a file's or folder's own name.
pub fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The folder a path is in (`""` for the workspace's root).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// `dir/name`, or `name` at the root.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// Where one file is downloaded.
pub fn download_url(session: SessionId, path: &str) -> String {
    let encoded: Vec<String> = path.split('/').map(percent_encode).collect();
    format!("/api/sessions/{session}/files/{}", encoded.join("/"))
}

/// Where the whole workspace is downloaded, as a `.tar.gz`.
pub fn archive_url(session: SessionId) -> String {
    format!("/api/sessions/{session}/archive")
}

/// Where files are uploaded to (a multipart form post), and folders listed.
pub fn folder_url(session: SessionId) -> String {
    format!("/api/sessions/{session}/files")
}

/// The session page's Files view at folder `dir`, showing `file`.
pub fn files_view_url(session: SessionId, dir: &str, file: Option<&str>) -> String {
    let mut url = format!("/sessions/{session}?view=files");
    if !dir.is_empty() {
        url.push_str("&dir=");
        url.push_str(&percent_encode(dir));
    }
    if let Some(file) = file {
        url.push_str("&file=");
        url.push_str(&percent_encode(file));
    }
    url
}

/// A size as people read it: `980 B`, `12.3 KiB`, `4.0 MiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

/// A path segment or query value for a URL: everything but unreserved
/// characters percent-encoded.
pub fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_urls() {
        assert_eq!(parent("src/a/b.rs"), "src/a");
        assert_eq!(parent("b.rs"), "");
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("src", "a"), "src/a");
        let id = uuid::Uuid::from_u128(1);
        assert_eq!(
            download_url(id, "my dir/ä#?.txt"),
            format!("/api/sessions/{id}/files/my%20dir/%C3%A4%23%3F.txt")
        );
        assert_eq!(
            files_view_url(id, "src/a b", Some("src/a b/c&d.rs")),
            format!("/sessions/{id}?view=files&dir=src%2Fa%20b&file=src%2Fa%20b%2Fc%26d.rs")
        );
        assert_eq!(format_size(980), "980 B");
        assert_eq!(format_size(12_595), "12.3 KiB");
        assert_eq!(format_size(4 * 1024 * 1024), "4.0 MiB");
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn text_is_highlighted_and_escaped_binary_and_large_are_not_shown() {
        let v = FileView::of("src/main.rs".into(), b"fn main() { \"<b>\" }");
        let FileContent::Text(html) = v.content else {
            panic!("{v:?}")
        };
        assert!(html.contains("data-lang=\"rs\""), "{html}");
        assert!(
            html.contains("&lt;b&gt;") && !html.contains("<b>"),
            "{html}"
        );
        assert_eq!(
            FileView::of("a.bin".into(), &[0, 159, 146, 150]).content,
            FileContent::Binary
        );
        let big = vec![b'a'; VIEW_MAX_BYTES + 1];
        assert_eq!(
            FileView::of("big.txt".into(), &big).content,
            FileContent::TooLarge
        );
        assert_eq!(language("Makefile"), "text");
        assert_eq!(language("x/Dockerfile"), "dockerfile");
    }
}
