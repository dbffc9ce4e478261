//! Fan-out: one pass per snapshot writes the shared frame to every WebSocket client.
//!
//! Waking one task per client per tick to write the same bytes cost more than the writes
//! themselves. Instead every session registers a [`Member`] here, and one broadcaster task
//! ([`run`]) wakes once per snapshot and, for each member, makes one non-blocking `send(2)`
//! of the prebuilt frame (plain or compressed, see [`crate::hub::Snapshot`]) straight to the
//! client's socket. A session task wakes only for what is its own: reading (pongs, close,
//! garbage), pings, and the rare document the broadcaster could not finish.
//!
//! The socket has two writers, so each member's [`Shared`] state decides who may write:
//!
//! - The broadcaster writes only while the session has nothing half-written: not in the
//!   middle of a control frame of its own (tungstenite writes pings, pong replies and close
//!   frames through [`Gate`], which marks the session as writing from the first byte until a
//!   flush completes) and no document remainder pending. Otherwise it marks the document
//!   missed and wakes the session, which sends the latest snapshot itself once it is done.
//! - A `send(2)` that takes only part of the frame (the client's socket buffer is full)
//!   leaves the rest as the member's remainder and wakes the session; [`Gate`] writes it
//!   before any other byte, through the connection's write deadline, so a client that stops
//!   reading is dropped as before and a frame is never interleaved with a ping or close.
//! - A client gets each snapshot at most once (the member remembers the last one it got),
//!   and the latest one at once on connect (the session sends it itself).
//!
//! A TLS client's socket carries rustls records, not frames: it has no descriptor here, so
//! the broadcaster just wakes its session, which writes the frame through rustls (one task
//! wake-up per client per tick, as before this module).

use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::deflate;
use crate::hub::{Hub, Snapshot};

/// The sessions the broadcaster writes to.
#[derive(Default)]
pub(super) struct Fanout {
    members: Mutex<Members>,
    /// Wakes a broadcaster that sleeps because nobody is connected.
    joined: Notify,
}

#[derive(Default)]
struct Members {
    /// Registered members; a departed one leaves `None` until its index is reused.
    slots: Vec<Option<Arc<Member>>>,
    free: Vec<usize>,
}

/// One session as the broadcaster sees it.
pub(super) struct Member {
    shared: Mutex<Shared>,
    /// Wakes the session: a remainder to finish, a missed document, a failed write.
    wake: Notify,
    /// `server_max_window_bits` if the client negotiated `permessage-deflate`.
    window_bits: Option<u8>,
}

#[derive(Default)]
struct Shared {
    /// The client's socket, for the broadcaster's writes; `None` over TLS and once the
    /// session's socket is closing (cleared under this lock before the descriptor closes).
    fd: Option<RawFd>,
    /// The session has written part of a frame of its own and not yet flushed it.
    writing: bool,
    /// The unwritten end of a document, written before anything else.
    remainder: Option<Bytes>,
    /// A snapshot came while the broadcaster could not write; the session sends the latest.
    missed: bool,
    /// When the last snapshot this client got (or has pending) was collected.
    last: Option<Instant>,
    /// The broadcaster's write failed (connection reset): the session ends.
    failed: bool,
}

/// What a session does after a wake-up ([`Member::next_step`]).
pub(super) enum Step {
    /// Flush the socket: a remainder or a frame of the session's own is pending.
    Flush,
    /// Nothing is pending.
    Idle,
    /// The broadcaster's write failed.
    Failed,
}

impl Fanout {
    /// Registers a session; it leaves when the [`Registration`] is dropped.
    pub(super) fn join(
        self: &Arc<Fanout>,
        fd: Option<RawFd>,
        window_bits: Option<u8>,
    ) -> Registration {
        let member = Arc::new(Member {
            shared: Mutex::new(Shared {
                fd,
                // The session sends the latest snapshot itself first.
                missed: true,
                ..Shared::default()
            }),
            wake: Notify::new(),
            window_bits,
        });
        let mut members = lock(&self.members);
        let index = match members.free.pop() {
            Some(index) => {
                members.slots[index] = Some(member.clone());
                index
            }
            None => {
                members.slots.push(Some(member.clone()));
                members.slots.len() - 1
            }
        };
        drop(members);
        self.joined.notify_one();
        Registration {
            fanout: self.clone(),
            index,
            member,
        }
    }

    fn is_empty(&self) -> bool {
        lock(&self.members).slots.is_empty()
    }

    /// Offers `snapshot` to every member: one `send(2)` each, or a wake-up of its session.
    fn deliver(&self, snapshot: &Snapshot) {
        let members = lock(&self.members);
        let (mut plain, mut deflated) = (None, None);
        let mut len = None;
        for member in members.slots.iter().flatten() {
            let compressed = member.window_bits.is_some_and(|bits| {
                deflate::fits(bits, *len.get_or_insert_with(|| snapshot.json().len()))
            });
            let frame = if compressed {
                deflated.get_or_insert_with(|| snapshot.deflated())
            } else {
                plain.get_or_insert_with(|| snapshot.frame())
            };
            member.offer(frame, snapshot.collected_at);
        }
    }
}

/// A session's place in the [`Fanout`]; dropping it leaves.
pub(super) struct Registration {
    fanout: Arc<Fanout>,
    index: usize,
    pub member: Arc<Member>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut members = lock(&self.fanout.members);
        members.slots[self.index] = None;
        members.free.push(self.index);
        if members.free.len() == members.slots.len() {
            // Everyone left: give back what a burst of clients grew.
            members.slots = Vec::new();
            members.free = Vec::new();
        }
    }
}

impl Member {
    /// Writes `frame` to the client if nothing else is being written to it, else leaves the
    /// document for the session. Runs on the broadcaster.
    fn offer(&self, frame: &Bytes, collected_at: Instant) {
        let mut shared = lock(&self.shared);
        if shared.last == Some(collected_at) {
            return;
        }
        let fd = match shared.fd {
            Some(fd) if !shared.writing && shared.remainder.is_none() && !shared.failed => fd,
            _ => {
                shared.missed = true;
                drop(shared);
                self.wake.notify_one();
                return;
            }
        };
        shared.last = Some(collected_at);
        match send(fd, frame) {
            Ok(n) if n == frame.len() => return,
            Ok(n) => shared.remainder = Some(frame.slice(n..)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                shared.remainder = Some(frame.clone())
            }
            Err(err) => {
                tracing::debug!("WebSocket send failed: {err}");
                shared.failed = true;
            }
        }
        drop(shared);
        self.wake.notify_one();
    }

    /// Waits for the broadcaster to leave the session something to do.
    pub(super) async fn woken(&self) {
        self.wake.notified().await
    }

    /// What the session must do now: a missed document becomes the remainder to write (the
    /// latest snapshot's frame, unless the client already has it) once nothing else is
    /// half-written.
    pub(super) fn next_step(&self, latest: Option<&Snapshot>) -> Step {
        let mut shared = lock(&self.shared);
        if shared.failed {
            return Step::Failed;
        }
        if shared.missed && !shared.writing && shared.remainder.is_none() {
            shared.missed = false;
            if let Some(snapshot) = latest.filter(|s| shared.last != Some(s.collected_at)) {
                shared.last = Some(snapshot.collected_at);
                let compressed = self
                    .window_bits
                    .is_some_and(|bits| deflate::fits(bits, snapshot.json().len()));
                shared.remainder = Some(if compressed {
                    snapshot.deflated()
                } else {
                    snapshot.frame()
                });
            }
        }
        if shared.writing || shared.remainder.is_some() {
            Step::Flush
        } else {
            Step::Idle
        }
    }
}

/// One non-blocking `send(2)` of `frame` to `fd`.
fn send(fd: RawFd, frame: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `fd` is the session's open socket: the session clears it from the member
        // (under the lock the caller holds) before the descriptor can be closed. The buffer
        // is valid for `frame.len()` bytes.
        let n = unsafe {
            libc::send(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The broadcaster: offers every new snapshot to every member until `closed` fires. While
/// nobody is connected it waits for a session to join instead, so an unwatched daemon's
/// runtime is not woken every tick (a new session sends the latest snapshot itself).
pub(super) async fn run(fanout: Arc<Fanout>, hub: Arc<Hub>, closed: CancellationToken) {
    let mut snapshots = hub.subscribe();
    loop {
        // Registered before the check, so a join between the two is not missed.
        let joined = fanout.joined.notified();
        if fanout.is_empty() {
            deflate::release();
            tokio::select! {
                _ = closed.cancelled() => break,
                () = joined => {}
            }
            // What was published while nobody was here is not news to anyone.
            snapshots.borrow_and_update();
            continue;
        }
        tokio::select! {
            _ = closed.cancelled() => break,
            changed = snapshots.changed() => if changed.is_err() { break },
        }
        let snapshot = snapshots.borrow_and_update().clone();
        if let Some(snapshot) = snapshot {
            fanout.deliver(&snapshot);
        }
    }
}

/// The session's side of the socket: every write of its own (tungstenite's control frames)
/// goes after the document remainder the broadcaster left, and holds the broadcaster off
/// until it is flushed. Dropping it withdraws the descriptor from the broadcaster first.
pub(super) struct Gate<S> {
    member: Arc<Member>,
    io: S,
}

impl<S> Gate<S> {
    pub(super) fn new(io: S, member: Arc<Member>) -> Gate<S> {
        Gate { member, io }
    }
}

impl<S: AsyncWrite + Unpin> Gate<S> {
    /// Writes the pending remainder, if any, through the inner socket (and its deadline).
    fn drain(io: &mut S, shared: &mut Shared, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(remainder) = shared.remainder.as_mut() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, remainder))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            remainder.advance(n);
            if remainder.is_empty() {
                shared.remainder = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S> Drop for Gate<S> {
    fn drop(&mut self) {
        lock(&self.member.shared).fd = None;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Gate<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gate<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut shared = lock(&this.member.shared);
        shared.writing = true;
        ready!(Self::drain(&mut this.io, &mut shared, cx))?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut shared = lock(&this.member.shared);
        ready!(Self::drain(&mut this.io, &mut shared, cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        shared.writing = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut shared = lock(&this.member.shared);
        // Closing: the broadcaster writes no more.
        shared.fd = None;
        shared.writing = true;
        ready!(Self::drain(&mut this.io, &mut shared, cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ms(n: u64) -> std::time::Duration {
        std::time::Duration::from_millis(n)
    }

    fn shared(member: &Member) -> MutexGuard<'_, Shared> {
        lock(&member.shared)
    }

    /// The broadcaster writes a whole frame once per snapshot, stands back while the session
    /// is mid-frame (the document is then the session's to send), and leaves the end of a
    /// frame the socket could not take to the session.
    #[test]
    fn the_broadcaster_writes_whole_frames_or_hands_them_over() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let fanout = Arc::new(Fanout::default());
        let registration = fanout.join(Some(ours.as_raw_fd()), None);
        let member = &registration.member;
        shared(member).missed = false;
        let t1 = Instant::now();
        let (t2, t3, t4) = (t1 + ms(1), t1 + ms(2), t1 + ms(3));

        member.offer(&Bytes::from_static(b"first"), t1);
        member.offer(&Bytes::from_static(b"first again"), t1);
        let mut got = [0u8; 16];
        let n = theirs.read(&mut got).unwrap();
        assert_eq!(&got[..n], b"first", "once per snapshot");

        shared(member).writing = true;
        member.offer(&Bytes::from_static(b"second"), t2);
        assert!(shared(member).missed);
        assert_eq!(shared(member).last, Some(t1), "not written while mid-frame");
        {
            let mut s = shared(member);
            s.writing = false;
            s.missed = false;
        }

        // More than a socket buffer takes at once: the rest is the session's.
        let big = Bytes::from(vec![b'x'; 4 << 20]);
        member.offer(&big, t3);
        let remainder = shared(member).remainder.clone().expect("a remainder");
        assert!(!remainder.is_empty() && remainder.len() < big.len());
        member.offer(&Bytes::from_static(b"next"), t4);
        assert!(shared(member).missed, "nothing written after half a frame");
    }

    /// The session's own bytes (a ping) go after the remainder of a document, and the
    /// broadcaster is held off until the session has flushed them.
    #[tokio::test]
    async fn a_remainder_goes_before_the_sessions_own_bytes() {
        let fanout = Arc::new(Fanout::default());
        let registration = fanout.join(None, None);
        let member = registration.member.clone();
        let (mut client, server) = tokio::io::duplex(64);
        let mut gate = Gate::new(server, member.clone());
        {
            let mut s = shared(&member);
            s.missed = false;
            s.remainder = Some(Bytes::from_static(b"end of a document|"));
        }
        gate.write_all(b"ping").await.unwrap();
        assert!(shared(&member).writing, "mid-frame until flushed");
        gate.flush().await.unwrap();
        assert!(!shared(&member).writing);
        assert!(shared(&member).remainder.is_none());
        drop(gate);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"end of a document|ping");
    }
}
