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
use latchkey::throttle::Throttle;
use latchkey::AuthError;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::task::{Context, Poll};

/// The throttle on guessed bearer tokens, around the auth layer: a request with an
/// `Authorization` header from an address that sent too many refused tokens this hour
/// gets 429 before anything is looked up; a request whose token the auth layer refused
/// ([`RefusedBearer`] on its answer) counts toward it. Requests without the header pass
/// straight through, with no allocation.
#[derive(Clone)]
pub struct BearerThrottle<S> {
    inner: S,
    throttle: Throttle,
}

impl<S> BearerThrottle<S> {
    /// `inner` behind the bearer throttle of `throttle`.
    pub fn new(throttle: Throttle, inner: S) -> Self {
        BearerThrottle { inner, throttle }
    }
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
        // The ready service answers this request; its clone waits for the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let throttle = self.throttle.clone();
        Either::Right(Box::pin(async move {
            let ip = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(address)| address.ip());
            match throttle.bearer_wait(ip).await {
                Ok(None) => {}
                Ok(Some(wait)) => {
                    latchkey::audit_refusal!("bearer_throttled", ip = ?ip);
                    let refused = ApiError::too_many(wait).into_response();
                    return Ok(with_retry_after(refused, wait));
                }
                Err(error) => return Ok(AuthError::from(error).into_response()),
            }
            let mut inner = inner;
            let response = inner.call(request).await?;
            if response.extensions().get::<RefusedBearer>().is_some() {
                if let Err(error) = throttle.bearer_refused(ip).await {
                    tracing::warn!(%error, "a refused bearer token could not be counted");
                }
            }
            Ok(response)
        }))
    }
}
