//! The HTTP surface: the server-rendered dashboard and its server functions,
//! static files, the JSON API (`sessions.rs`, and the workspace's files in
//! `files.rs`), the two event streams
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
mod changes;
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
mod templates;
pub mod terminals;
mod triggers;
mod updates;

use crate::config::Config;
use crate::paddock::Paddock;
use app::api::SharedBackend;
use app::{shell, App};
use axum::extract::FromRef;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use request_guard::{Door, RequestGuard};
use routes::Routes;
use std::sync::{Arc, OnceLock};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Largest request body accepted (a prompt may be up to 1 MiB).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

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
        .fallback(site_files(backend, state.leptos.clone()))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        // The JSON API, after the limit layer so that it enforces the same
        // limit itself and answers in JSON.
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
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        // A request id (the caller's `x-request-id`, else a new one) on the
        // request, its answer and its log lines.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::map_request(plain_request_id))
        .with_state(state)
}

/// The site's files, else the page-not-found page: the same shell as every
/// page, whose account menu and sidebar ask the same server functions,
/// rendered whole before it is sent as every page is. Every answer varies
/// with `Accept-Encoding`, so that a cache between keeps each copy of a
/// file for its own.
fn site_files(
    backend: SharedBackend,
    options: LeptosOptions,
) -> impl Fn(
    axum::extract::Request,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = axum::response::Response> + Send>>
       + Clone
       + Send
       + 'static {
    let files = tower_http::services::ServeDir::new(&*options.site_root)
        .precompressed_br()
        .precompressed_gzip()
        .append_index_html_on_directories(false);
    let not_found = leptos_axum::render_app_async_with_context(
        move || provide_context(backend.clone()),
        move || shell(options.clone()),
    );
    move |request| {
        let (files, not_found) = (files.clone(), not_found.clone());
        Box::pin(async move {
            // An authority alone (`CONNECT`'s target) names no file or page.
            if request.uri().path_and_query().is_none() {
                return axum::http::StatusCode::NOT_FOUND.into_response();
            }
            let (request, body) = request.into_parts();
            let mut answer = match site_file(files, &request).await {
                Some(file) => file,
                None => {
                    let request = axum::extract::Request::from_parts(request, body);
                    let mut page = not_found(request).await;
                    // A path the dashboard's router would still render
                    // (one with a trailing slash) is not a page either.
                    if page.status() == axum::http::StatusCode::OK {
                        *page.status_mut() = axum::http::StatusCode::NOT_FOUND;
                    }
                    page
                }
            };
            answer.headers_mut().append(
                axum::http::header::VARY,
                axum::http::HeaderValue::from_static("accept-encoding"),
            );
            answer
        })
    }
}

/// A file of the site (`LEPTOS_SITE_ROOT`), as its brotli or gzip copy to
/// a browser that accepts one (release builds make them), with its
/// `Last-Modified`. A browser must ask again before each use (`no-cache`),
/// so that no page of another release runs the bundle of this one that a
/// cache kept: its copy is a 304 without the body only when its time is
/// exactly the file's (not merely later: a release rolled back has older
/// files under the same names), so twenty tabs opened cost the bundle once;
/// and a part of a file (`Range`) is never given to complete a copy of
/// another time (`If-Range`: the whole file then). `HEAD` is answered too;
/// another method on a file is a 405. `None` when there is no such file: a
/// folder, an unknown or unreadable name, one no file can have (too long,
/// with a NUL).
async fn site_file(
    mut files: tower_http::services::ServeDir,
    request: &axum::http::request::Parts,
) -> Option<axum::response::Response> {
    use axum::http::{header, HeaderValue, StatusCode};
    use std::io::ErrorKind;
    let reading = matches!(request.method, Method::GET | Method::HEAD);
    let mut ask = axum::http::Request::new(axum::body::Body::empty());
    *ask.method_mut() = if reading {
        request.method.clone()
    } else {
        Method::HEAD
    };
    *ask.uri_mut() = request.uri.clone();
    let headers = ask.headers_mut();
    *headers = request.headers.clone();
    // The copy a browser holds, named by its time: ignored beside an entity
    // tag (no file here has one) or when given twice, as RFC 9110 says.
    let times: Vec<_> = headers.get_all(header::IF_MODIFIED_SINCE).iter().collect();
    let held = match times[..] {
        [time] if !headers.contains_key(header::IF_NONE_MATCH) => Some(time.clone()),
        _ => None,
    };
    headers.remove(header::IF_MODIFIED_SINCE);
    if headers.remove(header::IF_RANGE).is_some() {
        headers.remove(header::RANGE);
    }
    let answer = match files.try_call(ask).await {
        Ok(answer) if answer.status() == StatusCode::NOT_FOUND => return None,
        Ok(answer) => answer,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::InvalidFilename | ErrorKind::InvalidInput
            ) =>
        {
            return None
        }
        Err(e) => {
            tracing::error!(
                path = request.uri.path(),
                "a file of the site unreadable: {e}"
            );
            let refusal = "A file of the site cannot be read now.";
            return Some((StatusCode::SERVICE_UNAVAILABLE, refusal).into_response());
        }
    };
    if !reading {
        let allow = [(header::ALLOW, "GET, HEAD")];
        return Some((StatusCode::METHOD_NOT_ALLOWED, allow).into_response());
    }
    let modified = answer.headers().get(header::LAST_MODIFIED).cloned();
    let current = answer.status().is_success() && held.is_some() && held == modified;
    let mut answer = match modified {
        Some(modified) if current => (
            StatusCode::NOT_MODIFIED,
            [(header::LAST_MODIFIED, modified)],
        )
            .into_response(),
        _ => answer.map(axum::body::Body::new),
    };
    answer
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(answer)
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
