//! Waiting for a path to appear: the system bus's socket, when dbus starts after pistats or
//! is installed later (minimal images ship without it).
//!
//! Polling for the socket woke an otherwise idle daemon every 30 s, and picked the bus up
//! only at the next poll. An inotify watch on the nearest directory that exists costs nothing
//! until something is created there. Any event is only a hint to look again, so events are
//! never parsed, which is why this is a few `libc` calls and not a crate. Where inotify is
//! unavailable (no instances left, a seccomp filter) the wait falls back to polling.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Poll interval where inotify cannot be used.
const POLL: Duration = Duration::from_secs(30);
/// A look at the path now and then even while watched, in case the watch misses a change
/// (a file system mounted over the watched directory).
const RECHECK: Duration = Duration::from_secs(600);

/// Returns once `path` exists.
pub(super) async fn appears(path: &Path) {
    let mut watch = match Watch::new() {
        Ok(watch) => Some(watch),
        Err(err) => {
            tracing::debug!("network: cannot watch for the system bus socket ({err}); polling");
            None
        }
    };
    loop {
        if path.exists() {
            return;
        }
        let Some(active) = watch.as_mut() else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        if let Err(err) = active.nearest_directory_of(path) {
            tracing::debug!(
                "network: cannot watch for {} ({err}); polling",
                path.display()
            );
            watch = None;
            continue;
        }
        // Looked at again once watched, so a socket created in between is not missed.
        if path.exists() {
            return;
        }
        tokio::select! {
            changed = active.changed() => if let Err(err) = changed {
                tracing::debug!("network: inotify read failed ({err}); polling");
                watch = None;
            },
            () = tokio::time::sleep(RECHECK) => {}
        }
    }
}

/// One inotify instance watching one directory at a time.
struct Watch {
    fd: AsyncFd<OwnedFd>,
    /// The current watch descriptor.
    watching: Option<libc::c_int>,
}

impl Watch {
    fn new() -> io::Result<Watch> {
        // SAFETY: no pointers; the result is checked before use.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the AsyncFd owns the descriptor, so it stays open while registered.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|err| err.into_parts().1)?;
        Ok(Watch { fd, watching: None })
    }

    /// Watches the deepest existing directory on the way to `path` for entries created or
    /// moved in, and for its own removal (after which a shallower one is watched).
    fn nearest_directory_of(&mut self, path: &Path) -> io::Result<()> {
        let mask = libc::IN_CREATE
            | libc::IN_MOVED_TO
            | libc::IN_DELETE_SELF
            | libc::IN_MOVE_SELF
            | libc::IN_ONLYDIR;
        let fd = self.fd.get_ref().as_raw_fd();
        let mut dir = path.parent();
        while let Some(candidate) = dir {
            // A relative path's last parent is "": the working directory.
            let name = match candidate.as_os_str().as_bytes() {
                b"" => CString::from(c"."),
                bytes => CString::new(bytes)?,
            };
            // SAFETY: `name` is NUL-terminated; `fd` is our inotify instance.
            let watching = unsafe { libc::inotify_add_watch(fd, name.as_ptr(), mask) };
            if watching >= 0 {
                if let Some(previous) = self.watching.replace(watching) {
                    if previous != watching {
                        // SAFETY: as above; a watch the kernel already dropped only fails.
                        unsafe { libc::inotify_rm_watch(fd, previous) };
                    }
                }
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if !matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) {
                return Err(err);
            }
            dir = candidate.parent();
        }
        Err(io::ErrorKind::NotFound.into())
    }

    /// Waits for events and discards them: each only says "look again".
    async fn changed(&self) -> io::Result<()> {
        super::drained(&self.fd).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The socket's directories are created one by one, then the socket: the wait follows the
    /// watch down and ends only when the socket itself exists.
    #[tokio::test]
    async fn waits_through_missing_directories_for_the_socket() {
        let root = tempfile::tempdir().unwrap();
        let socket = root.path().join("run/dbus/system_bus_socket");
        let waiting = tokio::spawn({
            let socket = socket.clone();
            async move { appears(&socket).await }
        });
        let settle = || tokio::time::sleep(Duration::from_millis(50));
        settle().await;
        std::fs::create_dir(root.path().join("run")).unwrap();
        settle().await;
        std::fs::create_dir(root.path().join("run/dbus")).unwrap();
        settle().await;
        std::fs::write(root.path().join("run/dbus/other"), b"").unwrap();
        settle().await;
        assert!(!waiting.is_finished(), "ended before the socket existed");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the socket's creation ends the wait")
            .unwrap();
    }

    /// A watched directory that is removed and made again is watched again.
    #[tokio::test]
    async fn a_directory_removed_and_made_again_is_watched_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("dbus");
        std::fs::create_dir(&dir).unwrap();
        let socket = dir.join("bus");
        let waiting = tokio::spawn({
            let socket = socket.clone();
            async move { appears(&socket).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::remove_dir(&dir).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        std::fs::create_dir(&dir).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        std::fs::write(&socket, b"").unwrap();
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the new directory is watched")
            .unwrap();
    }
}
