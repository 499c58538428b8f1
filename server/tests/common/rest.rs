//! A Paddock reached only over HTTP, as a script reaches it: for servers in
//! another process or a container. Requests carry the browser session
//! `cookie` when there is one (sign-in on) and the server's own origin.

use app::domain::Event;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::{header, Client, Method, RequestBuilder, StatusCode};
use serde_json::Value;
use std::time::{Duration, Instant};

pub struct Rest {
    pub url: String,
    pub cookie: Option<String>,
    client: Client,
}

impl Rest {
    pub fn new(url: &str, cookie: Option<String>) -> Self {
        Self {
            url: url.to_owned(),
            cookie,
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url))
            .header(header::ORIGIN, &self.url);
        if let Some(cookie) = &self.cookie {
            req = req.header(header::COOKIE, cookie);
        }
        req
    }

    /// Creates a session from `body` and returns its id.
    pub async fn create(&self, body: Value) -> String {
        let res = self
            .request(Method::POST, "/api/sessions")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let created: Value = res.json().await.unwrap();
        created["id"].as_str().unwrap().to_owned()
    }

    pub async fn prompt(&self, session: &str, text: &str) {
        let res = self
            .request(Method::POST, &format!("/api/sessions/{session}/prompt"))
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }

    /// The session as `GET /api/sessions/{id}` has it.
    pub async fn session(&self, session: &str) -> Value {
        self.request(Method::GET, &format!("/api/sessions/{session}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Answers a permission request with `body` (`decision`, `reason`).
    pub async fn decide(&self, session: &str, request: &str, body: Value) -> reqwest::Response {
        self.request(
            Method::POST,
            &format!("/api/sessions/{session}/permissions/{request}"),
        )
        .json(&body)
        .send()
        .await
        .unwrap()
    }

    /// Opens the session's event stream (from its start).
    pub async fn stream(&self, session: &str) -> reqwest::Response {
        let res = self
            .request(Method::GET, &format!("/api/sessions/{session}/events"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res
    }

    /// Waits until the session is idle after `turns` model calls in all;
    /// its `last_seq` then. `context` is shown if it never is.
    pub async fn wait_idle(&self, session: &str, turns: i64, context: impl Fn() -> String) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let s = self.session(session).await;
            if s["status"] == "idle" && s["turns"].as_i64() == Some(turns) {
                return s["last_seq"].as_i64().unwrap();
            }
            assert!(Instant::now() < deadline, "{s}\n{}", context());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The first `count` events of a session, from its event stream.
    pub async fn transcript(&self, session: &str, count: i64) -> Vec<Event> {
        let mut frames = Box::pin(self.stream(session).await.bytes_stream().eventsource());
        let mut events = Vec::new();
        while (events.len() as i64) < count {
            let frame = tokio::time::timeout(Duration::from_secs(30), frames.next())
                .await
                .expect("an event in time")
                .unwrap()
                .unwrap();
            if frame.event == "event" {
                events.push(serde_json::from_str(&frame.data).unwrap());
            }
        }
        events
    }
}
