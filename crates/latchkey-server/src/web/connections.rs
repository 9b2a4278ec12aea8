//! The serve loop: how long a client may take and how many connections are served at
//! once (issue 15, item 4). Per connection:
//!
//! * **idle**: from the end of one answer (or the connection's opening) to the first byte
//!   of the next request (`--connection-idle-timeout`); a client that does not read its
//!   answer is cut after the same time;
//! * **headers**: from a request's first byte to the end of its headers
//!   (`--header-read-timeout`): a half request line or headers dribbled byte by byte do
//!   not hold the connection;
//! * **body**: a request's whole body must arrive within `--body-read-timeout` of its
//!   headers; after that reading it fails, the answer is a 408 and the connection closes;
//! * a declared `Content-Length` above [`MAX_BODY_BYTES`] is refused with a 413 at once,
//!   without waiting for the body.
//!
//! At most `--max-connections` connections are served; one more is answered a 503 and
//! closed at once, never left waiting.

use crate::web::headers;
use crate::web::state::MAX_BODY_BYTES;
use axum::body::Body as AxumBody;
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::Response;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{sleep_until, Instant, Sleep};

/// Descriptors kept for everything but client connections (database and Redis pools,
/// the listener, log and key files) when `--max-connections` is derived from the
/// process's open-file limit.
pub const DESCRIPTOR_HEADROOM: u64 = 128;

/// The fewest connections the derived default allows, however low the file limit.
const MIN_DEFAULT_CONNECTIONS: u64 = 16;

/// The open-file limit assumed where the process's cannot be read.
const ASSUMED_FILE_LIMIT: u64 = 1024;

/// How long a client may take, and how many connections are served at once.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From a request's first byte to the end of its headers.
    pub header_read: Duration,
    /// From the end of a request's headers to the end of its body.
    pub body_read: Duration,
    /// From the end of an answer (or the connection's opening) to the next request.
    pub idle: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Whether the refusals made here carry HSTS (an https public URL).
    pub hsts: bool,
}

/// The default of `--max-connections`: the process's open-file limit (the soft
/// `RLIMIT_NOFILE`, from `/proc/self/limits`; 1024 where it cannot be read) less
/// [`DESCRIPTOR_HEADROOM`], and at least 16. Returns the limit it started from too.
pub fn default_max_connections() -> (usize, u64) {
    let file_limit = open_file_limit().unwrap_or(ASSUMED_FILE_LIMIT);
    let connections = file_limit
        .saturating_sub(DESCRIPTOR_HEADROOM)
        .max(MIN_DEFAULT_CONNECTIONS);
    (
        usize::try_from(connections).unwrap_or(usize::MAX),
        file_limit,
    )
}

/// The soft open-file limit from `/proc/self/limits` (Linux), `None` elsewhere or when
/// unlimited or unreadable.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Serves `listener` until `shutdown` completes, then lets the open connections finish.
/// `service_for` makes the service of one connection from its peer's address.
pub async fn serve<S, M>(
    listener: TcpListener,
    limits: ConnectionLimits,
    service_for: M,
    shutdown: impl Future<Output = ()>,
) where
    M: Fn(SocketAddr) -> S,
    S: tower::Service<Request<AxumBody>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let busy = busy_answer(limits.hsts);
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The header timeout is ours (see `Watched`): hyper's would also count the idle
    // time before a request.
    builder.header_read_timeout(None).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // One write to a fresh socket's empty buffer, never a wait; then close.
            let _ = stream.try_write(&busy);
            // Anyone can cause this: logged within a budget.
            latchkey::audit_refusal!("connection_refused", peer = %peer, max = limits.max_connections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let clock = Arc::new(Clock::new(limits));
        let io = TokioIo::new(Watched {
            stream,
            clock: clock.clone(),
            sleep: None,
        });
        let service = Deadlines {
            inner: service_for(peer),
            clock,
            limits,
        };
        let connection = builder.serve_connection(io, TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection closed");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The raw answer to a connection over the limit: a JSON 503 with the security headers.
fn busy_answer(hsts: bool) -> Vec<u8> {
    let body = br#"{"error":"too many connections; try again shortly"}"#;
    let response = headers::secure(
        headers::json_body(StatusCode::SERVICE_UNAVAILABLE, body.to_vec()),
        hsts,
    );
    let mut raw =
        b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\n".to_vec();
    for (name, value) in response.headers() {
        raw.extend_from_slice(name.as_str().as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
    raw
}

/// Where a connection stands, and so which deadline applies to it.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request's first byte until then.
    Idle(Instant),
    /// Reading a request's headers until then.
    Headers(Instant),
    /// A request is being answered (its body has its own deadline).
    Answering,
}

/// One connection's [`Phase`], shared by its socket and its service.
struct Clock {
    phase: Mutex<Phase>,
    limits: ConnectionLimits,
}

impl Clock {
    fn new(limits: ConnectionLimits) -> Self {
        Clock {
            phase: Mutex::new(Phase::Idle(Instant::now() + limits.idle)),
            limits,
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes came in: an idle connection starts reading a request's headers.
    fn bytes_arrived(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Headers(Instant::now() + self.limits.header_read);
        }
    }

    fn request_started(&self) {
        *self.phase() = Phase::Answering;
    }

    fn request_answered(&self) {
        *self.phase() = Phase::Idle(Instant::now() + self.limits.idle);
    }

    /// When the connection is cut unless something happens first.
    fn deadline(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Idle(until) | Phase::Headers(until) => Some(until),
            Phase::Answering => None,
        }
    }
}

/// A client socket that fails with `TimedOut` once its [`Clock`]'s deadline passes
/// while it waits to read or write.
struct Watched {
    stream: TcpStream,
    clock: Arc<Clock>,
    /// Made on the first wait, then reset: one allocation per connection.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Watched {
    /// `Pending`, or the `TimedOut` error once the deadline passed.
    fn wait_or_time_out<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some(until) = self.clock.deadline() else {
            return Poll::Pending;
        };
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(sleep_until(until)));
        if sleep.deadline() != until {
            sleep.as_mut().reset(until);
        }
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client took too long",
        )))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.clock.bytes_arrived();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => self.wait_or_time_out(cx),
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Pending => self.wait_or_time_out(cx),
            done => done,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.stream).poll_flush(cx) {
            Poll::Pending => self.wait_or_time_out(cx),
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.wait_or_time_out(cx),
            done => done,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// One connection's service: refuses a declared body over [`MAX_BODY_BYTES`] at once,
/// gives every request body its deadline, and keeps the connection's [`Clock`].
#[derive(Clone)]
struct Deadlines<S> {
    inner: S,
    clock: Arc<Clock>,
    limits: ConnectionLimits,
}

impl<S> tower::Service<Request<Incoming>> for Deadlines<S>
where
    S: tower::Service<Request<AxumBody>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        self.clock.request_started();
        let answered = Answered(self.clock.clone());
        if declared_length(&request).is_some_and(|length| length > MAX_BODY_BYTES as u64) {
            let mut refusal = headers::secure(
                headers::json(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &serde_json::json!({
                        "error": format!("request body is larger than {MAX_BODY_BYTES} bytes")
                    }),
                ),
                self.limits.hsts,
            );
            refusal
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            return Answer {
                inner: None,
                refusal: Some(refusal),
                _answered: answered,
            };
        }
        let deadline = Instant::now() + self.limits.body_read;
        let request = request.map(|body| {
            AxumBody::new(TimedBody {
                inner: body,
                deadline,
                limit: self.limits.body_read,
                sleep: None,
            })
        });
        Answer {
            inner: Some(self.inner.call(request)),
            refusal: None,
            _answered: answered,
        }
    }
}

/// The `Content-Length` a request declares, if it declares a readable one.
fn declared_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Marks the request answered (the connection idle again) when dropped: once hyper has
/// the answer, or if the request is abandoned.
struct Answered(Arc<Clock>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.request_answered();
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`Deadlines`]: the inner service's, or the refusal made at once.
    struct Answer<F> {
        #[pin]
        inner: Option<F>,
        refusal: Option<Response>,
        _answered: Answered,
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(refusal) = this.refusal.take() {
            return Poll::Ready(Ok(refusal));
        }
        match this.inner.as_pin_mut() {
            Some(inner) => inner.poll(cx),
            // Only after the refusal was handed out: nothing more to answer.
            None => Poll::Pending,
        }
    }
}

/// A request body that fails with [`BodyTimedOut`] once its deadline passes.
struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    limit: Duration,
    /// Made only if the body is ever waited for.
    sleep: Option<Pin<Box<Sleep>>>,
}

/// The request body did not arrive within `--body-read-timeout`.
#[derive(Debug)]
pub struct BodyTimedOut(pub Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} s",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyTimedOut {}

impl Body for TimedBody {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(axum::BoxError::from)));
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.limit)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_connection_limit_leaves_headroom_below_the_file_limit() {
        let (connections, file_limit) = default_max_connections();
        assert!(connections as u64 >= MIN_DEFAULT_CONNECTIONS);
        if file_limit > DESCRIPTOR_HEADROOM + MIN_DEFAULT_CONNECTIONS {
            assert_eq!(connections as u64, file_limit - DESCRIPTOR_HEADROOM);
        }
    }

    #[test]
    fn the_busy_answer_is_a_complete_json_503() {
        let raw = String::from_utf8(busy_answer(true)).expect("text");
        assert!(raw.starts_with("HTTP/1.1 503 "));
        let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
        assert!(head.contains("x-content-type-options: nosniff"));
        assert!(head.contains("strict-transport-security: "));
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }
}
