//! The HTTP surface: the server-rendered dashboard and its server functions,
//! the site's static files (`site.rs`), the JSON API (`sessions.rs`, and
//! the workspace's files in `files.rs`), the two event streams
//! (`events.rs`, `updates.rs`), terminals over WebSockets
//! (`terminals.rs`), agent templates' triggers (`triggers.rs`) and the
//! deliveries to them (`hooks.rs`), sign-in's form posts (`auth.rs`), the
//! metrics (`metrics.rs`) and the health probes (`probes.rs`), every route
//! but the probes behind the [`request_guard`], the one door that checks
//! host, origin and caller.
//! Handlers take what they need through the [`extract`]ors (the caller's
//! [`Identity`](crate::auth::Identity) first) and fail with the one
//! [`error`] type.

mod access_watch;
mod auth;
mod body_deadline;
mod changes;
pub mod client_address;
pub mod error;
mod events;
pub mod extract;
mod files;
mod frames;
mod hooks;
mod live;
mod metrics;
mod notifications;
mod probes;
pub mod request_guard;
pub mod routes;
mod sessions;
mod site;
mod templates;
pub mod terminals;
mod triggers;
mod updates;

use crate::config::Config;
use crate::paddock::Paddock;
use app::api::SharedBackend;
use app::domain::AppError;
use app::{shell, App};
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use request_guard::{Door, RequestGuard};
use routes::Routes;
use std::sync::{Arc, OnceLock};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

/// Largest request body accepted (a prompt may be up to 1 MiB).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Largest body of a dashboard request: a server function's arguments,
/// form-encoded, where a byte may take three (`%E6`). The largest argument
/// (a template file, 1.5 MiB; a prompt, 1 MiB) fits whole, so that one
/// within its limit is refused by nothing but its own check.
const DASHBOARD_BODY_LIMIT: usize = 3 * app::agents::TEMPLATE_FILE_MAX_BYTES + 512 * 1024;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos: LeptosOptions,
    pub paddock: Arc<Paddock>,
}

impl AppState {
    /// Builds the state from configuration; Leptos' own settings (site root,
    /// output name) come from the `LEPTOS_*` environment that cargo-leptos
    /// sets, falling back to the workspace's metadata.
    pub async fn new(config: &Config) -> anyhow::Result<Self> {
        let leptos = leptos::config::get_configuration(None)?.leptos_options;
        Self::with_options(config, leptos).await
    }

    /// Opens Paddock's services and recovers from the previous run before
    /// any request is served.
    pub async fn with_options(config: &Config, leptos: LeptosOptions) -> anyhow::Result<Self> {
        let paddock = Paddock::open(config.clone()).await?;
        paddock.recover().await?;
        let paddock = Arc::new(paddock);
        crate::triggers::schedule::spawn(&paddock);
        crate::notifications::sender::spawn(&paddock);
        Ok(Self { leptos, paddock })
    }
}

pub fn router(state: AppState) -> Router {
    let backend: SharedBackend = state.paddock.clone();
    let config = &state.paddock.config;
    let door = Arc::new(Door {
        guard: RequestGuard::new(config),
        auth: state.paddock.auth.clone(),
        stall: config.client_stall(),
    });
    let browser_sessions = state.paddock.auth.session_layer(config.https());
    let own = OwnRoutes::new();
    Router::new()
        .leptos_routes_with_context(
            &state,
            route_list(),
            {
                let backend = backend.clone();
                move || provide_context(backend.clone())
            },
            {
                let options = state.leptos.clone();
                move || shell(options.clone())
            },
        )
        .fallback(site::files(backend, state.leptos.clone()))
        .layer(DefaultBodyLimit::max(DASHBOARD_BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(DASHBOARD_BODY_LIMIT))
        .layer(axum::middleware::map_response(too_large_for_the_dashboard))
        // The JSON API, after the limit layers: it enforces its own limit
        // (BODY_LIMIT) and answers in JSON.
        .merge(own.behind_the_door.into_router())
        // Every route above, and the fallback, behind the door: host,
        // origin and sign-in. The probes below are not, as platforms probe
        // with hosts of their own and without credentials; they reveal and
        // change nothing.
        .layer(axum::middleware::from_fn_with_state(
            door,
            request_guard::check,
        ))
        .layer(browser_sessions)
        .merge(own.probes.into_router())
        // A body that sends nothing for this long is given up (a 400 for
        // the handler reading it), freeing what its request holds.
        .layer(axum::middleware::from_fn_with_state(
            Arc::from(config.trusted_proxies.as_slice()),
            client_address::mark,
        ))
        .layer(RequestBodyTimeoutLayer::new(config.client_stall()))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        // A request id (the caller's `x-request-id`, else a new one) on the
        // request, its answer and its log lines.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::map_request(plain_request_id))
        .layer(axum::middleware::map_response(hardened))
        .with_state(state)
}

/// What every answer says unless it said it itself: no other site frames a
/// page of Paddock's (to steer clicks on its buttons), no answer is read
/// as another type than it says, no address of Paddock's (a session's id)
/// goes to another site as the referrer, and no answer (a person's
/// sessions, a transcript) is kept by a cache on the way, which would hand
/// it to the next caller of its address, nor by the browser after it is
/// read (the site's own files say how they are kept).
async fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    // Beside a page's own policy, which says what scripts it may run
    // (`app::shell`): a browser holds to each.
    headers.append(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'; object-src 'none'; base-uri 'none'"),
    );
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "private, no-store"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// The limit's refusal of a body over [`DASHBOARD_BODY_LIMIT`] (plain
/// text) as the dashboard's server functions answer errors, so that the
/// page says why.
async fn too_large_for_the_dashboard(response: Response) -> Response {
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/plain"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || !plain {
        return response;
    }
    let error = AppError::TooLarge(format!(
        "A request to Paddock is at most {} MiB.",
        DASHBOARD_BODY_LIMIT / 1024 / 1024
    ));
    (StatusCode::PAYLOAD_TOO_LARGE, Json(error)).into_response()
}

/// A caller's `x-request-id` is kept only when it is a plain token (1 to
/// 64 letters, digits, `.`, `_` or `-`); any other is replaced by a new
/// one, so that an id cannot forge fields of a log line.
async fn plain_request_id(mut request: axum::extract::Request) -> axum::extract::Request {
    let plain = request.headers().get("x-request-id").is_none_or(|id| {
        (1..=64).contains(&id.len())
            && id
                .as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
    });
    if !plain {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// The span of one request: its id, method and path (not its query, which
/// may hold a setup token).
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// Whether a request is a browser's form post (it asks for a page back),
/// to be sent back to the page it came from rather than answered in JSON.
fn wants_html(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The routes the server adds itself, beside the dashboard's pages and
/// server functions: one list, which [`router`] serves and [`all_routes`]
/// tells.
struct OwnRoutes {
    /// The JSON API, its event streams and sign-in's forms.
    behind_the_door: Routes,
    probes: Routes,
}

impl OwnRoutes {
    fn new() -> Self {
        Self {
            behind_the_door: sessions::routes()
                .merge(templates::routes())
                .merge(files::routes())
                .merge(changes::routes())
                .merge(terminals::routes())
                .merge(triggers::routes())
                .merge(hooks::routes())
                .merge(notifications::routes())
                .merge(events::routes())
                .merge(updates::routes())
                .merge(live::routes())
                .merge(metrics::routes())
                .merge(auth::routes()),
            probes: probes::routes(),
        }
    }
}

/// Every route the server has, with its method: the pages, the server
/// functions, the JSON API and forms, and the probes. Paths keep their
/// `{param}` placeholders.
pub fn all_routes() -> Vec<(Method, String)> {
    let pages = route_list().into_iter().flat_map(|r| {
        let path = r.path().to_owned();
        r.methods()
            .map(move |m| (page_method(m), path.clone()))
            .collect::<Vec<_>>()
    });
    let server_fns = leptos::server_fn::axum::server_fn_paths().map(|(p, m)| (m, p.to_owned()));
    let own = OwnRoutes::new();
    let listed = own
        .behind_the_door
        .listed()
        .iter()
        .chain(own.probes.listed())
        .map(|(m, p)| (m.clone(), (*p).to_owned()))
        .collect::<Vec<_>>();
    pages.chain(server_fns).chain(listed).collect()
}

fn page_method(m: leptos_router::Method) -> Method {
    match m {
        leptos_router::Method::Get => Method::GET,
        leptos_router::Method::Post => Method::POST,
        leptos_router::Method::Put => Method::PUT,
        leptos_router::Method::Delete => Method::DELETE,
        leptos_router::Method::Patch => Method::PATCH,
    }
}

/// The dashboard's routes, discovered once per process. Discovery renders the
/// app with resource loading suppressed process-wide (leptos issue 4773), so
/// it must never overlap a real render: every router is built from this one
/// list, and no render can start before the first router exists.
fn route_list() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}
