//! One endpoint, two kinds of client: a browser gets pages, a program gets JSON. Each
//! endpoint has a page handler and a JSON handler, each reading its own submission
//! ([`crate::web::submission`]), calling the capability's use case and answering in its
//! own words; the one choice between them is made here, for every endpoint alike.
//!
//! [`form_or_json`] picks by what was submitted (a form or a JSON body), [`html_or_json`]
//! by what the client accepts (for the reads, which submit nothing).

use crate::web::page::is_form;
use crate::web::state::AppState;
use axum::extract::Request;
use axum::handler::Handler;
use axum::response::Response;
use futures_util::future::Either;
use latchkey::axum::wants_html;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

/// The endpoint that answers a form with `page` and anything else with `json` (which
/// refuses what is not JSON, 415, and what another site sent, 403).
pub fn form_or_json<P, TP, J, TJ>(page: P, json: J) -> ByKind<P, TP, J, TJ> {
    ByKind::new(page, json, Pick::Submitted)
}

/// The endpoint that answers a browser (it accepts HTML) with `page` and anything else
/// with `json`.
pub fn html_or_json<P, TP, J, TJ>(page: P, json: J) -> ByKind<P, TP, J, TJ> {
    ByKind::new(page, json, Pick::Accepted)
}

/// What decides between the page and the JSON handler.
#[derive(Clone, Copy)]
enum Pick {
    /// The request body's content type: a form gets the page.
    Submitted,
    /// The `Accept` header: a browser gets the page.
    Accepted,
}

/// A page handler and a JSON handler served as one endpoint ([`form_or_json`],
/// [`html_or_json`]).
pub struct ByKind<P, TP, J, TJ> {
    page: P,
    json: J,
    pick: Pick,
    _handlers: PhantomData<fn() -> (TP, TJ)>,
}

impl<P, TP, J, TJ> ByKind<P, TP, J, TJ> {
    fn new(page: P, json: J, pick: Pick) -> Self {
        ByKind {
            page,
            json,
            pick,
            _handlers: PhantomData,
        }
    }
}

impl<P: Clone, TP, J: Clone, TJ> Clone for ByKind<P, TP, J, TJ> {
    fn clone(&self) -> Self {
        ByKind::new(self.page.clone(), self.json.clone(), self.pick)
    }
}

impl<P, TP, J, TJ> Handler<(), AppState> for ByKind<P, TP, J, TJ>
where
    P: Handler<TP, AppState>,
    J: Handler<TJ, AppState>,
    TP: 'static,
    TJ: 'static,
{
    /// The page's future is boxed: it is large (a template render), and the JSON answer,
    /// the hot path of programs, should not carry its size.
    type Future = Either<Pin<Box<dyn Future<Output = Response> + Send>>, J::Future>;

    fn call(self, request: Request, app: AppState) -> Self::Future {
        let page = match self.pick {
            Pick::Submitted => is_form(request.headers()),
            Pick::Accepted => wants_html(request.headers()),
        };
        if page {
            Either::Left(Box::pin(self.page.call(request, app)))
        } else {
            Either::Right(self.json.call(request, app))
        }
    }
}
