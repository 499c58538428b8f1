//! Which host folders a session may mount read-only: those at or under a
//! folder of the admin's allowlist (`PADDOCK_MOUNT_ALLOW`), judged after
//! every symbolic link is resolved, when the session is created and again
//! whenever its sandbox is made (the allowlist may have changed since).
//! A path must name an allowed folder as written, before anything is looked
//! up, so every refusal reads the same and never tells whether a path
//! outside the allowlist exists. An allowed folder that holds Paddock's own
//! data, or lies inside it (the database, the master key, workspaces, the
//! claude-code homes), is left out of the allowlist. A folder with another
//! file system mounted inside it is refused: Docker's `:ro` (before API
//! 1.44) does not reach into those, so they would stay writable.

use super::{Mount, SandboxError};
use app::domain::{AppError, ReadOnlyMount};
use std::path::{Path, PathBuf};

pub struct MountPolicy {
    /// The allowlist as configured and resolved (each pair one folder);
    /// folders that do not exist, or that overlap Paddock's own data, are
    /// left out.
    allowed: Vec<(PathBuf, PathBuf)>,
}

/// `path` made absolute, and resolved as far as it exists.
fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    absolute.canonicalize().unwrap_or(absolute)
}

impl MountPolicy {
    /// The allowlist `allow` (`PADDOCK_MOUNT_ALLOW`), none of it overlapping
    /// the `own` folders (see `Config::mount_policy`).
    pub fn new(allow: &[PathBuf], own: &[PathBuf]) -> Self {
        let own: Vec<PathBuf> = own.iter().map(|p| resolved(p)).collect();
        let allowed = allow
            .iter()
            .filter_map(|folder| {
                let resolved = match folder.canonicalize() {
                    Ok(resolved) => resolved,
                    Err(e) => {
                        tracing::warn!(folder = %folder.display(), "PADDOCK_MOUNT_ALLOW: {e}");
                        return None;
                    }
                };
                if let Some(data) = own
                    .iter()
                    .find(|d| d.starts_with(&resolved) || resolved.starts_with(d))
                {
                    tracing::warn!(
                        folder = %folder.display(),
                        "PADDOCK_MOUNT_ALLOW: left out, it overlaps Paddock's own data in {}",
                        data.display()
                    );
                    return None;
                }
                let as_given = std::path::absolute(folder).unwrap_or_else(|_| resolved.clone());
                Some((as_given, resolved))
            })
            .collect();
        Self { allowed }
    }

    /// The mount with its host folder resolved, if it may be mounted.
    pub fn check(&self, mount: &ReadOnlyMount) -> Result<ReadOnlyMount, AppError> {
        if self.allowed.is_empty() {
            return Err(AppError::Invalid(
                "This server mounts no host folders: an admin allows some with \
                 PADDOCK_MOUNT_ALLOW."
                    .into(),
            ));
        }
        let refused = || {
            AppError::Invalid(format!(
                "{:?} is not a folder this server lets sessions mount (PADDOCK_MOUNT_ALLOW \
                 names those).",
                mount.host
            ))
        };
        let written = Path::new(&mount.host);
        let named = self.allowed.iter().any(|(as_given, resolved)| {
            written.starts_with(as_given) || written.starts_with(resolved)
        });
        if !named {
            return Err(refused());
        }
        let resolved = written.canonicalize().map_err(|_| refused())?;
        let allowed = self.allowed.iter().any(|(_, a)| resolved.starts_with(a));
        if allowed && has_mounts_inside(&resolved) {
            return Err(AppError::Invalid(format!(
                "{:?} has other file systems mounted inside it, which a sandbox could write \
                 to: mount a folder without any.",
                mount.host
            )));
        }
        // Docker's bind syntax separates fields with ':' and ','.
        let host = resolved.to_str().filter(|h| !h.contains([':', ',']));
        match host {
            Some(host) if allowed && resolved.is_dir() => Ok(ReadOnlyMount {
                host: host.to_owned(),
                name: mount.name.clone(),
            }),
            _ => Err(refused()),
        }
    }

    /// The session's mounts as its sandbox gets them, each checked again.
    pub fn sandbox_mounts(&self, mounts: &[ReadOnlyMount]) -> Result<Vec<Mount>, SandboxError> {
        mounts
            .iter()
            .map(|m| {
                let checked = self
                    .check(m)
                    .map_err(|e| SandboxError::Failed(e.to_string()))?;
                Ok(Mount {
                    target: checked.target(),
                    host: PathBuf::from(checked.host),
                    read_only: true,
                })
            })
            .collect()
    }
}

/// Whether a file system is mounted somewhere strictly inside `folder`, as
/// this process sees the host's mounts.
fn has_mounts_inside(folder: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let inside = mount_points(&table).any(|point| point != folder && point.starts_with(folder));
    inside
}

/// The mount points of a `/proc/self/mountinfo` table (its fifth field,
/// with the kernel's octal escapes for space, tab, newline and backslash).
fn mount_points(table: &str) -> impl Iterator<Item = PathBuf> + '_ {
    table.lines().filter_map(|line| {
        let field = line.split(' ').nth(4)?;
        let mut point = String::with_capacity(field.len());
        let mut rest = field;
        while let Some(at) = rest.find('\\') {
            point.push_str(&rest[..at]);
            let code = rest.get(at + 1..at + 4)?;
            point.push(char::from(u8::from_str_radix(code, 8).ok()?));
            rest = &rest[at + 4..];
        }
        point.push_str(rest);
        Some(PathBuf::from(point))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(host: &Path, name: &str) -> ReadOnlyMount {
        ReadOnlyMount {
            host: host.display().to_string(),
            name: name.into(),
        }
    }

    #[test]
    fn mount_points_are_read_from_mountinfo() {
        let table = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
                     40 22 0:35 / /srv/data/nfs\\040share rw - nfs srv:/x rw\n";
        let points: Vec<_> = mount_points(table).collect();
        assert_eq!(
            points,
            [PathBuf::from("/"), PathBuf::from("/srv/data/nfs share")]
        );
        // This process's own root has /proc (at least) mounted inside it.
        assert!(has_mounts_inside(Path::new("/")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_mounts_inside(&dir.path().canonicalize().unwrap()));
    }

    #[test]
    fn only_folders_under_the_allowlist_after_links() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(allowed.join("data/deep")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(allowed.join("file.txt"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, allowed.join("escape")).unwrap();
        std::fs::create_dir_all(dir.path().join("allowed-not")).unwrap();
        let own = dir.path().join("paddock-data");
        std::fs::create_dir_all(own.join("workspaces")).unwrap();
        let policy = MountPolicy::new(
            &[
                allowed.clone(),
                dir.path().join("missing"),
                // Holds Paddock's data, and lies inside it: both left out.
                dir.path().to_path_buf(),
                own.join("workspaces"),
            ],
            &[own.join("workspaces"), own.join("paddock.db")],
        );
        assert_eq!(policy.allowed.len(), 1);

        let ok = policy
            .check(&mount(&allowed.join("data/deep"), "d"))
            .unwrap();
        assert_eq!(
            PathBuf::from(&ok.host),
            allowed.join("data/deep").canonicalize().unwrap()
        );
        assert!(policy.check(&mount(&allowed, "all")).is_ok());
        let refusals: Vec<String> = [
            outside.clone(),
            allowed.join("escape"),
            allowed.join("../outside"),
            own.join("workspaces"),
            dir.path().join("allowed-not"),
            allowed.join("file.txt"),
            allowed.join("nope"),
            PathBuf::from("/etc"),
        ]
        .iter()
        .map(|p| policy.check(&mount(p, "x")).unwrap_err().to_string())
        .collect();
        for r in &refusals {
            assert!(
                r.contains("not a folder this server lets sessions mount"),
                "{r}"
            );
        }
        let none = MountPolicy::new(&[], &[]);
        assert!(none.check(&mount(&allowed, "x")).is_err());
        assert_eq!(
            policy.sandbox_mounts(&[ok]).unwrap()[0],
            Mount {
                host: allowed.join("data/deep").canonicalize().unwrap(),
                target: "/mnt/d".into(),
                read_only: true,
            }
        );
    }
}
