//! A skill uploaded as a zip: its `SKILL.md` at the top (or in the one
//! folder the zip holds, as zipping a skill's folder makes it) and its
//! other files beside it. Read with suspicion: paths that climb out (`../`)
//! or start at `/`, links, and more bytes than a session's skills may hold
//! (whatever the archive's headers claim) are refused before anything is
//! kept.

use app::domain::AppError;
use app::skills::{Skill, SkillFile, SKILLS_MAX_BYTES, SKILL_FILE, SKILL_FILES_MAX};
use base64::Engine as _;
use std::io::Read;

/// Entries (files and folders) an archive may list.
const ENTRIES_MAX: usize = SKILL_FILES_MAX * 4;
/// Unix mode bits of a symbolic link.
const S_IFLNK: u32 = 0o120000;
const S_IFMT: u32 = 0o170000;

fn refuse(why: impl Into<String>) -> AppError {
    AppError::Invalid(format!("That skill archive was refused: {}.", why.into()))
}

/// The skill a zip holds.
pub fn read(bytes: &[u8]) -> Result<Skill, AppError> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|_| refuse("it is not a zip file"))?;
    if zip.len() > ENTRIES_MAX {
        return Err(refuse(format!("it holds more than {ENTRIES_MAX} entries")));
    }
    let mut files: Vec<(String, Vec<u8>, bool)> = Vec::new();
    let mut total = 0usize;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| refuse(format!("entry {i} cannot be read ({e})")))?;
        let raw = entry.name().to_owned();
        let Some(path) = entry.enclosed_name() else {
            return Err(refuse(format!("{raw:?} leaves the skill's folder")));
        };
        if raw.starts_with('/') || raw.contains('\\') {
            return Err(refuse(format!("{raw:?} is not a relative path")));
        }
        let mode = entry.unix_mode().unwrap_or(0);
        if mode & S_IFMT == S_IFLNK {
            return Err(refuse(format!("{raw:?} is a link")));
        }
        // Folders, and what macOS's Finder adds to a zip it makes.
        if entry.is_dir()
            || raw.starts_with("__MACOSX/")
            || raw
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with("._") || n == ".DS_Store")
        {
            continue;
        }
        let path = path.to_string_lossy().into_owned();
        // Read no more than what is left of the limit, whatever the
        // header says the entry holds (a zip bomb lies there).
        let room = SKILLS_MAX_BYTES - total;
        let mut data = Vec::new();
        (&mut entry)
            .take(room as u64 + 1)
            .read_to_end(&mut data)
            .map_err(|e| refuse(format!("{raw:?} cannot be unpacked ({e})")))?;
        if data.len() > room {
            return Err(AppError::TooLarge(format!(
                "A skill holds at most {} KiB unpacked.",
                SKILLS_MAX_BYTES / 1024
            )));
        }
        total += data.len();
        files.push((path, data, mode & 0o111 != 0));
    }
    // The SKILL.md at the top, or in the archive's one top folder.
    let top = match files.iter().find(|(p, ..)| p == SKILL_FILE) {
        Some(_) => String::new(),
        None => {
            let tops: Vec<&str> = files
                .iter()
                .filter_map(|(p, ..)| p.split_once('/').map(|(t, _)| t))
                .collect();
            match tops.first() {
                Some(t)
                    if tops.iter().all(|o| o == t)
                        && files
                            .iter()
                            .any(|(p, ..)| *p == format!("{t}/{SKILL_FILE}")) =>
                {
                    format!("{t}/")
                }
                _ => {
                    return Err(refuse(format!(
                        "it has no {SKILL_FILE} at its top or in its one folder"
                    )))
                }
            }
        }
    };
    let mut markdown = None;
    let mut rest = Vec::new();
    for (path, data, executable) in files {
        let Some(inside) = path.strip_prefix(&top) else {
            return Err(refuse(format!("{path:?} is outside the skill's folder")));
        };
        if inside == SKILL_FILE {
            let text = String::from_utf8(data)
                .map_err(|_| refuse(format!("its {SKILL_FILE} is not UTF-8 text")))?;
            markdown = Some(text);
            continue;
        }
        let (content, base64) = match String::from_utf8(data) {
            Ok(text) if !text.contains('\0') => (text, false),
            Ok(text) => (
                base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
                true,
            ),
            Err(e) => (
                base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                true,
            ),
        };
        rest.push(SkillFile {
            path: inside.to_owned(),
            content,
            base64,
            executable,
        });
    }
    rest.sort_by(|a, b| a.path.cmp(&b.path));
    let skill = Skill {
        markdown: markdown.unwrap_or_default(),
        files: rest,
    };
    app::skills::validate(std::slice::from_ref(&skill))?;
    Ok(skill)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    const SKILL: &str =
        "---\nname: lint\ndescription: Lints the code.\n---\nRun scripts/lint.sh.\n";

    fn zip_of(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data, mode) in entries {
            let options = SimpleFileOptions::default().unix_permissions(*mode);
            if *mode & S_IFMT == S_IFLNK {
                out.add_symlink(*name, std::str::from_utf8(data).unwrap(), options)
                    .unwrap();
            } else {
                out.start_file(*name, options).unwrap();
                out.write_all(data).unwrap();
            }
        }
        out.finish().unwrap().into_inner()
    }

    #[test]
    fn a_zipped_skill_folder_is_read_with_its_files() {
        let zip = zip_of(&[
            ("lint/SKILL.md", SKILL.as_bytes(), 0o644),
            ("lint/scripts/lint.sh", b"#!/bin/sh\necho ok\n", 0o755),
            ("lint/logo.png", &[0x89, b'P', b'N', b'G', 0, 1], 0o644),
        ]);
        let skill = read(&zip).unwrap();
        assert_eq!(skill.header().unwrap().name, "lint");
        assert_eq!(skill.files.len(), 2);
        assert_eq!(skill.files[1].path, "scripts/lint.sh");
        assert!(skill.files[1].executable);
        assert!(skill.files[0].base64, "binary files are kept as base64");
        assert_eq!(
            skill.files[0].bytes().unwrap(),
            [0x89, b'P', b'N', b'G', 0, 1]
        );
        // At the top works too.
        assert!(read(&zip_of(&[("SKILL.md", SKILL.as_bytes(), 0o644)])).is_ok());
    }

    #[test]
    fn hostile_archives_are_refused() {
        let md = SKILL.as_bytes();
        for (name, entries) in [
            (
                "climbing",
                vec![
                    ("SKILL.md", md, 0o644),
                    ("../evil.sh", b"x".as_slice(), 0o644),
                ],
            ),
            (
                "absolute",
                vec![
                    ("SKILL.md", md, 0o644),
                    ("/etc/cron.d/x", b"x".as_slice(), 0o644),
                ],
            ),
            (
                "a link",
                vec![
                    ("SKILL.md", md, 0o644),
                    ("passwd", b"/etc/passwd".as_slice(), S_IFLNK | 0o777),
                ],
            ),
            ("no SKILL.md", vec![("README.md", b"x".as_slice(), 0o644)]),
            (
                "two tops",
                vec![("a/SKILL.md", md, 0o644), ("b/x", b"x".as_slice(), 0o644)],
            ),
        ] {
            assert!(read(&zip_of(&entries)).is_err(), "{name}");
        }
        assert!(read(b"not a zip").is_err());
        // A bomb: a small archive that unpacks past the limit.
        let zeros = vec![0u8; SKILLS_MAX_BYTES + 10];
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        out.start_file("SKILL.md", options).unwrap();
        out.write_all(SKILL.as_bytes()).unwrap();
        out.start_file("zeros.bin", options).unwrap();
        out.write_all(&zeros).unwrap();
        let bomb = out.finish().unwrap().into_inner();
        assert!(bomb.len() < 100 * 1024, "{}", bomb.len());
        assert!(matches!(read(&bomb), Err(AppError::TooLarge(_))));
    }
}
