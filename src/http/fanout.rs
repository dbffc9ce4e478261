//! Fan-out: one pass per snapshot writes the shared frame to every WebSocket client.
//!
//! Waking one task per client per tick to write the same bytes cost more than the writes
//! themselves. Instead every session takes a [`Member`]ship here, and one broadcaster task
//! ([`run`]) wakes once per snapshot and, for each member, makes one non-blocking `send(2)`
//! of the prebuilt frame (plain or compressed, see [`crate::hub::Snapshot`]) straight to the
//! client's socket. A session task wakes only for what is its own: reading (pongs, close,
//! garbage) and the rare document the broadcaster could not finish.
//!
//! Pings ride the documents ([`Pings`]): a client due for one gets an empty ping frame after
//! the document in the same `send(2)`, and the broadcaster, which looks at every client each
//! tick anyway, also notices a ping left unanswered too long. A per-session ping timer cost a
//! timer, a task wake-up and a `send(2)` of its own per client and ping, and pinged every
//! client that connected in the same second at once.
//!
//! What the broadcaster reads for every client each tick (the descriptor, the compression,
//! the last snapshot sent, who owns the socket) is a 24-byte [`Slot`] in a dense [`Block`]
//! of slots, read in order: a second of sleep leaves the clients' state out of the CPU's
//! caches, and with one allocation per client the pass cost three L1 misses per client
//! (callgrind's cache simulation); the slots cost less than one. What only a
//! session or a rare hand-over needs ([`Shared`]: a remainder, a missed document) sits beside
//! the slots, behind a lock the broadcaster takes only on those rare paths.
//!
//! The socket has two writers, so each slot's `owner` word decides who may write:
//!
//! - The broadcaster writes only to an [`OPEN`] slot, which it marks [`SENDING`] for the one
//!   `send(2)`. A session that writes anything of its own (tungstenite writes pong replies
//!   and close frames through [`Gate`]) first marks the slot [`HELD`], waiting out a
//!   send in progress, and gives it back only once it has flushed and nothing is pending. A
//!   document that finds the slot held is marked missed and the session woken, which sends
//!   the latest snapshot itself once it is done.
//! - A `send(2)` that takes only part of the frame (the client's socket buffer is full)
//!   leaves the rest as the member's remainder and wakes the session; [`Gate`] writes it
//!   before any other byte, through the connection's write deadline, so a client that stops
//!   reading is dropped as before and a frame is never interleaved with a ping or close.
//! - A client gets each snapshot at most once (the slot keeps the number of the last one),
//!   and the latest one at once on connect (the session sends it itself).
//!
//! A TLS client's socket carries rustls records, not frames: it has no descriptor here, so
//! the broadcaster just wakes its session, which writes the frame through rustls (one task
//! wake-up per client per tick, as before this module).

use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::deflate;
use crate::hub::{Hub, Snapshot};

/// Slots per [`Block`]: 1.5 KiB of hot state, read in order.
const BLOCK_SLOTS: usize = 64;

// A slot's `owner` word.
/// The broadcaster may write: nothing is pending.
const OPEN: u32 = 0;
/// The broadcaster is making its one `send(2)`.
const SENDING: u32 = 1;
/// The session owns the socket: a frame of its own, a remainder, a missed document or a
/// failed write is pending, or the socket has no descriptor here (TLS).
const HELD: u32 = 2;
/// The socket is closing or has no descriptor: held for good.
const CLOSED: u32 = 4;
/// Nobody's slot.
const FREE: u32 = 8;

/// An empty ping frame (FIN, opcode 9, no payload; a server's frames are not masked).
const PING: [u8; 2] = [0x89, 0x00];

/// The sessions the broadcaster writes to.
pub(super) struct Fanout {
    members: Mutex<Members>,
    /// Wakes a broadcaster that sleeps because nobody is connected.
    joined: Notify,
    pings: Pings,
    /// What [`Slot::pinged`] counts milliseconds from.
    epoch: Instant,
}

/// When the broadcaster pings a client, and how long the client has to answer.
///
/// A client is pinged every [`Pings::every`] snapshots, with the document of that tick; the
/// clients are spread evenly over those ticks by their slot, so 500 clients with a 20 s
/// ping interval at 1 Hz are pinged 25 a tick rather than all together every 20 s. One ping
/// is outstanding at a time; a pong (solicited or not) answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pings {
    /// Snapshots between two pings of a client: `ping_interval` in whole collection intervals,
    /// at least 1.
    every: u64,
    /// A ping unanswered for this long ends the session; checked on every snapshot.
    timeout: Duration,
}

impl Pings {
    pub(super) fn new(interval: Duration, ping_interval: Duration, timeout: Duration) -> Pings {
        let every = (ping_interval.as_secs_f64() / interval.as_secs_f64().max(f64::EPSILON))
            .round()
            .clamp(1.0, u32::MAX.into()) as u64;
        Pings { every, timeout }
    }

    /// Whether slot `position` is pinged with snapshot `seq`.
    fn due(&self, position: usize, seq: u64) -> bool {
        (seq.wrapping_add(position as u64)) % self.every == 0
    }
}

/// What a client's ping state asks of the document about to be sent ([`Fanout::plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ping {
    /// Send the document alone.
    No,
    /// Send the document with a ping after it.
    Due,
    /// The last ping went unanswered for too long: the session ends.
    Overdue,
}

#[derive(Default)]
struct Members {
    /// Every slot there is; a block never moves, so a member keeps its slot without the lock.
    blocks: Vec<Arc<Block>>,
    /// Free slots' positions (block × [`BLOCK_SLOTS`] + index), lowest last.
    free: Vec<usize>,
    /// Members that hold a slot.
    count: usize,
}

/// [`BLOCK_SLOTS`] members' state: the hot slots the broadcaster reads every tick, and the
/// sessions' side, touched only on a hand-over.
struct Block {
    slots: [Slot; BLOCK_SLOTS],
    sessions: [Session; BLOCK_SLOTS],
}

/// What the broadcaster reads for one client every tick.
struct Slot {
    /// Who may write to the socket: [`OPEN`], [`SENDING`], [`HELD`], [`CLOSED`], [`FREE`].
    owner: AtomicU32,
    /// The client's socket, for the broadcaster's writes (read only while it is `SENDING`).
    fd: AtomicI32,
    /// `server_max_window_bits` if the client negotiated `permessage-deflate`, else 0.
    window_bits: AtomicU8,
    /// The sequence number of the last snapshot this client got or has pending (0: none).
    last: AtomicU64,
    /// When the unanswered ping was sent, in milliseconds from [`Fanout::epoch`] (wrapping,
    /// never 0); 0 if none is. Fits the slot's padding: the slot stays 24 bytes.
    pinged: AtomicU32,
}

// What the broadcaster reads per client stays within a third of a cache line.
const _: () = assert!(std::mem::size_of::<Slot>() == 24);

/// One session's side of its slot.
#[derive(Default)]
struct Session {
    shared: Mutex<Shared>,
    /// Wakes the session: a remainder to finish, a missed document, a failed write.
    wake: Notify,
}

#[derive(Default)]
struct Shared {
    /// The session has written part of a frame of its own and not yet flushed it.
    writing: bool,
    /// The unwritten end of a document, written before anything else.
    remainder: Option<Bytes>,
    /// A snapshot came while the slot was held; the session sends the latest.
    missed: bool,
    /// The broadcaster's write failed (connection reset): the session ends.
    failed: bool,
    /// A ping went unanswered for too long: the session ends.
    ping_timeout: bool,
}

impl Shared {
    fn pending(&self) -> bool {
        self.writing || self.remainder.is_some() || self.missed || self.failed || self.ping_timeout
    }
}

/// A session's place in the [`Fanout`]; its slot is freed when the last reference (the
/// session's and its [`Gate`]'s) is dropped.
pub(super) struct Member {
    fanout: Arc<Fanout>,
    block: Arc<Block>,
    index: usize,
    position: usize,
}

/// What a session does after a wake-up ([`Member::next_step`]).
pub(super) enum Step {
    /// Flush the socket: a remainder or a frame of the session's own is pending.
    Flush,
    /// Nothing is pending.
    Idle,
    /// The broadcaster's write failed.
    Failed,
    /// A ping went unanswered for longer than the ping timeout.
    PingTimeout,
}

impl Fanout {
    pub(super) fn new(pings: Pings) -> Fanout {
        Fanout {
            members: Mutex::default(),
            joined: Notify::new(),
            pings,
            epoch: Instant::now(),
        }
    }

    /// `at` in milliseconds from [`Self::epoch`], wrapping every 49 days (a ping is answered
    /// or timed out within at most two hours) and never 0, which means "no ping".
    fn millis(&self, at: Instant) -> u32 {
        (at.saturating_duration_since(self.epoch).as_millis() as u32).max(1)
    }

    /// Whether the document `seq` for slot `position` carries a ping, at `now` (see
    /// [`Self::millis`]).
    fn plan(&self, slot: &Slot, position: usize, seq: u64, now: u32) -> Ping {
        let pinged = slot.pinged.load(Ordering::Relaxed);
        if pinged != 0 {
            let waited = Duration::from_millis(now.wrapping_sub(pinged).into());
            return if waited >= self.pings.timeout {
                Ping::Overdue
            } else {
                Ping::No
            };
        }
        if self.pings.due(position, seq) {
            Ping::Due
        } else {
            Ping::No
        }
    }

    /// Registers a session; it leaves when the last reference to its [`Member`] (the
    /// session's and its [`Gate`]'s) is dropped.
    pub(super) fn join(
        self: &Arc<Fanout>,
        fd: Option<RawFd>,
        window_bits: Option<u8>,
    ) -> Arc<Member> {
        let mut members = lock(&self.members);
        let position = match members.free.pop() {
            Some(position) => position,
            None => {
                let first = members.blocks.len() * BLOCK_SLOTS;
                members.blocks.push(Arc::new(Block::default()));
                members.free.extend((first + 1..first + BLOCK_SLOTS).rev());
                first
            }
        };
        members.count += 1;
        let member = Member {
            fanout: self.clone(),
            block: members.blocks[position / BLOCK_SLOTS].clone(),
            index: position % BLOCK_SLOTS,
            position,
        };
        let slot = member.slot();
        slot.fd.store(fd.unwrap_or(-1), Ordering::Relaxed);
        slot.window_bits
            .store(window_bits.unwrap_or(0), Ordering::Relaxed);
        slot.last.store(0, Ordering::Relaxed);
        slot.pinged.store(0, Ordering::Relaxed);
        // The session sends the latest snapshot itself first.
        *lock(&member.session().shared) = Shared {
            missed: true,
            ..Shared::default()
        };
        let owner = if fd.is_some() { HELD } else { HELD | CLOSED };
        slot.owner.store(owner, Ordering::Release);
        drop(members);
        self.joined.notify_one();
        Arc::new(member)
    }

    fn is_empty(&self) -> bool {
        lock(&self.members).count == 0
    }

    /// Offers `snapshot` to every member: one `send(2)` each (with a ping when the client is
    /// due one), or a wake-up of its session.
    fn deliver(&self, snapshot: &Snapshot) {
        let members = lock(&self.members);
        let now = self.millis(Instant::now());
        // The four frames a client may get this tick, each made once, when first needed.
        let mut frames: [Option<Bytes>; 4] = Default::default();
        let json_len = snapshot.json().len();
        for (number, block) in members.blocks.iter().enumerate() {
            for (index, slot) in block.slots.iter().enumerate() {
                if slot.owner.load(Ordering::Relaxed) & FREE != 0
                    || slot.last.load(Ordering::Relaxed) == snapshot.seq
                {
                    continue;
                }
                let ping = self.plan(slot, number * BLOCK_SLOTS + index, snapshot.seq, now);
                if ping == Ping::Overdue {
                    block.time_out(index);
                    continue;
                }
                let (deflates, with_ping) = (slot.deflates(json_len), ping == Ping::Due);
                let frame = frames[usize::from(deflates) * 2 + usize::from(with_ping)]
                    .get_or_insert_with(|| frame_of(snapshot, deflates, with_ping));
                block.offer(index, frame, snapshot.seq, with_ping.then_some(now));
            }
        }
    }
}

/// The frame of `snapshot` a client gets: compressed or not, with a ping after it or not.
fn frame_of(snapshot: &Snapshot, deflated: bool, ping: bool) -> Bytes {
    let frame = if deflated {
        snapshot.deflated()
    } else {
        snapshot.frame()
    };
    if !ping {
        return frame;
    }
    let mut with_ping = BytesMut::with_capacity(frame.len() + PING.len());
    with_ping.put_slice(&frame);
    with_ping.put_slice(&PING);
    with_ping.freeze()
}

impl Default for Block {
    fn default() -> Block {
        Block {
            slots: std::array::from_fn(|_| Slot {
                owner: AtomicU32::new(FREE),
                fd: AtomicI32::new(-1),
                window_bits: AtomicU8::new(0),
                last: AtomicU64::new(0),
                pinged: AtomicU32::new(0),
            }),
            sessions: std::array::from_fn(|_| Session::default()),
        }
    }
}

impl Slot {
    /// Whether this client gets a document of `json_len` bytes compressed.
    fn deflates(&self, json_len: usize) -> bool {
        let bits = self.window_bits.load(Ordering::Relaxed);
        bits != 0 && deflate::fits(bits, json_len)
    }
}

impl Block {
    /// Ends slot `index`'s session: its client left a ping unanswered too long.
    fn time_out(&self, index: usize) {
        let session = &self.sessions[index];
        lock(&session.shared).ping_timeout = true;
        session.wake.notify_one();
    }

    /// Writes `frame` to slot `index`'s client if the slot is open, else leaves the document
    /// to its session. `pinged` is when, if `frame` ends with a ping. Runs on the broadcaster.
    fn offer(&self, index: usize, frame: &Bytes, seq: u64, pinged: Option<u32>) {
        let slot = &self.slots[index];
        let session = &self.sessions[index];
        if slot
            .owner
            .compare_exchange(OPEN, SENDING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            lock(&session.shared).missed = true;
            session.wake.notify_one();
            return;
        }
        slot.last.store(seq, Ordering::Relaxed);
        if let Some(at) = pinged {
            // Sent now or left as the remainder, which goes before anything else.
            slot.pinged.store(at, Ordering::Relaxed);
        }
        let result = send(slot.fd.load(Ordering::Relaxed), frame);
        if matches!(result, Ok(n) if n == frame.len()) {
            slot.owner.store(OPEN, Ordering::Release);
            return;
        }
        // A hand-over: the session finishes the document or learns that the client is gone.
        let mut shared = lock(&session.shared);
        match result {
            Ok(n) => shared.remainder = Some(frame.slice(n..)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                shared.remainder = Some(frame.clone())
            }
            Err(err) => {
                tracing::debug!("WebSocket send failed: {err}");
                shared.failed = true;
            }
        }
        slot.owner.store(HELD, Ordering::Release);
        drop(shared);
        session.wake.notify_one();
    }
}

impl Member {
    fn slot(&self) -> &Slot {
        &self.block.slots[self.index]
    }

    fn session(&self) -> &Session {
        &self.block.sessions[self.index]
    }

    /// Takes the socket from the broadcaster, waiting out a `send(2)` in progress (one
    /// non-blocking call on another thread: the broadcaster never awaits while sending).
    /// `closing` keeps it for good.
    fn hold(&self, closing: bool) {
        let owner = &self.slot().owner;
        let wanted = if closing { HELD | CLOSED } else { HELD };
        let mut current = owner.load(Ordering::Acquire);
        let mut spins = 0u32;
        loop {
            if current & SENDING != 0 {
                spins += 1;
                if spins % 64 == 0 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                current = owner.load(Ordering::Acquire);
                continue;
            }
            if current & wanted == wanted {
                return;
            }
            match owner.compare_exchange_weak(
                current,
                current | wanted,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => current = now,
            }
        }
    }

    /// Gives the socket back to the broadcaster if nothing is pending (`shared` is this
    /// session's, locked). A closed slot stays held.
    fn release_if_idle(&self, shared: &Shared) {
        if !shared.pending() {
            let _ = self.slot().owner.compare_exchange(
                HELD,
                OPEN,
                Ordering::Release,
                Ordering::Relaxed,
            );
        }
    }

    /// Waits for the broadcaster to leave the session something to do.
    pub(super) async fn woken(&self) {
        self.session().wake.notified().await
    }

    /// The client answered a ping (or sent a pong of its own accord, which RFC 6455 allows
    /// as a heartbeat): no ping is outstanding.
    pub(super) fn ponged(&self) {
        self.slot().pinged.store(0, Ordering::Relaxed);
    }

    /// What the session must do now: a missed document becomes the remainder to write (the
    /// latest snapshot's frame, unless the client already has it, with a ping if one is
    /// due) once nothing else is half-written.
    pub(super) fn next_step(&self, latest: Option<&Snapshot>) -> Step {
        self.hold(false);
        let slot = self.slot();
        let mut shared = lock(&self.session().shared);
        if shared.failed {
            return Step::Failed;
        }
        if shared.ping_timeout {
            return Step::PingTimeout;
        }
        if shared.missed && !shared.writing && shared.remainder.is_none() {
            shared.missed = false;
            let last = slot.last.load(Ordering::Relaxed);
            if let Some(snapshot) = latest.filter(|s| s.seq != last) {
                let now = self.fanout.millis(Instant::now());
                let ping = self.fanout.plan(slot, self.position, snapshot.seq, now);
                if ping == Ping::Overdue {
                    shared.ping_timeout = true;
                    return Step::PingTimeout;
                }
                slot.last.store(snapshot.seq, Ordering::Relaxed);
                if ping == Ping::Due {
                    slot.pinged.store(now, Ordering::Relaxed);
                }
                let deflates = slot.deflates(snapshot.json().len());
                shared.remainder = Some(frame_of(snapshot, deflates, ping == Ping::Due));
            }
        }
        if shared.writing || shared.remainder.is_some() {
            Step::Flush
        } else {
            self.release_if_idle(&shared);
            Step::Idle
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut members = lock(&self.fanout.members);
        let slot = self.slot();
        slot.owner.store(FREE, Ordering::Relaxed);
        slot.fd.store(-1, Ordering::Relaxed);
        slot.pinged.store(0, Ordering::Relaxed);
        *lock(&self.session().shared) = Shared::default();
        members.free.push(self.position);
        members.count -= 1;
        if members.count == 0 {
            // Everyone left: give back what a burst of clients grew.
            members.blocks = Vec::new();
            members.free = Vec::new();
        }
    }
}

/// One non-blocking `send(2)` of `frame` to `fd`.
fn send(fd: RawFd, frame: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `fd` is the session's open socket: the broadcaster sends only while it has
        // the slot marked `SENDING`, and the session's `Gate` marks it closed (waiting out a
        // send) before the descriptor can be closed. The buffer is valid for `frame.len()`
        // bytes.
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
/// holds the slot and goes after the document remainder the broadcaster left; the slot goes
/// back to the broadcaster once a flush leaves nothing pending. Dropping it closes the slot
/// before the descriptor closes.
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
        self.member.hold(true);
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
        this.member.hold(false);
        let mut shared = lock(&this.member.session().shared);
        shared.writing = true;
        ready!(Self::drain(&mut this.io, &mut shared, cx))?;
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut shared = lock(&this.member.session().shared);
        // A remainder exists only while the slot is held, so this never races a send.
        ready!(Self::drain(&mut this.io, &mut shared, cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        shared.writing = false;
        this.member.release_if_idle(&shared);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Closing: the broadcaster writes no more.
        this.member.hold(true);
        let mut shared = lock(&this.member.session().shared);
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

    fn shared(member: &Member) -> MutexGuard<'_, Shared> {
        lock(&member.session().shared)
    }

    /// A fan-out that never pings.
    fn unpinged() -> Arc<Fanout> {
        Arc::new(Fanout::new(Pings {
            every: u64::MAX,
            timeout: Duration::MAX,
        }))
    }

    fn owner(member: &Member) -> u32 {
        member.slot().owner.load(Ordering::Relaxed)
    }

    /// What the broadcaster does for this member's slot.
    fn offer(member: &Member, frame: &[u8], seq: u64) {
        let frame = Bytes::copy_from_slice(frame);
        if member.slot().last.load(Ordering::Relaxed) != seq {
            member.block.offer(member.index, &frame, seq, None);
        }
    }

    /// The broadcaster writes a whole frame once per snapshot, stands back while the session
    /// holds the socket (the document is then the session's to send), and leaves the end of
    /// a frame the socket could not take to the session.
    #[test]
    fn the_broadcaster_writes_whole_frames_or_hands_them_over() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let fanout = unpinged();
        let member = &fanout.join(Some(ours.as_raw_fd()), None);
        assert_eq!(
            owner(member),
            HELD,
            "the session sends the first document itself"
        );
        assert!(matches!(member.next_step(None), Step::Idle));
        assert_eq!(owner(member), OPEN);

        offer(member, b"first", 1);
        offer(member, b"first again", 1);
        let mut got = [0u8; 16];
        let n = theirs.read(&mut got).unwrap();
        assert_eq!(&got[..n], b"first", "once per snapshot");
        assert_eq!(owner(member), OPEN);

        member.hold(false);
        offer(member, b"second", 2);
        assert!(shared(member).missed);
        assert_eq!(
            member.slot().last.load(Ordering::Relaxed),
            1,
            "not written while held"
        );
        assert!(matches!(member.next_step(None), Step::Idle));
        assert_eq!(owner(member), OPEN, "given back once nothing is pending");

        // More than a socket buffer takes at once: the rest is the session's.
        let big = vec![b'x'; 4 << 20];
        offer(member, &big, 3);
        let remainder = shared(member).remainder.clone().expect("a remainder");
        assert!(!remainder.is_empty() && remainder.len() < big.len());
        assert_eq!(owner(member), HELD);
        offer(member, b"next", 4);
        assert!(shared(member).missed, "nothing written after half a frame");
    }

    /// The session's own bytes (a ping) go after the remainder of a document, and the
    /// broadcaster is held off until the session has flushed them.
    #[tokio::test]
    async fn a_remainder_goes_before_the_sessions_own_bytes() {
        let fanout = unpinged();
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let member = fanout.join(Some(ours.as_raw_fd()), None);
        let (mut client, server) = tokio::io::duplex(64);
        let mut gate = Gate::new(server, member.clone());
        {
            let mut s = shared(&member);
            s.missed = false;
            s.remainder = Some(Bytes::from_static(b"end of a document|"));
        }
        gate.write_all(b"ping").await.unwrap();
        assert!(shared(&member).writing, "mid-frame until flushed");
        assert_eq!(owner(&member), HELD);
        gate.flush().await.unwrap();
        assert!(!shared(&member).writing);
        assert!(shared(&member).remainder.is_none());
        assert_eq!(owner(&member), OPEN, "the broadcaster's again");
        drop(gate);
        assert_eq!(
            owner(&member),
            HELD | CLOSED,
            "closed before the descriptor"
        );
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"end of a document|ping");
    }

    /// A session that holds its slot while the broadcaster sends waits out the send, and the
    /// two never write at once: every byte on the wire belongs to a whole frame.
    #[test]
    fn the_session_waits_out_a_send_in_progress() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let fanout = unpinged();
        let member = fanout.join(Some(ours.as_raw_fd()), None);
        assert!(matches!(member.next_step(None), Step::Idle));
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            theirs.read_to_end(&mut all).unwrap();
            all
        });
        let broadcaster = {
            let member = member.clone();
            std::thread::spawn(move || {
                for seq in 1..=20_000 {
                    offer(&member, b"[document]", seq);
                    // A document that found the slot held is dropped here; the session
                    // would send the latest one.
                    lock(&member.session().shared).missed = false;
                }
            })
        };
        let fd = ours.as_raw_fd();
        let write_all = |mut bytes: &[u8]| {
            while !bytes.is_empty() {
                match send(fd, bytes) {
                    Ok(n) => bytes = &bytes[n..],
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                    Err(err) => panic!("{err}"),
                }
            }
        };
        for _ in 0..20_000 {
            member.hold(false);
            assert_eq!(owner(&member) & (HELD | SENDING), HELD);
            // As the Gate does: the end of a document first, then the session's own bytes.
            let mut shared = shared(&member);
            if let Some(rest) = shared.remainder.take() {
                write_all(&rest);
            }
            write_all(b"<own>");
            shared.missed = false;
            member.release_if_idle(&shared);
        }
        broadcaster.join().unwrap();
        member.hold(true);
        drop(ours);
        let all = reader.join().unwrap();
        let mut rest = &all[..];
        let (mut documents, mut own) = (0, 0);
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix(b"[document]") {
                documents += 1;
                rest = r;
            } else if let Some(r) = rest.strip_prefix(b"<own>") {
                own += 1;
                rest = r;
            } else {
                panic!(
                    "interleaved bytes: {:?}",
                    String::from_utf8_lossy(&rest[..20.min(rest.len())])
                );
            }
        }
        assert_eq!(own, 20_000);
        assert!(documents > 0, "the broadcaster got the socket sometimes");
    }

    /// With a 20 s ping interval at 1 Hz each client is pinged once every 20 snapshots, and
    /// each snapshot pings a twentieth of the clients, not all of them at once.
    #[test]
    fn pings_are_spread_evenly_over_the_ping_interval() {
        let pings = Pings::new(
            Duration::from_secs(1),
            Duration::from_secs(20),
            Duration::from_secs(20),
        );
        assert_eq!(pings.every, 20);
        for seq in 1..=40u64 {
            let due = (0..500).filter(|&p| pings.due(p, seq)).count();
            assert_eq!(due, 25, "snapshot {seq}");
        }
        for position in 0..500 {
            let due = (1..=40u64).filter(|&s| pings.due(position, s)).count();
            assert_eq!(due, 2, "slot {position}");
        }
        // Rounded to whole intervals, never less than one.
        let fast = Duration::from_millis(100);
        assert_eq!(
            Pings::new(Duration::from_secs(2), Duration::from_secs(5), fast).every,
            3
        );
        assert_eq!(Pings::new(Duration::from_secs(2), fast, fast).every, 1);
    }

    /// A due client gets the document with an empty ping after it, in one write; no second
    /// ping goes out while one is unanswered; a pong answers it; a ping unanswered for the
    /// timeout ends the session, on the broadcaster's pass or the session's own catch-up.
    #[test]
    fn pings_ride_the_document_and_an_unanswered_one_times_out() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let fanout = Arc::new(Fanout::new(Pings {
            every: 1,
            timeout: Duration::from_millis(300),
        }));
        let member = fanout.join(Some(ours.as_raw_fd()), None);
        let document = crate::stats::wire_golden::document();
        let first = Snapshot::for_tests(1, document.clone());
        // The session sends its first document itself: with a ping, as it is due.
        assert!(matches!(member.next_step(Some(&first)), Step::Flush));
        let remainder = shared(&member).remainder.take().unwrap();
        assert_eq!(&remainder[..remainder.len() - 2], &first.frame()[..]);
        assert_eq!(&remainder[remainder.len() - 2..], &PING);
        assert!(matches!(member.next_step(Some(&first)), Step::Idle));
        assert_eq!(owner(&member), OPEN);

        // Unanswered and not yet overdue: the next document goes alone.
        let second = Snapshot::for_tests(2, document.clone());
        fanout.deliver(&second);
        let frame = second.frame();
        let mut got = vec![0u8; frame.len()];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(got, frame);

        // Answered: the next one carries a ping again.
        member.ponged();
        let third = Snapshot::for_tests(3, document.clone());
        fanout.deliver(&third);
        let mut got = vec![0u8; third.frame().len() + 2];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got[..got.len() - 2], &third.frame()[..]);
        assert_eq!(&got[got.len() - 2..], &PING);
        assert!(member.slot().pinged.load(Ordering::Relaxed) != 0);

        // Left unanswered past the timeout: no document, the session is told to end.
        std::thread::sleep(Duration::from_millis(350));
        let fourth = Snapshot::for_tests(4, document.clone());
        fanout.deliver(&fourth);
        assert!(shared(&member).ping_timeout);
        assert!(matches!(member.next_step(Some(&fourth)), Step::PingTimeout));
        theirs.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        assert!(theirs.read(&mut byte).is_err(), "nothing more was written");

        // A session whose documents go through its own catch-up (a TLS client) is timed out
        // there as well.
        let tls = fanout.join(None, None);
        assert!(matches!(tls.next_step(Some(&first)), Step::Flush));
        shared(&tls).remainder = None;
        assert!(tls.slot().pinged.load(Ordering::Relaxed) != 0);
        std::thread::sleep(Duration::from_millis(350));
        shared(&tls).missed = true;
        assert!(matches!(tls.next_step(Some(&second)), Step::PingTimeout));
    }

    /// Slots are reused lowest first, and the blocks go when everyone has left.
    #[test]
    fn slots_are_reused_and_blocks_given_back() {
        let fanout = unpinged();
        let members: Vec<_> = (0..BLOCK_SLOTS + 1)
            .map(|_| fanout.join(None, Some(15)))
            .collect();
        assert_eq!(lock(&fanout.members).blocks.len(), 2);
        let positions: Vec<_> = members.iter().map(|m| m.position).collect();
        assert_eq!(positions, (0..BLOCK_SLOTS + 1).collect::<Vec<_>>());
        let mut members = members;
        let third = members.remove(2);
        drop(third);
        let again = fanout.join(None, None);
        assert_eq!(again.position, 2, "the freed slot, not a new one");
        assert_eq!(again.slot().window_bits.load(Ordering::Relaxed), 0);
        drop(again);
        drop(members);
        let left = lock(&fanout.members);
        assert_eq!(left.count, 0);
        assert!(left.blocks.is_empty() && left.free.is_empty());
    }
}
