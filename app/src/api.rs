//! Server functions: the dashboard's calls to the server. Each one is a thin
//! shell over the [`Backend`] the server provides as context, so this crate
//! never depends on the server crate.

use crate::domain::{AppError, Event, EventHtml, ServerInfo, Session};
use leptos::prelude::*;
use leptos::server_fn;

#[cfg(feature = "ssr")]
pub use self::ssr::{Backend, SharedBackend};

#[cfg(feature = "ssr")]
pub(crate) mod ssr {
    use crate::domain::{AppError, Decision, Event, ServerInfo, Session, SessionId, SessionSpec};
    use leptos::prelude::*;
    use std::sync::Arc;

    /// What the server implements for the dashboard's server functions.
    #[async_trait::async_trait]
    pub trait Backend: Send + Sync + 'static {
        async fn list_sessions(&self) -> Result<Vec<Session>, AppError>;
        async fn create_session(&self, spec: SessionSpec) -> Result<Session, AppError>;
        /// `Err(NotFound)` for an unknown id.
        async fn get_session(&self, id: SessionId) -> Result<Session, AppError>;
        /// Stores the prompt and runs it now or after those queued before it.
        async fn send_prompt(&self, id: SessionId, text: String) -> Result<(), AppError>;
        /// Cancels what the session is doing and drops its queue.
        async fn stop(&self, id: SessionId) -> Result<(), AppError>;
        /// Answers a pending permission request (once).
        async fn decide(
            &self,
            id: SessionId,
            request_id: String,
            decision: Decision,
            reason: Option<String>,
        ) -> Result<(), AppError>;
        /// Removes the session, its sandbox and its workspace.
        async fn delete_session(&self, id: SessionId) -> Result<(), AppError>;
        fn server_info(&self) -> ServerInfo;
        /// Up to `limit` events with `seq > after`, oldest first.
        async fn events(
            &self,
            id: SessionId,
            after: i64,
            limit: i64,
        ) -> Result<Vec<Event>, AppError>;
    }

    pub type SharedBackend = Arc<dyn Backend>;

    pub(super) fn backend() -> Result<SharedBackend, AppError> {
        use_context::<SharedBackend>().ok_or_else(|| {
            tracing::error!("no Backend in the server-function context");
            AppError::Internal
        })
    }

    /// Gives a failed call the HTTP status that fits it, so API clients and
    /// server-rendered pages see 400/404 rather than a generic 500.
    pub(super) fn respond<T>(result: Result<T, AppError>) -> Result<T, AppError> {
        if let Err(e) = &result {
            set_status(e);
        }
        result
    }

    pub(crate) fn set_status(e: &AppError) {
        let status = http::StatusCode::from_u16(e.status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        if let Some(options) = use_context::<leptos_axum::ResponseOptions>() {
            options.set_status(status);
        }
    }

    pub(super) fn parse_id(id: &str) -> Result<SessionId, AppError> {
        id.parse()
            .map_err(|_| AppError::NotFound(format!("Session {id:?}")))
    }
}

/// JSON for server-function results and errors, decoded from text. Leptos
/// hands hydrated resources to serde_json as `&str`; the stock encoding
/// decodes responses from bytes, which compiled a second copy of every
/// `Deserialize` into the browser bundle.
pub struct JsonText;

/// `POST` with URL-encoded arguments (so forms work without JavaScript) and a
/// [`JsonText`] response.
pub type UrlInJsonOut = server_fn::codec::Post<JsonText>;

impl server_fn::ContentType for JsonText {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl server_fn::FormatType for JsonText {
    const FORMAT_TYPE: server_fn::Format = server_fn::Format::Text;
}

impl<T: serde::Serialize> server_fn::Encodes<T> for JsonText {
    type Error = serde_json::Error;

    fn encode(value: &T) -> Result<server_fn::Bytes, Self::Error> {
        serde_json::to_vec(value).map(Into::into)
    }
}

impl<T: serde::de::DeserializeOwned> server_fn::Decodes<T> for JsonText {
    type Error = serde_json::Error;

    fn decode(bytes: server_fn::Bytes) -> Result<T, Self::Error> {
        let text = std::str::from_utf8(&bytes).map_err(serde::de::Error::custom)?;
        serde_json::from_str(text)
    }
}

impl leptos::server_fn::error::FromServerFnError for AppError {
    type Encoder = JsonText;

    fn from_server_fn_error(value: leptos::server_fn::error::ServerFnErrorErr) -> Self {
        use leptos::server_fn::error::ServerFnErrorErr as E;
        let error = match value {
            // The request itself was malformed: the client's fault.
            E::Args(m) | E::Deserialization(m) | E::MissingArg(m) => AppError::Invalid(m),
            other => AppError::Transport(other.to_string()),
        };
        // On the server this runs when a request cannot even be decoded,
        // before any server function body; the status must say so too.
        #[cfg(feature = "ssr")]
        ssr::set_status(&error);
        error
    }
}

/// Events shown per page of a transcript.
pub const EVENTS_PAGE: i64 = 500;

#[server(endpoint = "list_sessions", output = UrlInJsonOut)]
pub async fn list_sessions() -> Result<Vec<Session>, AppError> {
    ssr::respond(async { ssr::backend()?.list_sessions().await }.await)
}

/// Creates a session from the New-session form. The fields arrive flat, as a
/// browser form posts them; empty optional fields mean "the default", and an
/// empty name becomes "Untitled session", so one click is enough.
#[server(endpoint = "create_session", output = UrlInJsonOut)]
pub async fn create_session(
    name: String,
    model: Option<String>,
    system_prompt: Option<String>,
    permission_mode: Option<String>,
    engine: Option<String>,
    budget_usd: Option<String>,
) -> Result<Session, AppError> {
    ssr::respond(
        async {
            fn given(field: Option<String>) -> Option<String> {
                field.filter(|v| !v.trim().is_empty())
            }
            let invalid = |what: &str, value: &str| {
                AppError::Invalid(format!("{value:?} is not a valid {what}."))
            };
            let spec = crate::domain::NewSession {
                name: if name.trim().is_empty() {
                    "Untitled session".to_owned()
                } else {
                    name
                },
                model: given(model),
                system_prompt: given(system_prompt),
                permission_mode: given(permission_mode)
                    .map(|m| m.parse().map_err(|_| invalid("permission mode", &m)))
                    .transpose()?,
                engine: given(engine)
                    .map(|e| e.parse().map_err(|_| invalid("engine", &e)))
                    .transpose()?,
                budget_usd: given(budget_usd)
                    .map(|b| b.trim().parse().map_err(|_| invalid("budget in USD", &b)))
                    .transpose()?,
                ..Default::default()
            }
            .validate()?;
            ssr::backend()?.create_session(spec).await
        }
        .await,
    )
}

/// Stored events, oldest first, with the rendered Markdown of those that
/// have some.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventPage {
    pub events: Vec<Event>,
    pub html: Vec<EventHtml>,
}

#[cfg(feature = "ssr")]
impl From<Vec<Event>> for EventPage {
    fn from(events: Vec<Event>) -> Self {
        let html = events
            .iter()
            .filter_map(crate::markdown::event_html)
            .collect();
        EventPage { events, html }
    }
}

/// What the session page starts from: the session, and the newest page of
/// its transcript up to the session's `last_seq` (so counters and events
/// agree, and live updates continue from there).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SessionView {
    pub session: Session,
    pub page: EventPage,
}

#[server(endpoint = "open_session", output = UrlInJsonOut)]
pub async fn open_session(id: String) -> Result<SessionView, AppError> {
    ssr::respond(
        async {
            let backend = ssr::backend()?;
            let session = backend.get_session(ssr::parse_id(&id)?).await?;
            let after = (session.last_seq - EVENTS_PAGE).max(0);
            let mut events = backend
                .events(session.id, after, session.last_seq - after)
                .await?;
            events.retain(|e| e.seq <= session.last_seq);
            Ok(SessionView {
                session,
                page: events.into(),
            })
        }
        .await,
    )
}

#[server(endpoint = "get_session", output = UrlInJsonOut)]
pub async fn get_session(id: String) -> Result<Session, AppError> {
    ssr::respond(async { ssr::backend()?.get_session(ssr::parse_id(&id)?).await }.await)
}

#[server(endpoint = "send_prompt", output = UrlInJsonOut)]
pub async fn send_prompt(id: String, text: String) -> Result<(), AppError> {
    ssr::respond(async { ssr::backend()?.send_prompt(ssr::parse_id(&id)?, text).await }.await)
}

#[server(endpoint = "stop_session", output = UrlInJsonOut)]
pub async fn stop_session(id: String) -> Result<(), AppError> {
    ssr::respond(async { ssr::backend()?.stop(ssr::parse_id(&id)?).await }.await)
}

#[server(endpoint = "decide_permission", output = UrlInJsonOut)]
pub async fn decide_permission(
    id: String,
    request_id: String,
    decision: crate::domain::Decision,
    reason: Option<String>,
) -> Result<(), AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .decide(ssr::parse_id(&id)?, request_id, decision, reason)
                .await
        }
        .await,
    )
}

#[server(endpoint = "delete_session", output = UrlInJsonOut)]
pub async fn delete_session(id: String) -> Result<(), AppError> {
    ssr::respond(async { ssr::backend()?.delete_session(ssr::parse_id(&id)?).await }.await)
}

#[server(endpoint = "server_info", output = UrlInJsonOut)]
pub async fn get_server_info() -> Result<ServerInfo, AppError> {
    ssr::respond(ssr::backend().map(|b| b.server_info()))
}

/// The page of events after `after`, for "show earlier events".
#[server(endpoint = "session_events", output = UrlInJsonOut)]
pub async fn session_events(id: String, after: i64) -> Result<EventPage, AppError> {
    ssr::respond(
        async {
            ssr::backend()?
                .events(ssr::parse_id(&id)?, after.max(0), EVENTS_PAGE)
                .await
                .map(EventPage::from)
        }
        .await,
    )
}
