//! The site's static files (`LEPTOS_SITE_ROOT`: the bundle, styles,
//! icons), revalidated on each use, and the page-not-found page for any
//! other path no route took.

use app::api::SharedBackend;
use app::shell;
use axum::http::Method;
use axum::response::IntoResponse;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;

/// The site's files, else the page-not-found page: the same shell as every
/// page, whose account menu and sidebar ask the same server functions,
/// rendered whole before it is sent as every page is. Every answer varies
/// with `Accept-Encoding`, so that a cache between keeps each copy of a
/// file for its own.
pub fn files(
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
            let mut answer = match file(files, &request).await {
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
async fn file(
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
