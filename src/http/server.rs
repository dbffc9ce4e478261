//! The HTTP/1.1 accept loop around the warp routes.
//!
//! pistats runs hyper itself rather than `warp::serve` for what warp's server does not offer:
//! connection caps checked before anything is read (globally, from the real file-descriptor
//! budget, and per client address), a header-read timeout (a client that opens a connection
//! and sends nothing, or a byte a minute, is cut off), a write deadline and an idle timeout
//! on every connection (a client that asks for files and never reads them is cut off too),
//! the raw upgrade handle (so each WebSocket gets buffers sized for thousands of clients
//! instead of tungstenite's 128 KiB default), and the peer address as a plain request
//! extension for the per-address limits. With TLS configured, each connection is a rustls
//! stream instead of the plain socket; nothing above notices.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admission::Full;
use super::{fanout, routes, AppState};

/// A client must send its complete request head within this time. It also bounds how long
/// a kept-alive connection may sit idle between requests.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection hyper owns on which no byte moved either way for this long is closed,
/// whatever it is waiting for (a request body trickling in, a stalled exchange).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head accepted; pistats' requests are tiny. This also bounds hyper's
/// read and write buffers per connection.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often the housekeeping task looks at the connection counts and the log budget while
/// there is something to look at (see [`housekeeping`]).
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(2);
/// Connections closed since the last trim after which freed heap is returned to the OS.
const TRIM_AFTER_RELEASED: usize = 256;

/// The connection's peer, inserted into every request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// Marks a request that arrived as `HEAD` and is routed as `GET` (hyper leaves the body out
/// of the response, as RFC 9110 requires, because it knows the original method).
#[derive(Clone, Copy, Debug)]
pub struct WasHead;

/// hyper's upgrade handle, made cloneable so a warp filter can extract it; taken once.
#[derive(Clone)]
pub struct PendingUpgrade(Arc<Mutex<Option<OnUpgrade>>>);

impl PendingUpgrade {
    pub fn take(&self) -> Option<OnUpgrade> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Serves `listener` until `state.listener_closed` fires, then waits for requests in flight
/// (WebSocket sessions are tracked separately, in `state.sessions`).
pub async fn serve(listener: TcpListener, state: Arc<AppState>) {
    let closed = state.listener_closed.clone();
    let accepted_one = Arc::new(Notify::new());
    let housekeeping = tokio::spawn(housekeeping(state.clone(), accepted_one.clone()));
    let broadcaster = tokio::spawn(fanout::run(
        state.fanout.clone(),
        state.hub.clone(),
        closed.clone(),
    ));
    let tls = state.tls.clone();
    let write_timeout = state.config.send_timeout;
    let service = TowerToHyperService::new(warp::service(routes(state.clone())));
    let connections = TaskTracker::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD);
    loop {
        let (stream, peer) = tokio::select! {
            _ = closed.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let slot = match state
            .connections
            .open(peer.ip(), state.hub.clients() as usize)
        {
            Ok(slot) => {
                // After the slot is taken, so housekeeping sees the connection open.
                accepted_one.notify_one();
                slot
            }
            Err(full) => {
                refuse(stream, full, tls.is_some());
                if state.client_log.allow() {
                    client_event!(
                        warn,
                        Some(peer),
                        "refused connection from {peer}: {}",
                        match full {
                            Full::Server => "connection limit reached",
                            Full::Address => "per-address connection limit reached",
                        }
                    );
                }
                accepted_one.notify_one();
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let stream = Guarded::new(stream, write_timeout, activity.clone());
        let service = service.clone();
        let per_request = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let head = request.method() == Method::HEAD;
            if head {
                *request.method_mut() = Method::GET;
            }
            let extensions = request.extensions_mut();
            extensions.insert(Peer(peer));
            if head {
                extensions.insert(WasHead);
            }
            if let Some(upgrade) = extensions.remove::<OnUpgrade>() {
                extensions.insert(PendingUpgrade(Arc::new(Mutex::new(Some(upgrade)))));
            }
            service.call(request)
        });
        let builder = builder.clone();
        let closed = closed.clone();
        let tls = tls.clone();
        let connection = async move {
            let _slot = slot;
            let result = match tls {
                None => drive(&builder, stream, per_request, &closed, &activity).await,
                // The handshake shares the header-read deadline: a client that opens a
                // connection and stays silent is cut off either way.
                Some(tls) => {
                    let handshake = tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream));
                    let stream = tokio::select! {
                        _ = closed.cancelled() => return,
                        done = handshake => match done {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(err)) => {
                                tracing::debug!("TLS handshake with {peer} failed: {err}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake with {peer} timed out");
                                return;
                            }
                        },
                    };
                    drive(&builder, stream, per_request, &closed, &activity).await
                }
            };
            if let Err(err) = result {
                tracing::debug!("connection from {peer}: {err}");
            }
        };
        connections.spawn(connection);
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    let _ = housekeeping.await;
    let _ = broadcaster.await;
}

/// Answers a connection over its limit without reading from it, and closes it. Over TLS no
/// plain-text answer is possible: the connection is just closed.
fn refuse(stream: TcpStream, full: Full, tls: bool) {
    if !tls {
        let answer: &[u8] = match full {
            Full::Server => {
                b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 10\r\n\
                Content-Length: 0\r\nConnection: close\r\n\r\n"
            }
            Full::Address => {
                b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 10\r\n\
                Content-Length: 0\r\nConnection: close\r\n\r\n"
            }
        };
        // A fresh socket's send buffer takes these few bytes at once; never wait for it.
        let _ = stream.try_write(answer);
    }
}

/// Work done every few seconds while the listener has clients: freed memory goes back to the
/// OS after a burst of connections, and suppressed client log lines are summarized.
///
/// With no connection open and no summary pending there is nothing to do until the next
/// accept (`accepted_one`), so an unwatched daemon's runtime is not woken for it; the first
/// round after an accept runs at once, as the periodic one would have within its period.
async fn housekeeping(state: Arc<AppState>, accepted_one: Arc<Notify>) {
    let mut ticks = tokio::time::interval(HOUSEKEEPING_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut released = 0;
    loop {
        // Looked at before the counts are taken: a connection that closes after this is
        // either taken below or still open here, so no release waits for the next accept.
        let quiet = state.connections.count() == 0
            && state.hub.clients() == 0
            && !state.client_log.pending();
        state.client_log.flush();
        released += state.connections.take_released() + state.admission.take_released();
        if released >= TRIM_AFTER_RELEASED {
            released = 0;
            let _ = tokio::task::spawn_blocking(release_free_memory).await;
        }
        if quiet {
            tokio::select! {
                _ = state.listener_closed.cancelled() => break,
                () = accepted_one.notified() => ticks.reset(),
            }
        } else {
            tokio::select! {
                _ = state.listener_closed.cancelled() => break,
                _ = ticks.tick() => {}
            }
        }
    }
    state.client_log.flush();
}

/// Returns the heap's free pages to the OS. glibc keeps memory freed by thousands of closed
/// connections in its arena for ever (RSS stays at the burst's peak); `malloc_trim` gives it
/// back. Other allocators return memory on their own.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// When a connection last moved a byte, in milliseconds since [`epoch`].
struct Activity(AtomicU64);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Activity {
    fn new() -> Activity {
        let activity = Activity(AtomicU64::new(0));
        activity.touch();
        activity
    }

    fn touch(&self) {
        let now = epoch().elapsed().as_millis() as u64;
        self.0.store(now, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        epoch() + Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

/// A plain connection as hyper is given it, and as a WebSocket session takes it back.
pub(super) type PlainStream = Guarded<TcpStream>;

/// A socket with a write deadline: a write (or flush) that makes no progress for
/// `write_timeout` fails with `TimedOut`, which ends the connection. It stays on the
/// socket after a WebSocket upgrade. Every byte moved is recorded in `activity`.
pub(super) struct Guarded<I> {
    io: I,
    write_timeout: Duration,
    /// Created the first time a write stalls: most connections never need it.
    stall: Option<Pin<Box<Sleep>>>,
    stalled: bool,
    activity: Arc<Activity>,
}

impl<I> Guarded<I> {
    fn new(io: I, write_timeout: Duration, activity: Arc<Activity>) -> Guarded<I> {
        Guarded {
            io,
            write_timeout,
            stall: None,
            stalled: false,
            activity,
        }
    }

    /// Passes a write's outcome on; a pending write arms the deadline, or fails once it
    /// has passed.
    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => {
                let deadline = Instant::now() + self.write_timeout;
                let stall = self
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !self.stalled {
                    self.stalled = true;
                    stall.as_mut().reset(deadline);
                }
                match stall.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client stopped reading (write deadline passed)",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.stalled = false;
                self.activity.touch();
                ready
            }
        }
    }
}

/// For the WebSocket broadcaster's writes, which go around the deadline: they never wait.
impl AsRawFd for Guarded<TcpStream> {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_raw_fd()
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        poll
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.check(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.check(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_shutdown(cx);
        this.check(cx, poll)
    }
}

/// Serves one connection (plain TCP or TLS) until it ends, it goes idle for
/// [`IDLE_TIMEOUT`], or it is upgraded; when the listener closes, the request in flight
/// finishes and the connection is not kept alive.
async fn drive<I, S>(
    builder: &http1::Builder,
    io: I,
    service: S,
    closed: &CancellationToken,
    activity: &Activity,
) -> hyper::Result<()>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let idle_until = activity.last() + IDLE_TIMEOUT;
        tokio::select! {
            result = connection.as_mut() => return result,
            _ = closed.cancelled(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(idle_until) => {
                if activity.last() + IDLE_TIMEOUT <= Instant::now() {
                    tracing::debug!("closing a connection idle for {IDLE_TIMEOUT:?}");
                    return Ok(());
                }
            }
        }
    }
}
