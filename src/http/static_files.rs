//! Where the dashboard's files may come from: regular files inside the assets directory.
//!
//! `warp::fs::dir` refuses `..`, but follows symbolic links wherever they point (a link to
//! `/etc/passwd` would be served) and opens whatever it finds (a FIFO blocks the request, and
//! with it a blocking thread and the process exit). Every path is therefore resolved here
//! first: made canonical (links followed), required to lie inside the canonical directory
//! and to be a regular file; anything else is `404`.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest file read whole into memory (`index.html`).
const MAX_READ: u64 = 4 * 1024 * 1024;

/// The dashboard directory, canonical, if it exists.
#[derive(Clone)]
pub struct Assets(Option<Arc<PathBuf>>);

impl Assets {
    pub fn new(dir: Option<PathBuf>) -> Assets {
        Assets(
            dir.and_then(|d| d.canonicalize().ok())
                .filter(|d| d.is_dir())
                .map(Arc::new),
        )
    }

    pub fn found(&self) -> bool {
        self.0.is_some()
    }

    pub fn dir(&self) -> Option<&Path> {
        self.0.as_deref().map(PathBuf::as_path)
    }

    /// The regular file inside the directory that the (percent-encoded) request path `tail`
    /// names, if there is one.
    pub async fn resolve(&self, tail: &str) -> Option<PathBuf> {
        let root = self.0.clone()?;
        let relative = relative_path(tail)?;
        let canonical = tokio::fs::canonicalize(root.join(relative)).await.ok()?;
        if !canonical.starts_with(root.as_path()) {
            return None;
        }
        let metadata = tokio::fs::metadata(&canonical).await.ok()?;
        metadata.is_file().then_some(canonical)
    }

    /// The contents of the regular file `name` inside the directory. It is opened
    /// non-blocking and checked again once open, so a FIFO swapped in cannot block the read.
    pub async fn read(&self, name: &str) -> Option<Vec<u8>> {
        let path = self.resolve(name).await?;
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::OpenOptionsExt as _;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .ok()?;
            if !file.metadata().ok()?.is_file() {
                return None;
            }
            let mut body = Vec::new();
            file.take(MAX_READ).read_to_end(&mut body).ok()?;
            Some(body)
        })
        .await
        .ok()?
    }
}

/// A request path made relative and safe to join: percent-decoded, no `.`/`..` segments,
/// no backslashes or NULs.
fn relative_path(tail: &str) -> Option<PathBuf> {
    let decoded = percent_decode(tail)?;
    let mut path = PathBuf::new();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." || segment.contains(['\\', '\0']) {
            return None;
        }
        path.push(segment);
    }
    (!path.as_os_str().is_empty()).then_some(path)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_are_made_safe() {
        assert_eq!(relative_path("app.js"), Some(PathBuf::from("app.js")));
        assert_eq!(relative_path("a//b.css"), Some(PathBuf::from("a/b.css")));
        assert_eq!(relative_path("my%20file"), Some(PathBuf::from("my file")));
        assert_eq!(relative_path("../etc/passwd"), None);
        assert_eq!(relative_path("%2e%2e/etc/passwd"), None);
        assert_eq!(relative_path("a%5c..%5cb"), None);
        assert_eq!(relative_path("%zz"), None);
        assert_eq!(relative_path(""), None);
    }

    #[tokio::test]
    async fn only_regular_files_inside_are_resolved() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.js"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        std::os::unix::fs::symlink("app.js", dir.path().join("alias.js")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let fifo = std::ffi::CString::new(dir.path().join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let assets = Assets::new(Some(dir.path().to_owned()));
        assert!(assets.resolve("app.js").await.is_some());
        assert!(assets.resolve("alias.js").await.is_some());
        assert!(assets.resolve("passwd").await.is_none());
        assert!(assets.resolve("sub").await.is_none());
        assert!(assets.resolve("fifo").await.is_none());
        assert!(assets.read("fifo").await.is_none());
        assert_eq!(assets.read("app.js").await.as_deref(), Some(&b"x"[..]));
    }
}
