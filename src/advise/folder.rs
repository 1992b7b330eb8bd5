//! The files of a model folder named by `advise --model`, read as if a
//! hostile user made it: regular files only (never a FIFO, device or
//! socket, and never a blocking open), never through a symlink that leaves
//! the folder, and a bounded listing.
//!
//! Every open is relative to a directory already open (openat with
//! `O_NOFOLLOW | O_NONBLOCK`), and a symlink is followed one component at a
//! time the same way, so a folder swapped or re-linked while it is read
//! cannot lead outside. A Hugging Face cache snapshot
//! (`…/models--ORG--NAME/snapshots/REV/`, whose files are relative links
//! to `../../blobs/HASH`) may link anywhere inside its `models--ORG--NAME`
//! folder.

use crate::sys::fs::{open_at, Kind};
use crate::Error;
use nix::fcntl::AtFlags;
use nix::sys::stat::{fstatat, SFlag};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Entries read from a model folder. mlx_lm writes a dozen; a 405B model in
/// shards has a few hundred. The walk does not descend into subfolders:
/// only the folder's own entries are listed (depth 1).
pub const MAX_ENTRIES: usize = 10_000;

/// An open model folder.
pub struct Folder {
    /// The path as given, for messages.
    name: PathBuf,
    /// The canonical path, for listing.
    real: PathBuf,
    /// Open directories from the folder a link may reach (the folder
    /// itself, or a cache snapshot's `models--…` folder) down to the folder.
    dirs: Vec<OwnedFd>,
}

impl Folder {
    pub fn open(dir: &Path) -> Result<Folder, Error> {
        let input = |e: std::io::Error| Error::Input(format!("{}: {e}", dir.display()));
        let real = std::fs::canonicalize(dir).map_err(input)?;
        let (top, below) = match cache_repo(&real) {
            Some((repo, below)) => (repo, below),
            None => (real.clone(), Vec::new()),
        };
        let first = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NONBLOCK)
            .open(&top)
            .map_err(input)?;
        let mut dirs = vec![OwnedFd::from(first)];
        for c in below {
            let last = dirs
                .last()
                .ok_or_else(|| Error::Input(dir.display().to_string()))?;
            let next = open_at(last, &c, Kind::Dir).map_err(input)?;
            dirs.push(next);
        }
        Ok(Folder {
            name: dir.to_path_buf(),
            real,
            dirs,
        })
    }

    /// The names of the folder's entries ending in `.{ext}`, sorted; an
    /// error past `MAX_ENTRIES` entries of any kind.
    pub fn names_with_extension(&self, ext: &str) -> Result<Vec<OsString>, Error> {
        let name = self.name.display();
        let entries =
            std::fs::read_dir(&self.real).map_err(|e| Error::Input(format!("{name}: {e}")))?;
        let mut out = Vec::new();
        for (i, e) in entries.enumerate() {
            if i >= MAX_ENTRIES {
                return Err(Error::Data(format!(
                    "{name}: more than {MAX_ENTRIES} entries; a model folder holds config.json and its *.safetensors"
                )));
            }
            let e = e.map_err(|e| Error::Input(format!("{name}: {e}")))?;
            let file_name = e.file_name();
            if Path::new(&file_name).extension().is_some_and(|x| x == ext) {
                out.push(file_name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Open the entry `file` of the folder for reading. Missing: exit 66;
    /// not a regular file, or a symlink that leaves the folder: exit 65.
    pub fn open_file(&self, file: &OsStr) -> Result<File, Error> {
        let path = self.name.join(file);
        let shown = path.display();
        let top = self
            .dirs
            .last()
            .ok_or_else(|| Error::Input(shown.to_string()))?;
        let fd = match entry_type(top, file) {
            Err(e) => return Err(Error::Input(format!("{shown}: {e}"))),
            Ok(t) if t == SFlag::S_IFLNK => self.follow(&path, file)?,
            Ok(t) => open_regular(top, file, t, &path)?,
        };
        let f = File::from(fd);
        // The type again, of what was opened: the entry may have been
        // replaced between the check and the open.
        let meta = f
            .metadata()
            .map_err(|e| Error::Input(format!("{shown}: {e}")))?;
        let t = meta.file_type();
        if !t.is_file() {
            let what = if t.is_fifo() {
                "a FIFO"
            } else if t.is_char_device() || t.is_block_device() {
                "a device"
            } else if t.is_socket() {
                "a socket"
            } else if t.is_dir() {
                "a directory"
            } else {
                "not a file"
            };
            return Err(not_regular(&path, what));
        }
        Ok(f)
    }

    /// Follow the symlink `file` one component at a time from the folder,
    /// never above the top directory and never through another symlink.
    fn follow(&self, path: &Path, file: &OsStr) -> Result<OwnedFd, Error> {
        let shown = path.display();
        let top = self
            .dirs
            .last()
            .ok_or_else(|| Error::Input(shown.to_string()))?;
        let target = nix::fcntl::readlinkat(Some(top.as_raw_fd()), file)
            .map_err(|e| Error::Input(format!("{shown}: {e}")))?;
        let leaves = || {
            Error::Data(format!(
                "{shown}: a symlink that leaves the model folder (to {}); only links inside it are read",
                Path::new(&target).display()
            ))
        };
        let components: Vec<Component> = Path::new(&target).components().collect();
        // How many of `self.dirs` the walk is still inside, and the
        // directories it opened below them.
        let mut depth = self.dirs.len();
        let mut opened: Vec<OwnedFd> = Vec::new();
        let Some((last, parents)) = components.split_last() else {
            return Err(not_regular(path, "a symlink to nothing"));
        };
        for c in parents {
            match c {
                Component::CurDir => {}
                Component::ParentDir => {
                    if opened.pop().is_none() {
                        depth -= 1;
                        if depth == 0 {
                            return Err(leaves());
                        }
                    }
                }
                Component::Normal(n) => {
                    let here = current(&self.dirs[..depth], &opened).ok_or_else(leaves)?;
                    let next = open_at(here, n, Kind::Dir).map_err(|e| {
                        Error::Data(format!(
                            "{shown}: cannot follow its link through '{}': {e}",
                            n.to_string_lossy()
                        ))
                    })?;
                    opened.push(next);
                }
                Component::RootDir | Component::Prefix(_) => return Err(leaves()),
            }
        }
        let Component::Normal(n) = last else {
            return Err(match last {
                Component::RootDir | Component::Prefix(_) => leaves(),
                _ => not_regular(path, "a link to a directory"),
            });
        };
        let here = current(&self.dirs[..depth], &opened).ok_or_else(leaves)?;
        match entry_type(here, n) {
            Err(e) => Err(Error::Input(format!("{shown}: {e}"))),
            Ok(t) if t == SFlag::S_IFLNK => Err(not_regular(path, "a link to a link")),
            Ok(t) => open_regular(here, n, t, path),
        }
    }
}

/// The innermost directory of a walk.
fn current<'a>(dirs: &'a [OwnedFd], opened: &'a [OwnedFd]) -> Option<&'a OwnedFd> {
    opened.last().or_else(|| dirs.last())
}

/// A cache snapshot `…/models--ORG--NAME/snapshots/REV` → the
/// `models--ORG--NAME` folder and the two names below it.
fn cache_repo(real: &Path) -> Option<(PathBuf, Vec<OsString>)> {
    let rev = real.file_name()?;
    let snapshots = real.parent()?;
    let repo = snapshots.parent()?;
    let is_repo = repo
        .file_name()?
        .to_str()
        .is_some_and(|n| n.starts_with("models--"));
    (snapshots.file_name()? == "snapshots" && is_repo).then(|| {
        (
            repo.to_path_buf(),
            vec!["snapshots".into(), rev.to_os_string()],
        )
    })
}

/// The type of `name` in `dir`, the entry itself (lstat).
fn entry_type(dir: &OwnedFd, name: &OsStr) -> nix::Result<SFlag> {
    let st = fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)
}

/// Open `name` in `dir`, whose type (from `entry_type`) is `t`, if it is a
/// regular file: anything else is refused before it is opened.
fn open_regular(dir: &OwnedFd, name: &OsStr, t: SFlag, path: &Path) -> Result<OwnedFd, Error> {
    let what = match t {
        SFlag::S_IFREG => {
            return open_at(dir, name, Kind::File).map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    not_regular(path, "a symlink")
                } else {
                    Error::Input(format!("{}: {e}", path.display()))
                }
            })
        }
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFCHR | SFlag::S_IFBLK => "a device",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFDIR => "a directory",
        _ => "not a file",
    };
    Err(not_regular(path, what))
}

fn not_regular(path: &Path, what: &str) -> Error {
    Error::Data(format!(
        "{}: not a regular file ({what}); only regular files in the model folder are read",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_snapshots_reach_their_repo_folder() {
        let p = Path::new("/h/.cache/huggingface/hub/models--mlx-community--Qwen/snapshots/abc1");
        assert_eq!(
            cache_repo(p),
            Some((
                PathBuf::from("/h/.cache/huggingface/hub/models--mlx-community--Qwen"),
                vec![OsString::from("snapshots"), OsString::from("abc1")]
            ))
        );
        assert_eq!(cache_repo(Path::new("/m/models--x/other/abc1")), None);
        assert_eq!(cache_repo(Path::new("/m/x/snapshots/abc1")), None);
        assert_eq!(cache_repo(Path::new("/snapshots/abc1")), None);
        assert_eq!(cache_repo(Path::new("/")), None);
    }
}
