//! `/auth/…`: sign-in, the first admin's setup, sign-out (here or on every
//! device) and password change. They set or end the session cookie, so
//! they are plain form posts, not server functions: they work before the
//! page's JavaScript has loaded, and a browser follows the Post/Redirect/Get
//! pattern (303 to the next page, or back to the form with an error code
//! the page turns into a message). A client that does not ask for HTML
//! gets the error as JSON with its status (401, 403, 409, 429) instead.

use super::client_address::ClientAddress;
use super::error::ApiError;
use super::routes::Routes;
use crate::auth::Identity;
use crate::paddock::Paddock;
use app::domain::AppError;
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use std::sync::Arc;
use tower_sessions::Session;

pub fn routes() -> Routes {
    Routes::default()
        .post("/auth/signin", sign_in)
        .post("/auth/setup", set_up)
        .post("/auth/signout", sign_out)
        .post("/auth/signout-everywhere", sign_out_everywhere)
        .post("/auth/password", change_password)
}

/// Where to go after signing in: a path on this server, never another site
/// (`//evil.example` and `/\evil.example` are other sites to a browser).
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() < 2048
        && !next.chars().any(|c| c.is_control());
    if local {
        next
    } else {
        "/"
    }
}

/// The short code a form page shows a message for.
fn code(error: &AppError) -> &'static str {
    match error {
        AppError::Unauthenticated(_) => "wrong",
        AppError::RateLimited(_) => "limited",
        AppError::Unavailable(_) => "busy",
        AppError::Conflict(_) => "taken",
        AppError::Forbidden(_) => "refused",
        _ => "invalid",
    }
}

/// A failure: back to the form (a browser), or the error itself.
fn failed(headers: &HeaderMap, form: &str, error: AppError, next: Option<&str>) -> Response {
    let browser = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if !browser {
        return ApiError::from(error).into_response();
    }
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("error", code(&error));
    if let Some(next) = next {
        query.append_pair("next", safe_next(next));
    }
    let separator = if form.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{form}{separator}{}", query.finish())).into_response()
}

/// A new password must be typed the same twice.
fn typed_twice(password: &str, confirm: &str) -> Result<(), AppError> {
    if password == confirm {
        Ok(())
    } else {
        Err(AppError::Invalid("The two passwords differ.".into()))
    }
}

fn unreadable(rejection: FormRejection) -> AppError {
    AppError::Invalid(rejection.body_text())
}

#[derive(Deserialize)]
struct SignInForm {
    login: String,
    password: String,
    #[serde(default)]
    next: String,
}

async fn sign_in(
    State(paddock): State<Arc<Paddock>>,
    session: Session,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(e) => return failed(&headers, "/signin", unreadable(e), None),
    };
    match paddock
        .auth
        .sign_in(&session, &form.login, &form.password, address)
        .await
    {
        Ok(_) => Redirect::to(safe_next(&form.next)).into_response(),
        Err(e) => failed(&headers, "/signin", e, Some(&form.next)),
    }
}

#[derive(Deserialize)]
struct SetupForm {
    token: String,
    login: String,
    #[serde(default)]
    display_name: String,
    password: String,
    confirm: String,
}

async fn set_up(
    State(paddock): State<Arc<Paddock>>,
    session: Session,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    form: Result<Form<SetupForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(e) => return failed(&headers, "/setup", unreadable(e), None),
    };
    let back = |e| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("token", &form.token);
        let form_page = format!("/setup?{}", query.finish());
        failed(&headers, &form_page, e, None)
    };
    if let Err(e) = typed_twice(&form.password, &form.confirm) {
        return back(e);
    }
    match paddock
        .auth
        .set_up_first_admin(
            &session,
            &form.token,
            &form.login,
            &form.display_name,
            &form.password,
            address,
        )
        .await
    {
        Ok(_) => Redirect::to("/").into_response(),
        Err(e) => back(e),
    }
}

async fn sign_out(
    State(paddock): State<Arc<Paddock>>,
    session: Session,
    identity: Identity,
    ClientAddress(address): ClientAddress,
) -> Response {
    paddock.auth.sign_out(&session, &identity, address).await;
    Redirect::to("/signin").into_response()
}

async fn sign_out_everywhere(
    State(paddock): State<Arc<Paddock>>,
    identity: Identity,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
) -> Response {
    match paddock.auth.sign_out_everywhere(&identity, address).await {
        Ok(()) => Redirect::to("/signin").into_response(),
        Err(e) => failed(&headers, "/account", e, None),
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    current: String,
    password: String,
    confirm: String,
}

async fn change_password(
    State(paddock): State<Arc<Paddock>>,
    session: Session,
    identity: Identity,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    form: Result<Form<PasswordForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(form)) => form,
        Err(e) => return failed(&headers, "/account", unreadable(e), None),
    };
    if let Err(e) = typed_twice(&form.password, &form.confirm) {
        return failed(&headers, "/account", e, None);
    }
    match paddock
        .auth
        .change_password(&session, &identity, &form.current, &form.password, address)
        .await
    {
        Ok(()) => Redirect::to("/account?changed=password").into_response(),
        Err(e) => failed(&headers, "/account", e, None),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_server() {
        assert_eq!(safe_next("/sessions/1?x=2"), "/sessions/1?x=2");
        for bad in [
            "",
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "javascript:x",
            "/a\nb",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad:?}");
        }
    }
}
