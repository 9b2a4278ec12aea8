//! The throttle on guessed bearer tokens: a tower service around the auth layer, which
//! marks the answers to requests whose bearer token it refused.

use crate::web::json::ApiError;
use crate::web::throttling::with_retry_after;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::AUTHORIZATION;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use latchkey::auth::RefusedBearer;
use latchkey::throttle::{Throttle, Verdict};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Most addresses this process remembers as waiting; past it the expired ones go, then
/// all.
const MAX_WAITING: usize = 100_000;

/// The throttle on guessed bearer tokens, around the auth layer. A request whose token
/// the auth layer refused as no good (malformed, unknown, expired, revoked:
/// [`RefusedBearer`] on its answer) counts toward its address's hourly allowance, in the
/// throttle store every process shares. The refusal that uses it up is answered 429, and
/// from then on this process answers every bearer request from that address 429
/// (`Retry-After`) before anything is looked up, from memory: a bearer request costs no
/// throttle read, and another process learns of the wait at its own next refusal from
/// that address. Requests without an `Authorization` header pass straight through, with
/// no allocation.
#[derive(Clone)]
pub struct BearerThrottle<S> {
    inner: S,
    throttle: Throttle,
    waiting: Arc<Mutex<HashMap<IpAddr, Instant>>>,
}

impl<S> BearerThrottle<S> {
    /// `inner` behind the bearer throttle of `throttle`.
    pub fn new(throttle: Throttle, inner: S) -> Self {
        BearerThrottle {
            inner,
            throttle,
            waiting: Arc::default(),
        }
    }
}

/// How long bearer requests from `ip` still wait, by this process's memory.
fn still_waiting(waiting: &Mutex<HashMap<IpAddr, Instant>>, ip: IpAddr) -> Option<Duration> {
    let waiting = waiting.lock().unwrap_or_else(|p| p.into_inner());
    let until = waiting.get(&ip)?;
    let left = until.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

/// Remembers that bearer requests from `ip` wait for `wait`.
fn start_waiting(waiting: &Mutex<HashMap<IpAddr, Instant>>, ip: IpAddr, wait: Duration) {
    let mut waiting = waiting.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    if waiting.len() >= MAX_WAITING {
        waiting.retain(|_, until| *until > now);
        if waiting.len() >= MAX_WAITING {
            waiting.clear();
        }
    }
    waiting.insert(ip, now + wait);
}

/// The 429 of a bearer request that must wait.
fn too_many(wait: Duration) -> Response {
    with_retry_after(ApiError::too_many(wait).into_response(), wait)
}

/// The future of a bearer request under [`BearerThrottle`].
type Throttled = std::pin::Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> tower::Service<Request<Body>> for BearerThrottle<S>
where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Throttled>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if !request.headers().contains_key(AUTHORIZATION) {
            return Either::Left(self.inner.call(request));
        }
        let ip = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        if let Some(wait) = ip.and_then(|ip| still_waiting(&self.waiting, ip)) {
            latchkey::audit_refusal!("bearer_throttled", ip = ?ip);
            return Either::Right(Box::pin(async move { Ok(too_many(wait)) }));
        }
        // The ready service answers this request; its clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (throttle, waiting) = (self.throttle.clone(), self.waiting.clone());
        Either::Right(Box::pin(async move {
            let response = inner.call(request).await?;
            let bad_token = response
                .extensions()
                .get::<RefusedBearer>()
                .is_some_and(|RefusedBearer(refusal)| refusal.is_bad_token());
            if !bad_token {
                return Ok(response);
            }
            match throttle.bearer_refused(ip).await {
                Ok(Verdict::Allow) => Ok(response),
                Ok(Verdict::Wait(wait)) => {
                    if let Some(ip) = ip {
                        start_waiting(&waiting, ip, wait);
                    }
                    latchkey::audit_refusal!("bearer_throttled", ip = ?ip);
                    Ok(too_many(wait))
                }
                Err(error) => {
                    tracing::warn!(%error, "a refused bearer token could not be counted");
                    Ok(response)
                }
            }
        }))
    }
}
