//! Where the dashboard's files may come from: regular files inside the assets directory.
//!
//! `warp::fs::dir` refuses `..`, but follows symbolic links wherever they point (a link to
//! `/etc/passwd` would be served) and opens whatever it finds (a FIFO blocks the request, and
//! with it a blocking thread and the process exit). Every path is therefore resolved here
//! first: made canonical (links followed), required to lie inside the canonical directory
//! and to be a regular file; anything else is `404`.
//!
//! Each file is read once and kept with its gzip'd form and a strong entity tag (a hash of
//! its bytes): every later request costs one `open` and `fstat`, which also notice a file
//! replaced by a package upgrade (size, modification time or inode changed) and re-read it.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sha1::{Digest as _, Sha1};

use warp::http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use super::encoding;

/// Largest file served: the dashboard's files are tens of kilobytes, and each is held in
/// memory (twice when compressible).
const MAX_READ: u64 = 4 * 1024 * 1024;
/// Most files kept; past it the cache starts over, so a directory of many files cannot grow
/// memory without bound.
const MAX_CACHED: usize = 256;
/// A gzip'd form is kept only if it saves at least this share of the bytes.
const MIN_SAVING: f64 = 0.1;

/// One file as served: its bytes, their gzip'd form if that pays, and what identifies them.
pub struct Entry {
    /// Size, modification time and inode when read: a change means re-read.
    stamp: (u64, i64, i64, u64),
    pub content_type: &'static str,
    pub identity: Bytes,
    pub gzip: Option<Bytes>,
    /// Strong tag of the identity bytes, quoted; the gzip form's is [`Entry::gzip_etag`].
    pub etag: String,
    pub gzip_etag: String,
}

impl Entry {
    fn new(stamp: (u64, i64, i64, u64), content_type: &'static str, body: Vec<u8>) -> Entry {
        let digest = Sha1::digest(&body);
        let hash: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        let gzip = compressible(content_type)
            .then(|| encoding::gzip(&body, encoding::STATIC_LEVEL))
            .filter(|z| (z.len() as f64) < body.len() as f64 * (1.0 - MIN_SAVING))
            .map(Bytes::from);
        Entry {
            stamp,
            content_type,
            identity: Bytes::from(body),
            gzip,
            etag: format!("\"{hash}\""),
            gzip_etag: format!("\"{hash}.gz\""),
        }
    }

    /// Whether the answer depends on `Accept-Encoding` (there is a gzip form).
    pub fn varies(&self) -> bool {
        self.gzip.is_some()
    }
}

/// The dashboard directory, canonical, if it exists, and the files read from it.
#[derive(Clone)]
pub struct Assets {
    dir: Option<Arc<PathBuf>>,
    cache: Arc<Mutex<HashMap<PathBuf, Arc<Entry>>>>,
}

impl Assets {
    pub fn new(dir: Option<PathBuf>) -> Assets {
        Assets {
            dir: dir
                .and_then(|d| d.canonicalize().ok())
                .filter(|d| d.is_dir())
                .map(Arc::new),
            cache: Default::default(),
        }
    }

    pub fn found(&self) -> bool {
        self.dir.is_some()
    }

    /// The regular file inside the directory that the (percent-encoded) request path `tail`
    /// names, if there is one.
    pub async fn resolve(&self, tail: &str) -> Option<PathBuf> {
        let root = self.dir.clone()?;
        let relative = relative_path(tail)?;
        let canonical = tokio::fs::canonicalize(root.join(relative)).await.ok()?;
        if !canonical.starts_with(root.as_path()) {
            return None;
        }
        let metadata = tokio::fs::metadata(&canonical).await.ok()?;
        metadata.is_file().then_some(canonical)
    }

    /// The file `name` as served: from the cache while the file on disk is unchanged, else
    /// read (opened non-blocking and checked again once open, so a FIFO swapped in cannot
    /// block the read), hashed and
    /// compressed once.
    pub async fn entry(&self, name: &str) -> Option<Arc<Entry>> {
        let path = self.resolve(name).await?;
        let cache = self.cache.clone();
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
                .ok()?;
            let meta = file.metadata().ok()?;
            if !meta.is_file() {
                return None;
            }
            let stamp = (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino());
            if let Some(entry) = lock(&cache).get(&path).filter(|e| e.stamp == stamp) {
                return Some(entry.clone());
            }
            if meta.len() > MAX_READ {
                tracing::debug!("{} is too large to serve", path.display());
                return None;
            }
            let mut body = Vec::with_capacity(meta.len() as usize);
            file.take(MAX_READ).read_to_end(&mut body).ok()?;
            let entry = Arc::new(Entry::new(stamp, content_type(&path), body));
            let mut cache = lock(&cache);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(path, entry.clone());
            Some(entry)
        })
        .await
        .ok()?
    }
}

/// The answer to a GET (or HEAD) of `entry` with the request's `headers`: gzip when
/// accepted, `304` when `If-None-Match` names the chosen form, one byte range of the chosen
/// form when asked (and `If-Range`, if any, names it).
///
/// `Cache-Control: no-cache` makes a browser revalidate every load, which costs a `304` of a
/// few hundred bytes per file: after an upgrade it must not pair the new index.html with
/// modules cached from the old version, whose exports may differ.
pub fn respond(entry: &Entry, headers: &HeaderMap) -> Response<Bytes> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let gzip = entry
        .gzip
        .as_ref()
        .filter(|_| encoding::accepts_gzip(text(header::ACCEPT_ENCODING)));
    let (body, etag) = match gzip {
        Some(z) => (z.clone(), &entry.gzip_etag),
        None => (entry.identity.clone(), &entry.etag),
    };
    let mut response = Response::builder()
        .header(header::ETAG, etag.as_str())
        .header(header::CACHE_CONTROL, "no-cache");
    if entry.varies() {
        response = response.header(header::VARY, "accept-encoding");
    }
    if text(header::IF_NONE_MATCH).is_some_and(|inm| encoding::none_match(inm, etag)) {
        return response
            .status(StatusCode::NOT_MODIFIED)
            .body(Bytes::new())
            .expect("valid response");
    }
    response = response
        .header(header::CONTENT_TYPE, entry.content_type)
        .header(header::ACCEPT_RANGES, "bytes");
    if gzip.is_some() {
        response = response.header(header::CONTENT_ENCODING, "gzip");
    }
    let range_applies = text(header::IF_RANGE).is_none_or(|tag| tag.trim() == etag);
    let ranged = if range_applies {
        encoding::range(text(header::RANGE), body.len())
    } else {
        encoding::Ranged::Whole
    };
    let len = body.len();
    match ranged {
        encoding::Ranged::Whole => response.body(body),
        encoding::Ranged::Part(start, end) => response
            .status(StatusCode::PARTIAL_CONTENT)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{len}", end - 1),
            )
            .body(body.slice(start..end)),
        encoding::Ranged::Unsatisfiable => response
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header(header::CONTENT_RANGE, format!("bytes */{len}"))
            .body(Bytes::new()),
    }
    .expect("valid response")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The media type of a dashboard file, by its extension (as `mime_guess` names them; module
/// scripts and style sheets are UTF-8 by definition, HTML says so here).
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript",
        Some("css") => "text/css",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("webp") => "image/webp",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether gzip is worth trying: text formats; images and fonts are compressed already.
fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.starts_with("application/json")
        || content_type.starts_with("application/manifest+json")
        || content_type.starts_with("image/svg+xml")
        || content_type.starts_with("image/x-icon")
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
        assert_eq!(assets.entry("app.js").await.unwrap().identity, &b"x"[..]);
        assert!(assets.entry("fifo").await.is_none());
        assert!(assets.entry("passwd").await.is_none());
    }

    #[tokio::test]
    async fn entries_are_compressed_once_and_reread_when_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let css = "body { color: black; }\n".repeat(100);
        std::fs::write(dir.path().join("style.css"), &css).unwrap();
        std::fs::write(dir.path().join("icon.png"), [0x89, b'P', b'N', b'G']).unwrap();
        let assets = Assets::new(Some(dir.path().to_owned()));
        let first = assets.entry("style.css").await.unwrap();
        assert_eq!(first.identity, css.as_bytes());
        assert!(first.gzip.as_ref().unwrap().len() < css.len() / 10);
        assert!(first.content_type.starts_with("text/css"));
        assert_ne!(first.etag, first.gzip_etag);
        let again = assets.entry("style.css").await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "served from the cache");
        // An upgrade replaces the file (a new inode, as dpkg renames it into place).
        let new = dir.path().join("style.css.new");
        std::fs::write(&new, "body { color: white; }\n").unwrap();
        std::fs::rename(&new, dir.path().join("style.css")).unwrap();
        let replaced = assets.entry("style.css").await.unwrap();
        assert_eq!(replaced.identity, &b"body { color: white; }\n"[..]);
        assert_ne!(replaced.etag, first.etag);
        let png = assets.entry("icon.png").await.unwrap();
        assert_eq!(png.content_type, "image/png");
        assert!(png.gzip.is_none() && !png.varies());
    }
}
