//! State in a JSON file: mode 0600, atomic replace, a generation counter inside the
//! file, compare-and-swap under an OS file lock, and a lock file for runs.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::store::{break_mismatch, changed_error, locked_error};
use super::{Generation, LockInfo, LockRequest, State, StateStore, Stored};
use crate::error::{Error, ErrorKind, Result};
use crate::private_file::write_private;

/// State in a JSON file, written atomically with mode 0600 (it holds secrets in clear,
/// like Terraform state).
///
/// Next to it: `<file>.lock` while a run holds the lock (its owner as JSON), and
/// `<file>.guard`, locked by the OS for the instant of each compare-and-swap so two
/// processes on one machine (or one NFS share with working locks) cannot both win.
#[derive(Debug, Clone)]
pub struct FileStateStore {
    path: PathBuf,
}

impl FileStateStore {
    /// A store at `path` (created on first save, with its parent directories).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStateStore { path: path.into() }
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file's path.
    pub fn lock_path(&self) -> PathBuf {
        sibling(&self.path, "lock")
    }

    fn guard_path(&self) -> PathBuf {
        sibling(&self.path, "guard")
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> Error {
        Error::new(
            ErrorKind::State,
            format!("cannot {what} {}", self.path.display()),
        )
        .with_source(e)
    }

    fn read(&self) -> Result<Option<(State, u64)>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                let (state, generation) = State::from_json_with_generation(&text)?;
                Ok(Some((state, generation.unwrap_or(0))))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error("read", e)),
        }
    }

    fn read_lock(&self) -> Result<Option<LockInfo>> {
        match std::fs::read_to_string(self.lock_path()) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                Error::new(
                    ErrorKind::State,
                    format!(
                        "the lock file {} is not valid; remove it by hand if no run holds it",
                        self.lock_path().display()
                    ),
                )
                .with_source(e)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error("read the lock of", e)),
        }
    }

    /// The OS lock held for one compare-and-swap.
    fn guard(&self) -> Result<File> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| self.io_error("create the directory of", e))?;
        }
        let mut o = OpenOptions::new();
        o.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let f = o
            .open(self.guard_path())
            .map_err(|e| self.io_error("open the guard of", e))?;
        f.lock()
            .map_err(|e| self.io_error("lock the guard of", e))?;
        Ok(f)
    }
}

fn sibling(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(ext);
    path.with_file_name(name)
}

#[async_trait]
impl StateStore for FileStateStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    async fn load(&self) -> Result<Option<Stored>> {
        Ok(self
            .read()?
            .map(|(s, g)| Stored::new(s, Generation::new(g.to_string()))))
    }

    async fn save(&self, state: &State, expected: Option<&Generation>) -> Result<Generation> {
        let guard = self.guard()?;
        let current = self.read()?.map(|(_, g)| g);
        if current.map(|g| Generation::new(g.to_string())).as_ref() != expected {
            return Err(changed_error(&self.location()));
        }
        let next = current.map_or(1, |g| g + 1);
        write_private(
            &self.path,
            state.to_json_with_generation(Some(next), true)?.as_bytes(),
        )?;
        drop(guard);
        Ok(Generation::new(next.to_string()))
    }

    async fn lock(&self, request: &LockRequest) -> Result<LockInfo> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| self.io_error("create the directory of", e))?;
        }
        let info = LockInfo::for_request(request);
        let mut o = OpenOptions::new();
        o.create_new(true).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        match o.open(self.lock_path()) {
            Ok(mut f) => {
                let body = serde_json::to_vec_pretty(&info)
                    .map_err(|e| Error::internal("lock does not serialize").with_source(e))?;
                f.write_all(&body)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| self.io_error("write the lock of", e))?;
                Ok(info)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match self.read_lock()? {
                    Some(held) => Err(locked_error(&self.location(), &held)),
                    // Released between our attempt and the read: the caller tries again.
                    None => Err(Error::new(
                        ErrorKind::StateLocked,
                        format!(
                            "the state at {} was locked and just released; try again",
                            self.location()
                        ),
                    )),
                }
            }
            Err(e) => Err(self.io_error("create the lock of", e)),
        }
    }

    async fn unlock(&self, lock: &LockInfo) -> Result<()> {
        let _guard = self.guard()?;
        match self.read_lock()? {
            Some(h) if h.id == lock.id => std::fs::remove_file(self.lock_path())
                .map_err(|e| self.io_error("remove the lock of", e)),
            other => Err(break_mismatch(&self.location(), other.as_ref(), &lock.id)),
        }
    }

    async fn current_lock(&self) -> Result<Option<LockInfo>> {
        self.read_lock()
    }

    async fn break_lock(&self, id: &str) -> Result<LockInfo> {
        let _guard = self.guard()?;
        match self.read_lock()? {
            Some(h) if h.id == id => {
                std::fs::remove_file(self.lock_path())
                    .map_err(|e| self.io_error("remove the lock of", e))?;
                Ok(h)
            }
            other => Err(break_mismatch(&self.location(), other.as_ref(), id)),
        }
    }
}
