//! Files another local user could plant or redirect (issue 13): the one
//! rule for a directory headroom writes into, files opened without
//! following symlinks, and the trust root places in a config or a hook.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Why a file was not used.
#[derive(Debug)]
pub enum FileError {
    /// Someone else could plant or redirect it (exit 73): one line naming
    /// the path and the reason.
    Refused(String),
    /// It could not be created, opened or written (exit 74); names the path.
    Io(io::Error),
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Refused(s) => f.write_str(s),
            FileError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<FileError> for io::Error {
    fn from(e: FileError) -> io::Error {
        match e {
            FileError::Refused(s) => io::Error::new(io::ErrorKind::PermissionDenied, s),
            FileError::Io(e) => e,
        }
    }
}

fn io_at(p: &Path, what: &str, e: io::Error) -> FileError {
    FileError::Io(io::Error::new(
        e.kind(),
        format!("{}: cannot {what}: {e}", p.display()),
    ))
}

/// Group or others may write (the sticky bit does not clear this: in a
/// sticky directory others can still create a name before we do).
pub fn others_can_write(mode: u32) -> bool {
    mode & 0o022 != 0
}

/// This process's effective uid: "the daemon's user".
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The one rule for a directory headroom writes into (the log's, the
/// agent's): `lstat` says it is a real directory — not a symlink — owned by
/// `uid` and writable by nobody else, so no one else can put a name in it.
pub fn check_own_dir(dir: &Path, uid: u32) -> Result<(), FileError> {
    let m = std::fs::symlink_metadata(dir).map_err(|e| io_at(dir, "inspect", e))?;
    own_dir_rule(dir, &m, uid)
}

/// `check_own_dir` on metadata already read (`lstat`, or `fstat` of the
/// directory held open).
fn own_dir_rule(dir: &Path, m: &Metadata, uid: u32) -> Result<(), FileError> {
    let refuse = |why: String| {
        FileError::Refused(format!("{}: refusing to write there: {why}", dir.display()))
    };
    if m.file_type().is_symlink() {
        return Err(refuse("it is a symbolic link".into()));
    }
    if !m.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    if m.uid() != uid {
        return Err(refuse(format!(
            "it is owned by uid {}, not by uid {uid} (this process)",
            m.uid()
        )));
    }
    if others_can_write(m.mode()) {
        return Err(refuse(format!(
            "it is writable by group or others (mode {:o})",
            m.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Create `dir` (and missing parents, 0700) if absent, then `check_own_dir`.
/// Creating first and checking after means a directory someone else made
/// in the meantime is still refused.
pub fn ensure_own_dir(dir: &Path, uid: u32) -> Result<(), FileError> {
    use std::os::unix::fs::DirBuilderExt;
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_at(dir, "create the directory", e))?;
    }
    check_own_dir(dir, uid)
}

fn symlink_refusal(path: &Path, e: io::Error) -> FileError {
    if e.raw_os_error() == Some(libc::ELOOP) {
        FileError::Refused(format!(
            "{}: refusing to write through a symbolic link",
            path.display()
        ))
    } else {
        io_at(path, "open", e)
    }
}

/// Open the log for appending (created 0600): its directory (created 0700
/// if missing) is opened without following a symlink, held to
/// `check_own_dir` through that fd, and the file opened inside it with
/// `openat` — so swapping the directory after the check redirects nothing —
/// never through a symlink (O_NOFOLLOW) and never blocking on a FIFO
/// (O_NONBLOCK: no reader is ENXIO, not a hang). Used on the first open and
/// on every reopen after rotation.
pub fn open_log(path: &Path) -> Result<File, FileError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(FileError::Refused(format!(
            "{}: not a path to a file",
            path.display()
        )));
    };
    let uid = euid();
    ensure_own_dir(dir, uid)?;
    let d = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| match e.raw_os_error() {
            // Replaced by a symlink (or a file) since the check just made.
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => FileError::Refused(format!(
                "{}: refusing to write there: it is not a directory (a symbolic link?)",
                dir.display()
            )),
            _ => io_at(dir, "open", e),
        })?;
    let m = d.metadata().map_err(|e| io_at(dir, "inspect", e))?;
    own_dir_rule(dir, &m, uid)?;
    let flags = libc::O_WRONLY
        | libc::O_APPEND
        | libc::O_CREAT
        | libc::O_NOFOLLOW
        | libc::O_NONBLOCK
        | libc::O_CLOEXEC;
    let f = crate::sys::fs::openat(&d, name, flags, 0o600).map_err(|e| symlink_refusal(path, e))?;
    let m = f.metadata().map_err(|e| io_at(path, "inspect", e))?;
    if !m.is_file() {
        return Err(FileError::Refused(format!(
            "{}: refusing to write: not a regular file",
            path.display()
        )));
    }
    Ok(f)
}

/// Create `path` for writing, mode 0600 (`record --out`): a new file
/// (O_CREAT|O_EXCL never follows a symlink), or with `force` a regular
/// file this user owns, truncated — never through a symlink, never a FIFO
/// or a device.
pub fn create_private(path: &Path, force: bool) -> Result<File, FileError> {
    let new = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    let e = match new {
        Ok(f) => return Ok(f),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => e,
        Err(e) => return Err(io_at(path, "create", e)),
    };
    let before = std::fs::symlink_metadata(path).map_err(|e| io_at(path, "inspect", e))?;
    let refuse = |why: &str| FileError::Refused(format!("{}: {why}", path.display()));
    if before.file_type().is_symlink() {
        return Err(refuse("is a symbolic link; refusing to write through it"));
    }
    if !force {
        let _ = e;
        return Err(refuse("exists; pass --force to replace it"));
    }
    if !before.is_file() {
        return Err(refuse(
            "is not a regular file; --force replaces only a regular file",
        ));
    }
    if before.uid() != euid() {
        return Err(refuse(&format!(
            "is owned by uid {}, not by uid {}; --force replaces only your own file",
            before.uid(),
            euid()
        )));
    }
    // Opened without truncating, then checked to be the file just looked
    // at: a swap in between (a FIFO, a symlink) is refused, not followed.
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| symlink_refusal(path, e))?;
    let after = f.metadata().map_err(|e| io_at(path, "inspect", e))?;
    if !after.is_file() || (after.dev(), after.ino()) != (before.dev(), before.ino()) {
        return Err(refuse("changed while being opened; refusing it"));
    }
    f.set_len(0).map_err(|e| io_at(path, "truncate", e))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_at(path, "chmod", e))?;
    Ok(f)
}

/// Why root must not trust `m` (a file, a directory or a symlink on the
/// way to one), or `None`: it must belong to root and be writable by no
/// one else. `sticky_ok`: a sticky directory (/tmp) is accepted only higher
/// up the path, never as the directory the file itself is in: others cannot
/// rename or remove root's entries in it, and every entry below must
/// itself be root's (docs/reliability.md, issue 13).
fn untrusted(m: &Metadata, sticky_ok: bool) -> Option<String> {
    if m.uid() != 0 {
        return Some(format!("it is owned by uid {}, not root", m.uid()));
    }
    let sticky = sticky_ok && m.is_dir() && m.mode() & 0o1000 != 0;
    if !m.file_type().is_symlink() && others_can_write(m.mode()) && !sticky {
        return Some(format!(
            "it is writable by group or others (mode {:o})",
            m.mode() & 0o7777
        ));
    }
    None
}

/// As root, whether `path` may be trusted to say what root runs (the config
/// file, a hook): the file, every directory and symlink on the way to it as
/// written, and every directory above where it really is, up to /, belong
/// to root and are writable by no one else. `what` names it in the error.
pub fn check_trusted(path: &Path, what: &str) -> Result<(), String> {
    let fail = |p: &Path, why: String| {
        if p == path {
            format!("{what} {}: not trusted as root: {why}", path.display())
        } else {
            format!(
                "{what} {}: not trusted as root: {} on the way to it: {why}",
                path.display(),
                p.display()
            )
        }
    };
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| fail(path, format!("cannot find the current directory: {e}")))?
            .join(path)
    };
    // The path as written: each prefix lstat'ed (a symlink's own owner counts).
    let parent = abs.parent().map(Path::to_path_buf);
    let mut prefix = PathBuf::new();
    for c in abs.components() {
        prefix.push(c);
        if matches!(c, Component::CurDir | Component::ParentDir) {
            continue;
        }
        let m = std::fs::symlink_metadata(&prefix)
            .map_err(|e| fail(&prefix, format!("cannot inspect: {e}")))?;
        let sticky_ok = prefix != abs && Some(&prefix) != parent.as_ref();
        if let Some(why) = untrusted(&m, sticky_ok) {
            return Err(fail(&prefix, why));
        }
    }
    // Where it really is: the file and every directory above it.
    let real = abs
        .canonicalize()
        .map_err(|e| fail(path, format!("cannot resolve: {e}")))?;
    let m = std::fs::metadata(&real).map_err(|e| fail(&real, format!("cannot inspect: {e}")))?;
    if !m.is_file() {
        return Err(fail(&real, "it is not a regular file".into()));
    }
    if let Some(why) = untrusted(&m, false) {
        return Err(fail(&real, why));
    }
    for (i, dir) in real.ancestors().skip(1).enumerate() {
        let m = std::fs::metadata(dir).map_err(|e| fail(dir, format!("cannot inspect: {e}")))?;
        if let Some(why) = untrusted(&m, i > 0) {
            return Err(fail(dir, why));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_or_other_write_bits_count_and_sticky_does_not_hide_them() {
        for (mode, want) in [
            (0o700, false),
            (0o755, false),
            (0o775, true),
            (0o757, true),
            (0o1777, true),
            (0o40700, false),
        ] {
            assert_eq!(others_can_write(mode), want, "{mode:o}");
        }
    }

    #[test]
    fn a_symlinked_or_shared_dir_is_refused_and_a_private_one_kept() {
        let t = tempfile::tempdir().expect("tempdir");
        let uid = euid();
        let own = t.path().join("a/b");
        ensure_own_dir(&own, uid).expect("created 0700");
        let mode = std::fs::metadata(&own).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o700);
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&own, &link).expect("symlink");
        let e = check_own_dir(&link, uid).expect_err("symlink");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = check_own_dir(&own, uid).expect_err("0777");
        assert!(e.to_string().contains("mode 777"), "{e}");
        let e = check_own_dir(&own, uid.wrapping_add(1)).expect_err("other owner");
        assert!(e.to_string().contains("owned by uid"), "{e}");
    }

    #[test]
    fn create_private_never_follows_or_replaces_without_force() {
        let t = tempfile::tempdir().expect("tempdir");
        let target = t.path().join("target");
        std::fs::write(&target, "keep").expect("write");
        let link = t.path().join("out");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        for force in [false, true] {
            let e = create_private(&link, force).expect_err("symlink");
            assert!(matches!(e, FileError::Refused(_)), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep");
        let e = create_private(&target, false).expect_err("exists");
        assert!(e.to_string().contains("--force"), "{e}");
        create_private(&target, true).expect("forced");
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "");
        let fresh = t.path().join("fresh");
        create_private(&fresh, false).expect("new");
        assert_eq!(
            std::fs::metadata(&fresh).expect("stat").mode() & 0o777,
            0o600
        );
    }
}
