//! Sign-in on, against a real server on port 0 and a real SQLite file:
//! every route refuses an anonymous caller, people see and operate only
//! what is theirs or shared with them, through every door, and a change of
//! access (an unshare, a revoked token) takes effect at once, also on open
//! event streams.

use crate::common::{self, Home, Served};
use app::accounts::Role;
use app::domain::{EventKind, Session};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Client, Method, StatusCode};
use serde_json::json;
use server::http::all_routes;
use server::http::request_guard::{for_machines, open_to_anonymous};
use server::paddock::Paddock;
use std::sync::Arc;
use std::time::Duration;

pub(crate) const PASSWORD: &str = "correct horse battery";

pub(crate) struct Team {
    home: Home,
    pub(crate) paddock: Arc<Paddock>,
    served: Served,
    /// Never follows redirects: the tests read them.
    pub(crate) http: Client,
}

/// Someone with an account: a bearer token and a signed-in browser cookie.
pub(crate) struct Person {
    login: String,
    pub(crate) token: String,
    pub(crate) cookie: String,
}

pub(crate) async fn team(extra: &[&str]) -> Team {
    team_in("local", extra).await
}

/// A team whose sessions run in `sandbox` (`docker` or `local`).
async fn team_in(sandbox: &str, extra: &[&str]) -> Team {
    let home = Home::new();
    let mut flags = vec!["--auth=on".to_owned()];
    flags.extend(extra.iter().map(|a| a.to_string()));
    let paddock = common::open(&home, sandbox, &flags).await;
    let served = common::serve(paddock.clone()).await;
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Team {
        home,
        paddock,
        served,
        http,
    }
}

impl Team {
    pub(crate) fn url(&self, path: &str) -> String {
        self.served.url(path)
    }

    /// A request as the dashboard's own pages send it: same origin.
    pub(crate) fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .header(header::ORIGIN, &self.served.url)
    }

    pub(crate) async fn person(&self, login: &str, role: Role) -> Person {
        let user = self
            .paddock
            .auth
            .add_user("test", login, login, role, PASSWORD, None)
            .await
            .unwrap();
        let token = self
            .paddock
            .auth
            .create_token(&user.caller(), "tests", None, None)
            .await
            .unwrap()
            .secret;
        let cookie = self.sign_in(login, PASSWORD).await.unwrap();
        Person {
            login: login.to_owned(),
            token,
            cookie,
        }
    }

    /// Signs in through the form; the session cookie, or the refusal.
    async fn sign_in(&self, login: &str, password: &str) -> Result<String, (StatusCode, String)> {
        Ok(cookie_pair(
            &self.sign_in_set_cookie(login, password).await?,
        ))
    }

    /// Signs in through the form; the whole `Set-Cookie` it answers with.
    async fn sign_in_set_cookie(
        &self,
        login: &str,
        password: &str,
    ) -> Result<String, (StatusCode, String)> {
        let res = self
            .request(Method::POST, "/auth/signin")
            .form(&[("login", login), ("password", password)])
            .send()
            .await
            .unwrap();
        if res.status() != StatusCode::SEE_OTHER {
            return Err((res.status(), res.text().await.unwrap()));
        }
        let cookie = res
            .headers()
            .get(header::SET_COOKIE)
            .expect("a session cookie")
            .to_str()
            .unwrap();
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Lax"), "{cookie}");
        Ok(cookie.to_owned())
    }

    /// A request with `cookie`, from the dashboard's own origin.
    pub(crate) fn with_cookie(
        &self,
        cookie: &str,
        method: Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.request(method, path).header(header::COOKIE, cookie)
    }

    /// Whether `cookie` still signs its holder in.
    async fn signed_in(&self, cookie: &str) -> bool {
        let status = self
            .status(self.with_cookie(cookie, Method::GET, "/api/sessions"))
            .await
            .0;
        match status {
            StatusCode::OK => true,
            StatusCode::UNAUTHORIZED => false,
            other => panic!("GET /api/sessions answered {other}"),
        }
    }

    /// A request with `who`'s token.
    pub(crate) fn as_(&self, who: &Person, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&who.token)
    }

    pub(crate) async fn status(&self, req: reqwest::RequestBuilder) -> (StatusCode, String) {
        let res = req.send().await.unwrap();
        (res.status(), res.text().await.unwrap())
    }

    /// Calls a server function with `who`'s token.
    pub(crate) async fn call(
        &self,
        who: &Person,
        function: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String) {
        self.status(
            self.as_(who, Method::POST, &format!("/api/{function}"))
                .form(form),
        )
        .await
    }

    pub(crate) async fn create(&self, who: &Person, body: serde_json::Value) -> Session {
        let res = self
            .as_(who, Method::POST, "/api/sessions")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json().await.unwrap()
    }

    pub(crate) async fn share(
        &self,
        owner: &Person,
        session: &Session,
        with: &Person,
        level: &str,
    ) {
        let id = session.id.to_string();
        let (status, body) = self
            .call(
                owner,
                "share_session",
                &[("id", &id), ("login", &with.login), ("level", level)],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// The `name=value` a `Set-Cookie` header sets, as a `Cookie` header sends
/// it back.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// An open event stream's response.
async fn open_stream(req: reqwest::RequestBuilder) -> reqwest::Response {
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res
}

/// The status a terminal `who` asks for in session `id` is refused with.
async fn terminal_refused(t: &Team, who: &Person, id: &str) -> u16 {
    let bearer = format!("Bearer {}", who.token);
    let terminal = crate::terminal::connect(
        &t.url(""),
        id,
        "rows=24&cols=80",
        None,
        &[("authorization", &bearer)],
    )
    .await;
    terminal.expect_err("no terminal").0
}

/// Reads `stream` until it ends; panics if it is still open after 10 s.
async fn ends(stream: reqwest::Response) -> String {
    ends_within(stream, Duration::from_secs(10)).await
}

/// Reads `stream` until it ends; panics if it is still open after `limit`.
async fn ends_within(mut stream: reqwest::Response, limit: Duration) -> String {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = String::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) | Ok(Err(_)) => return seen,
            Err(_) => panic!("the stream is still open; it said: {seen}"),
        }
    }
}

/// Reads `stream` until what it said contains `needle`.
async fn says(stream: &mut reqwest::Response, needle: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(needle) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in: {seen}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended without {needle:?}: {seen}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

/// Replaces each parameter of a route's path (`{id}`, `:id`) with `value`.
fn fill(path: &str, value: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') || segment.starts_with(':') {
                value
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_refuses_an_anonymous_caller() {
    let t = team(&[]).await;
    let owner = t.person("owner", Role::Member).await;
    let session = t.create(&owner, json!({"name": "theirs"})).await;
    let id = session.id.to_string();

    let routes = all_routes();
    for expected in [
        (Method::GET, "/"),
        (Method::GET, "/api/sessions"),
        (Method::GET, "/api/updates"),
        (Method::GET, "/api/sessions/{id}/events"),
        (Method::POST, "/api/send_prompt"),
        (Method::POST, "/api/share_session"),
        (Method::POST, "/auth/password"),
        (Method::GET, "/healthz"),
    ] {
        assert!(
            routes
                .iter()
                .any(|(m, p)| *m == expected.0 && p == expected.1),
            "{expected:?} is not among the listed routes: {routes:?}"
        );
    }
    let mut checked = 0;
    for (method, path) in &routes {
        if open_to_anonymous(method, path) || path == "/healthz" || path == "/readyz" {
            continue;
        }
        let uri = fill(path, &id);
        let res = t
            .request(method.clone(), &uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!("id={id}&text=hi"))
            .send()
            .await
            .unwrap();
        let status = res.status();
        if for_machines(&uri) || *method != Method::GET {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        } else {
            assert_eq!(status, StatusCode::SEE_OTHER, "{method} {uri}");
            let to = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
            assert!(to.starts_with("/signin?next="), "{method} {uri} → {to}");
        }
        let body = res.text().await.unwrap();
        assert!(!body.contains("theirs"), "{method} {uri} said {body}");
        checked += 1;
    }
    assert!(checked > 20, "only {checked} routes checked");
    // A forged cookie is nobody.
    let (status, _) = t
        .status(
            t.request(Method::GET, "/api/sessions")
                .header(header::COOKIE, "paddock_session=forged"),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Nothing was changed by any of it.
    let after = t
        .paddock
        .store
        .get_session(session.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.last_seq, session.last_seq);
}

#[tokio::test]
async fn people_see_and_operate_only_their_own_sessions() {
    let t = team(&[]).await;
    let a = t.person("ann", Role::Member).await;
    let b = t.person("bob", Role::Member).await;
    let mut updates = open_stream(t.as_(&a, Method::GET, "/api/updates")).await;
    let bobs = t.create(&b, json!({"name": "bob's secret plan"})).await;
    let anns = t.create(&a, json!({"name": "ann's work"})).await;
    let seen = says(&mut updates, "ann's work").await;
    assert!(!seen.contains("bob's secret plan"), "{seen}");

    let (status, list) = t.status(t.as_(&a, Method::GET, "/api/sessions")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.contains("ann's work") && !list.contains("bob's"),
        "{list}"
    );

    let id = bobs.id.to_string();
    let rest = [
        (Method::GET, format!("/api/sessions/{id}"), None),
        (Method::GET, format!("/api/sessions/{id}/events"), None),
        (Method::DELETE, format!("/api/sessions/{id}"), None),
        (
            Method::POST,
            format!("/api/sessions/{id}/prompt"),
            Some(json!({"text": "hi"})),
        ),
        (Method::POST, format!("/api/sessions/{id}/stop"), None),
        (
            Method::POST,
            format!("/api/sessions/{id}/permissions/r1"),
            Some(json!({"decision": "allow"})),
        ),
    ];
    for (method, path, body) in rest {
        let mut req = t.as_(&a, method.clone(), &path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let (status, text) = t.status(req).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {text}");
        assert!(!text.contains("secret plan"), "{text}");
    }
    for (function, form) in [
        ("get_session", vec![("id", id.as_str())]),
        ("open_session", vec![("id", &id)]),
        ("session_events", vec![("id", &id), ("after", "0")]),
        ("session_people", vec![("id", &id)]),
        ("send_prompt", vec![("id", &id), ("text", "hi")]),
        ("stop_session", vec![("id", &id)]),
        (
            "decide_permission",
            vec![("id", &id), ("request_id", "r1"), ("decision", "allow")],
        ),
        ("delete_session", vec![("id", &id)]),
        (
            "share_session",
            vec![("id", &id), ("login", "ann"), ("level", "operate")],
        ),
    ] {
        let (status, text) = t.call(&a, function, &form).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{function}: {text}");
        assert!(!text.contains("secret plan"), "{text}");
    }
    // The page of Bob's session, in Ann's browser, says nothing of it.
    let (_, page) = t
        .status(t.with_cookie(&a.cookie, Method::GET, &format!("/sessions/{id}")))
        .await;
    assert!(!page.contains("secret plan"), "{page}");

    // Bob's session is untouched, and Ann's own works.
    let after = t.paddock.store.get_session(bobs.id).await.unwrap().unwrap();
    assert_eq!(
        (after.name.as_str(), after.last_seq),
        ("bob's secret plan", bobs.last_seq)
    );
    let (status, _) = t
        .status(t.as_(&a, Method::GET, &format!("/api/sessions/{}", anns.id)))
        .await;
    assert_eq!(status, StatusCode::OK);
    // An admin sees everyone's.
    let admin = t.person("root", Role::Admin).await;
    let (status, _) = t
        .status(t.as_(&admin, Method::GET, &format!("/api/sessions/{id}")))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn watchers_and_viewers_read_but_cannot_operate() {
    let (_model, url) = common::scripted(
        &json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "echo hi > hi.txt"}}}]},
            {"reply": "done"}
        ]),
        None,
    )
    .await;
    let flags = common::model_flags(&url, "sk-test");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let t = team(&flags).await;
    let owner = t.person("olga", Role::Member).await;
    let member = t.person("max", Role::Member).await;
    let viewer = t.person("vic", Role::Viewer).await;
    let s = t
        .create(&owner, json!({"name": "shared", "permission_mode": "ask"}))
        .await;
    let id = s.id.to_string();
    t.share(&owner, &s, &member, "watch").await;
    // A viewer never operates, whatever the share says.
    t.share(&owner, &s, &viewer, "operate").await;

    let (status, _) = t
        .status(
            t.as_(&owner, Method::POST, &format!("/api/sessions/{id}/prompt"))
                .json(&json!({"text": "write hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let requests = common::wait_for_permissions(&t.paddock, s.id, 1).await;
    let request = &requests[0].0;

    for who in [&member, &viewer] {
        let (status, _) = t
            .status(t.as_(who, Method::GET, &format!("/api/sessions/{id}")))
            .await;
        assert_eq!(status, StatusCode::OK, "{} reads it", who.login);
        let attempts = [
            (
                format!("/api/sessions/{id}/prompt"),
                json!({"text": "rm -rf"}),
            ),
            (format!("/api/sessions/{id}/stop"), json!(null)),
            (
                format!("/api/sessions/{id}/permissions/{request}"),
                json!({"decision": "allow"}),
            ),
        ];
        for (path, body) in attempts {
            let mut req = t.as_(who, Method::POST, &path);
            if !body.is_null() {
                req = req.json(&body);
            }
            let (status, text) = t.status(req).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{} {path}: {text}",
                who.login
            );
        }
        let (status, _) = t
            .status(t.as_(who, Method::DELETE, &format!("/api/sessions/{id}")))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // No terminal either.
        assert_eq!(terminal_refused(&t, who, &id).await, 403, "{}", who.login);
        let (status, _) = t
            .call(
                who,
                "decide_permission",
                &[("id", &id), ("request_id", request), ("decision", "allow")],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let viewer_creates = t
        .as_(&viewer, Method::POST, "/api/sessions")
        .json(&json!({"name": "mine"}));
    assert_eq!(t.status(viewer_creates).await.0, StatusCode::FORBIDDEN);

    // Still waiting: nobody without the right decided.
    let waiting = t.paddock.store.get_session(s.id).await.unwrap().unwrap();
    assert_eq!(
        waiting.status,
        app::domain::SessionStatus::AwaitingPermission
    );

    // Given operate, the member decides, and the transcript says who.
    t.share(&owner, &s, &member, "operate").await;
    let (status, text) = t
        .status(
            t.as_(
                &member,
                Method::POST,
                &format!("/api/sessions/{id}/permissions/{request}"),
            )
            .json(&json!({"decision": "allow"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    let events = common::wait_idle(&t.paddock, s.id).await;
    let by = events.iter().find_map(|e| match &e.kind {
        EventKind::PermissionDecision { by, .. } => by.clone(),
        _ => None,
    });
    assert_eq!(by.as_deref(), Some("max"));

    // The owner disabled: nothing more runs on their credentials, whoever
    // it is shared with.
    t.person("root", Role::Admin).await;
    let admin = t.paddock.auth.user_by_login("root").await.unwrap().caller();
    let olga = t.paddock.auth.user_by_login("olga").await.unwrap();
    app::api::Backend::change_user(&*t.paddock, &admin, olga.id, None, Some(true))
        .await
        .unwrap();
    let (status, text) = t
        .status(
            t.as_(&member, Method::POST, &format!("/api/sessions/{id}/prompt"))
                .json(&json!({"text": "go on"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert!(text.contains("owner cannot run sessions"), "{text}");
    assert_eq!(terminal_refused(&t, &member, &id).await, 409);
    // The refusals and the decision are in the audit log.
    let audit = t.paddock.store.audit_log(None, 200).await.unwrap();
    for action in ["access_refused", "permission_decided", "shared"] {
        assert!(
            audit.iter().any(|e| e.action.as_str() == action),
            "no {action}: {audit:?}"
        );
    }
}

/// One person holds at most PADDOCK_STREAMS_PER_PERSON live streams at
/// once (each transcript a dashboard connection follows counts): past it,
/// another is refused, 429, or said to retry on the dashboard's
/// connection; one that ends makes room; another person's are their own.
#[tokio::test]
async fn each_person_holds_a_bounded_number_of_streams() {
    let t = team(&["--streams-per-person=2"]).await;
    let ann = t.person("ann", Role::Member).await;
    let bob = t.person("bob", Role::Member).await;
    let s = t.create(&ann, json!({"name": "followed"})).await;
    let events = format!("/api/sessions/{}/events", s.id);
    let list = open_stream(t.as_(&ann, Method::GET, "/api/updates")).await;
    let first = open_stream(t.as_(&ann, Method::GET, &events)).await;
    let (status, said) = t.status(t.as_(&ann, Method::GET, &events)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{said}");
    assert!(said.contains("PADDOCK_STREAMS_PER_PERSON"), "{said}");
    let mut live =
        open_stream(t.as_(&ann, Method::GET, &format!("/api/live?sessions={}:0", s.id))).await;
    says(&mut live, &format!("{} closed retry", s.id)).await;
    let mut listed = open_stream(t.as_(&ann, Method::GET, "/api/live?list=true")).await;
    says(&mut listed, "list closed retry").await;
    drop(listed);
    let _theirs = open_stream(t.as_(&bob, Method::GET, "/api/updates")).await;
    drop((first, live));
    drop(list);
    // (The server lets a stream go once it notices its client left.)
    let mut again = None;
    for _ in 0..50 {
        let res = t.as_(&ann, Method::GET, &events).send().await.unwrap();
        if res.status() == StatusCode::OK {
            again = Some(res);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "no room made");
}

#[tokio::test]
async fn unsharing_ends_an_open_stream_and_sharing_shows_at_once() {
    let t = team(&[]).await;
    let owner = t.person("olga", Role::Member).await;
    let other = t.person("max", Role::Member).await;
    let s = t.create(&owner, json!({"name": "to be shared"})).await;
    let id = s.id.to_string();

    let bystander = t.person("bea", Role::Member).await;
    let mut theirs = open_stream(t.as_(&bystander, Method::GET, "/api/updates")).await;
    let mut updates = open_stream(t.as_(&other, Method::GET, "/api/updates")).await;
    t.share(&owner, &s, &other, "watch").await;
    // The share makes the list reload, and the session is in it now.
    says(&mut updates, "resync").await;
    // Someone else's list is not theirs to reload.
    let quiet = tokio::time::timeout(Duration::from_millis(500), theirs.chunk()).await;
    assert!(quiet.is_err(), "{quiet:?}");
    let (_, list) = t.status(t.as_(&other, Method::GET, "/api/sessions")).await;
    assert!(list.contains("to be shared"), "{list}");

    let events =
        open_stream(t.as_(&other, Method::GET, &format!("/api/sessions/{id}/events"))).await;
    let people = t.call(&owner, "session_people", &[("id", &id)]).await.1;
    assert!(people.contains("olga"), "{people}");
    t.share(&owner, &s, &other, "none").await;
    ends(events).await;
    let (status, _) = t
        .status(t.as_(&other, Method::GET, &format!("/api/sessions/{id}")))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The audit log has both.
    let audit = t.paddock.store.audit_log(None, 100).await.unwrap();
    let shares = audit
        .iter()
        .filter(|e| e.action.as_str().contains("share"))
        .count();
    assert!(shares >= 2, "{audit:?}");
}

/// A stream whose reader stopped reading is cut all the same once its
/// access ends: reading again, it gets nothing written since (its check
/// ran meanwhile, not only once it was read again).
#[tokio::test]
async fn a_stream_left_unread_is_cut_when_its_access_ends() {
    let t = team(&[]).await;
    let owner = t.person("olga", Role::Member).await;
    let other = t.person("max", Role::Member).await;
    let s = t.create(&owner, json!({"name": "shared"})).await;
    t.share(&owner, &s, &other, "watch").await;
    let path = format!("/api/sessions/{}/events", s.id);
    let events = open_stream(t.as_(&other, Method::GET, &path)).await;
    // Some 20 MB, more than the buffers between hold, not read.
    let big = "x".repeat(64 * 1024);
    for _ in 0..320 {
        let text = EventKind::AssistantText { text: big.clone() };
        t.paddock.journal.record(s.id, text).await.unwrap();
    }
    t.share(&owner, &s, &other, "none").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = EventKind::AssistantText {
        text: "written after the unshare".into(),
    };
    t.paddock.journal.record(s.id, after).await.unwrap();
    let seen = ends_within(events, Duration::from_secs(60)).await;
    assert!(seen.contains("xxxx"), "it was following");
    assert!(!seen.contains("written after the unshare"));
}

#[tokio::test]
async fn a_revoked_token_fails_at_once_and_ends_its_streams() {
    let t = team(&[]).await;
    let me = t.person("tess", Role::Member).await;
    let s = t.create(&me, json!({"name": "mine"})).await;
    let updates = open_stream(t.as_(&me, Method::GET, "/api/updates")).await;
    let events =
        open_stream(t.as_(&me, Method::GET, &format!("/api/sessions/{}/events", s.id))).await;

    let (status, listed) = t.call(&me, "list_tokens", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !listed.contains(&me.token),
        "a token is shown once: {listed}"
    );
    let tokens: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let token_id = tokens[0]["token"]["id"].as_str().unwrap().to_owned();
    assert!(tokens[0]["token"]["last_used_at"].is_string(), "{tokens}");
    let (status, _) = t.call(&me, "revoke_token", &[("id", &token_id)]).await;
    assert_eq!(status, StatusCode::OK);

    ends(updates).await;
    ends(events).await;
    let (status, _) = t.status(t.as_(&me, Method::GET, "/api/sessions")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The browser session is another credential, and still holds.
    assert!(t.signed_in(&me.cookie).await);
}

/// What sends no signal (an account disabled from the command line, which
/// runs in another process; a credential reaching its expiry) ends every
/// open stream at the next check, at most 30 s later.
#[tokio::test]
async fn an_account_disabled_from_the_command_line_ends_its_streams() {
    let t = team(&[]).await;
    let me = t.person("dora", Role::Member).await;
    let s = t.create(&me, json!({"name": "mine"})).await;
    let streams = [
        "/api/updates".to_owned(),
        format!("/api/sessions/{}/events", s.id),
        format!("/api/live?list=true&sessions={}:0", s.id),
    ];
    let mut open = Vec::new();
    for path in &streams {
        open.push(open_stream(t.as_(&me, Method::GET, path)).await);
    }
    // As `paddock user disable` does it: its own hub, so no signal.
    let cli = server::auth::Auth::new(t.paddock.store.clone(), server::hub::Hub::new(), true);
    let user = cli.user_by_login("dora").await.unwrap();
    let disable = server::store::accounts::UserChange {
        disabled: Some(true),
        ..Default::default()
    };
    cli.change_user("command line", user.id, disable, None)
        .await
        .unwrap();
    let limit = Duration::from_secs(40);
    futures_util::future::join_all(open.into_iter().map(|s| ends_within(s, limit))).await;
}

/// An account disabled (or made a viewer) stops what runs on its
/// credentials at once: the run under way, with what it queued, and the
/// sandboxes of its sessions, whose processes could otherwise go on
/// (reaching the hosts they are allowed) until idle stop.
#[tokio::test]
async fn a_barred_owners_runs_and_sandboxes_stop_at_once() {
    let (model, url) = common::scripted(
        &json!([
            {"reply": [{"tool_use": {"name": "bash", "input": {"command": "sleep 300"}}}]},
            {"reply": "never"}
        ]),
        Some("sk-team"),
    )
    .await;
    let flags = common::model_flags(&url, "sk-team");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let t = team_in("docker", &flags).await;
    let ann = t.person("ann", Role::Member).await;
    let vic = t.person("vic", Role::Member).await;
    let running = t.create(&ann, json!({"name": "long"})).await;
    let idle = t.create(&vic, json!({"name": "idle"})).await;
    let container = |s: &Session| format!("paddock-{}", s.id);
    let up = |s: &Session| {
        let out = std::process::Command::new("docker")
            .args(["inspect", "-f", "{{.State.Running}}", &container(s)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "true"
    };
    for text in ["sleep a while", "then this"] {
        let (status, body) = t
            .status(
                t.as_(
                    &ann,
                    Method::POST,
                    &format!("/api/sessions/{}/prompt", running.id),
                )
                .json(&json!({"text": text})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    common::wait_for_tool_call(&t.paddock, running.id).await;
    for _ in 0..600 {
        if up(&idle) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up(&running) && up(&idle));

    t.person("root", Role::Admin).await;
    let admin = t.paddock.auth.user_by_login("root").await.unwrap().caller();
    let barred = [("ann", None, Some(true)), ("vic", Some(Role::Viewer), None)];
    for (login, role, disabled) in barred {
        let user = t.paddock.auth.user_by_login(login).await.unwrap();
        app::api::Backend::change_user(&*t.paddock, &admin, user.id, role, disabled)
            .await
            .unwrap();
    }
    let events = tokio::time::timeout(
        Duration::from_secs(30),
        common::wait_idle(&t.paddock, running.id),
    )
    .await
    .expect("the run stops");
    assert!(
        common::errors(&events)
            .iter()
            .any(|e| e.contains("owner cannot run sessions any more")),
        "{:?}",
        common::errors(&events)
    );
    assert_eq!(
        common::last_status(&events),
        (app::domain::SessionStatus::Idle, Some("Stopped.".into()))
    );
    assert_eq!(
        t.paddock.store.queued_prompts(running.id).await.unwrap(),
        0,
        "what it queued is dropped"
    );
    for s in [&running, &idle] {
        let mut stopped = false;
        for _ in 0..300 {
            if !up(s) {
                stopped = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(stopped, "the sandbox of {} stops", s.name);
    }
    // Nor does an upload (one before the workspace was prepared clones
    // its source on the owner's git token).
    let note = server::workspace_files::Upload {
        path: "note.txt".into(),
        data: "hi".into(),
    };
    let upload = t.paddock.upload_files(&admin, idle.id, vec![note]).await;
    assert!(
        matches!(&upload, Err(app::domain::AppError::Conflict(m)) if m.contains("cannot run sessions any more")),
        "{upload:?}"
    );
    // Nothing more went to the model on their credentials.
    assert_eq!(model.requests().len(), 1);
}

/// An admin resetting someone's password (their password may be known to
/// someone else) revokes their API tokens too, which would outlive it, and
/// ends the streams opened with them; the audit log names whose.
#[tokio::test]
async fn a_password_reset_revokes_the_persons_tokens() {
    let t = team(&[]).await;
    let kim = t.person("kim", Role::Member).await;
    let other = t.person("lou", Role::Member).await;
    let admin = t.person("root", Role::Admin).await;
    let updates = open_stream(t.as_(&kim, Method::GET, "/api/updates")).await;
    let id = t.paddock.auth.user_by_login("kim").await.unwrap().id;
    let (status, text) = t
        .status(
            t.with_cookie(&admin.cookie, Method::POST, "/api/reset_password")
                .form(&[
                    ("id", id.to_string().as_str()),
                    ("password", "a new one, long"),
                ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    ends(updates).await;
    let (status, _) = t.status(t.as_(&kim, Method::GET, "/api/sessions")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = t.status(t.as_(&other, Method::GET, "/api/sessions")).await;
    assert_eq!(status, StatusCode::OK, "nobody else's");
    let audit = t.paddock.store.audit_log(None, 50).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e.target == "kim" && e.detail == "password reset, 1 API tokens revoked"),
        "{audit:?}"
    );
}

/// A watcher's script pressing Stop in a loop is refused each time, and
/// audited a few times a minute: the audit log does not grow at its rate.
#[tokio::test]
async fn refusals_in_a_loop_are_audited_a_few_a_minute() {
    let t = team(&[]).await;
    let owner = t.person("olga", Role::Member).await;
    let watcher = t.person("walt", Role::Member).await;
    let s = t.create(&owner, json!({"name": "watched"})).await;
    t.share(&owner, &s, &watcher, "watch").await;
    for _ in 0..30 {
        let stop = t.as_(
            &watcher,
            Method::POST,
            &format!("/api/sessions/{}/stop", s.id),
        );
        assert_eq!(t.status(stop).await.0, StatusCode::FORBIDDEN);
    }
    let audit = t.paddock.store.audit_log(None, 200).await.unwrap();
    let refused = audit
        .iter()
        .filter(|e| e.action.as_str() == "access_refused")
        .count();
    assert_eq!(refused, 10, "{audit:?}");
}

#[tokio::test]
async fn cookie_writes_from_another_origin_are_refused() {
    let t = team(&[]).await;
    let me = t.person("cora", Role::Member).await;
    let with_cookie = |origin: Option<&str>| {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&me.cookie).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        t.http
            .post(t.url("/api/sessions"))
            .headers(headers)
            .json(&json!({"name": "forged"}))
    };
    assert_eq!(
        t.status(with_cookie(Some("http://evil.example"))).await.0,
        StatusCode::FORBIDDEN
    );
    // A write that does not say where it comes from is refused too…
    assert_eq!(t.status(with_cookie(None)).await.0, StatusCode::FORBIDDEN);
    // …and so is a cross-site server function or sign-out.
    let forged_signout = t
        .http
        .post(t.url("/auth/signout"))
        .header(header::COOKIE, &me.cookie)
        .header("sec-fetch-site", "cross-site");
    assert_eq!(t.status(forged_signout).await.0, StatusCode::FORBIDDEN);
    assert!(t
        .paddock
        .store
        .list_sessions(None)
        .await
        .unwrap()
        .is_empty());
    // From the dashboard's own origin it works; a token needs no origin.
    assert_eq!(
        t.status(with_cookie(Some(&t.served.url))).await.0,
        StatusCode::CREATED
    );
    let scripted = t
        .as_(&me, Method::POST, "/api/sessions")
        .json(&json!({"name": "from a script"}));
    assert_eq!(t.status(scripted).await.0, StatusCode::CREATED);
}

/// A failed sign-in is audited with what was typed quoted, its hidden
/// characters shown (a line end, a right-to-left override), so that it
/// reads as no other entry; a login as it is.
#[tokio::test]
async fn a_failed_sign_in_is_audited_as_typed_and_quoted() {
    let t = team(&[]).await;
    for login in ["x\u{202e}nimda\nsigned in", "nobody"] {
        let refused = t
            .request(Method::POST, "/auth/signin")
            .form(&[("login", login), ("password", "wrong")])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    let audit = t.paddock.store.audit_log(None, 50).await.unwrap();
    let actors: Vec<&str> = audit
        .iter()
        .filter(|e| e.action.as_str() == "sign_in_failed")
        .map(|e| e.actor.as_str())
        .collect();
    assert_eq!(actors, ["nobody", r#""x\u{202e}nimda\nsigned in""#]);
}

/// Behind a proxy the server trusts, each client behind it counts apart:
/// one guessing from one address is held back, and the others sign in;
/// the audit log names them. What a client writes in `X-Forwarded-For`
/// itself counts for nothing.
#[tokio::test]
async fn behind_a_trusted_proxy_each_client_counts_apart() {
    async fn attempt(t: &Team, from: &str, login: &str, password: &str) -> StatusCode {
        t.request(Method::POST, "/auth/signin")
            .header("x-forwarded-for", from)
            .form(&[("login", login), ("password", password)])
            .send()
            .await
            .unwrap()
            .status()
    }
    // Guesses (of different logins) until the address is held back (the
    // limit refills as they go): each from `from(i)`.
    async fn held_back(t: &Team, from: fn(u32) -> String) -> bool {
        for i in 0..3 * server::auth::PER_ADDRESS_PER_MINUTE {
            let status = attempt(t, &from(i), &format!("guess{i}"), "wrong").await;
            if status == StatusCode::TOO_MANY_REQUESTS {
                return true;
            }
            assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}");
        }
        false
    }
    let t = team(&["--trusted-proxies=127.0.0.0/8,::1"]).await;
    t.person("rita", Role::Member).await;
    // Guessing Rita's password from one address holds back that address,
    // not Rita signing in from hers; also with her login padded past the
    // most read, in ever other spaces (which the lookup trims).
    for i in 0..server::auth::PER_LOGIN_PER_MINUTE {
        let padded: String = (0..96u32)
            .map(|k| if k == i { '\t' } else { ' ' })
            .collect();
        let login = format!("rita{padded}x");
        let status = attempt(&t, "203.0.113.9", &login, "wrong").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let guessed = attempt(&t, "203.0.113.9", "rita", PASSWORD).await;
    assert_eq!(guessed, StatusCode::TOO_MANY_REQUESTS);
    let hers = attempt(&t, "198.51.100.8", "rita", PASSWORD).await;
    assert_eq!(hers, StatusCode::SEE_OTHER);
    assert!(held_back(&t, |_| "198.51.100.7".into()).await);
    // Its failures, each of a new login, fill no audit log: a few a
    // minute are written, the rest logged.
    let audit = t.paddock.store.audit_log(None, 200).await.unwrap();
    let failed = audit
        .iter()
        .filter(|e| e.address.as_deref() == Some("198.51.100.7"))
        .count();
    assert!((10..20).contains(&failed), "{failed} of {audit:?}");
    let other = attempt(&t, "198.51.100.8", "rita", PASSWORD).await;
    assert_eq!(other, StatusCode::SEE_OTHER);
    let audit = t.paddock.store.audit_log(None, 1).await.unwrap();
    assert_eq!(
        audit[0].address.as_deref(),
        Some("198.51.100.8"),
        "{audit:?}"
    );

    // Not behind a trusted proxy: the peer counts, whatever it writes.
    let t = team(&[]).await;
    assert!(held_back(&t, |i| format!("198.51.100.{}", i % 250)).await);
}

#[tokio::test]
async fn sign_in_is_rate_limited_and_never_tells_who_exists() {
    let t = team(&[]).await;
    let me = t.person("rita", Role::Member).await;
    let wrong = t.sign_in("rita", "not the password").await.unwrap_err();
    let unknown = t.sign_in("nobody", "not the password").await.unwrap_err();
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, unknown, "the same answer for an unknown account");
    for _ in 0..10 {
        let _ = t.sign_in("rita", "guess").await;
    }
    let limited = t.sign_in("rita", PASSWORD).await.unwrap_err();
    assert_eq!(limited.0, StatusCode::TOO_MANY_REQUESTS, "{limited:?}");
    // A token's holder has no browser session to end: nothing is signed
    // out, nor recorded.
    let by_token = t.as_(&me, Method::POST, "/auth/signout");
    assert_eq!(t.status(by_token).await.0, StatusCode::SEE_OTHER);
    assert!(t.signed_in(&me.cookie).await);
    let signed_out = |audit: &[app::accounts::AuditEntry]| {
        audit
            .iter()
            .filter(|e| e.action.as_str() == "sign_out")
            .count()
    };
    let audit = t.paddock.store.audit_log(None, 100).await.unwrap();
    assert_eq!(signed_out(&audit), 0, "{audit:?}");
    // Sign-out ends the cookie: replayed afterwards, it is nobody.
    let signout = t.with_cookie(&me.cookie, Method::POST, "/auth/signout");
    assert_eq!(t.status(signout).await.0, StatusCode::SEE_OTHER);
    assert!(!t.signed_in(&me.cookie).await);
    let audit = t.paddock.store.audit_log(None, 100).await.unwrap();
    assert!(
        audit.iter().any(|e| e.action.as_str() == "sign_in_failed"),
        "{audit:?}"
    );
    assert_eq!(signed_out(&audit), 1, "{audit:?}");
}

/// Signing in over a browser session that was someone else's ends that
/// someone's open streams at once (its cookie signs nobody in any more),
/// not at their next look at their caller.
#[tokio::test]
async fn signing_in_over_another_account_ends_its_streams() {
    let t = team(&[]).await;
    t.person("ann", Role::Member).await;
    t.person("bob", Role::Member).await;
    let cookie = t.sign_in("ann", PASSWORD).await.unwrap();
    let updates = open_stream(t.with_cookie(&cookie, Method::GET, "/api/updates")).await;
    let bob = t
        .with_cookie(&cookie, Method::POST, "/auth/signin")
        .form(&[("login", "bob"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(bob.status(), StatusCode::SEE_OTHER);
    ends_within(updates, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn expired_unknown_and_malformed_tokens_are_nobody() {
    let t = team(&[]).await;
    let me = t.person("eli", Role::Member).await;
    let user = t.paddock.auth.user_by_login("eli").await.unwrap();
    let expired = format!(
        "{}{}",
        server::auth::TOKEN_PREFIX,
        server::secret::random_hex()
    );
    let token = app::accounts::ApiToken {
        id: uuid::Uuid::now_v7(),
        name: "old".into(),
        created_at: chrono::Utc::now() - chrono::Duration::days(40),
        expires_at: Some(chrono::Utc::now() - chrono::Duration::days(10)),
        last_used_at: None,
        revoked_at: None,
    };
    t.paddock
        .store
        .insert_api_token(user.id, &token, &server::secret::sha256_hex(&expired))
        .await
        .unwrap();
    let unknown = format!(
        "{}{}",
        server::auth::TOKEN_PREFIX,
        server::secret::random_hex()
    );
    for bearer in [
        expired.as_str(),
        unknown.as_str(),
        "pdk_short",
        "not a token at all",
    ] {
        let req = t
            .http
            .get(t.url("/api/sessions"))
            .header(header::AUTHORIZATION, format!("Bearer {bearer}"));
        let (status, body) = t.status(req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bearer}: {body}");
    }
    // A bad token is refused even beside a good cookie: never served as
    // someone else.
    let both = t
        .request(Method::GET, "/api/sessions")
        .header(header::COOKIE, &me.cookie)
        .header(header::AUTHORIZATION, format!("Bearer {unknown}"));
    assert_eq!(t.status(both).await.0, StatusCode::UNAUTHORIZED);
    // What a proxy in front puts in that header (its Basic sign-in, an
    // identity provider's token) is not Paddock's: the cookie decides, and
    // the sign-in page loads for someone without one.
    for theirs in [
        "Basic YWRhOnNlY3JldA==",
        "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
    ] {
        let proxied = t
            .request(Method::GET, "/api/sessions")
            .header(header::COOKIE, &me.cookie)
            .header(header::AUTHORIZATION, theirs);
        assert_eq!(t.status(proxied).await.0, StatusCode::OK, "{theirs}");
        let page = t
            .request(Method::GET, "/signin")
            .header(header::AUTHORIZATION, theirs);
        assert_eq!(t.status(page).await.0, StatusCode::OK, "{theirs}");
    }
    // An oversized body is refused before anything reads it.
    let huge = t
        .as_(&me, Method::POST, "/api/sessions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(vec![b' '; 3 * 1024 * 1024]);
    assert_eq!(t.status(huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    let huge_signin = t
        .request(Method::POST, "/auth/signin")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!(
            "login=eli&password={}",
            "x".repeat(3 * 1024 * 1024)
        ));
    assert!(t.status(huge_signin).await.0.is_client_error());
}

#[tokio::test]
async fn signing_out_everywhere_ends_every_browser_session_and_its_streams() {
    let t = team(&[]).await;
    let me = t.person("sam", Role::Member).await;
    let laptop = t.sign_in("sam", PASSWORD).await.unwrap();
    let other = t.person("una", Role::Member).await;
    let s = t.create(&me, json!({"name": "mine"})).await;
    let events = open_stream(t.with_cookie(
        &laptop,
        Method::GET,
        &format!("/api/sessions/{}/events", s.id),
    ))
    .await;
    let updates = open_stream(t.with_cookie(&laptop, Method::GET, "/api/updates")).await;

    // From another site, it is refused and nothing ends.
    let forged = t
        .http
        .post(t.url("/auth/signout-everywhere"))
        .header(header::COOKIE, &me.cookie)
        .header(header::ORIGIN, "http://evil.example");
    assert_eq!(t.status(forged).await.0, StatusCode::FORBIDDEN);
    assert!(t.signed_in(&laptop).await);
    // Rows are keyed by a hash of the cookie's id: a copy of the database
    // signs nobody in.
    let laptop_id = laptop.split_once('=').unwrap().1;
    let store = &t.paddock.store;
    assert!(store
        .load_browser_session(laptop_id)
        .await
        .unwrap()
        .is_none());
    let hashed = server::secret::sha256_hex(laptop_id);
    assert!(store.load_browser_session(&hashed).await.unwrap().is_some());

    let res = t
        .with_cookie(&me.cookie, Method::POST, "/auth/signout-everywhere")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[header::LOCATION], "/signin");
    ends(events).await;
    ends(updates).await;
    assert!(!t.signed_in(&me.cookie).await);
    assert!(!t.signed_in(&laptop).await);
    // A request of the laptop's that was still running saves its session
    // as it ends (as tower-sessions does): that brings nothing back.
    let sessions = server::auth::BrowserSessions(t.paddock.store.clone());
    let id: tower_sessions::session::Id = laptop_id.parse().unwrap();
    let record = tower_sessions::session::Record {
        id,
        data: [(
            "account".to_owned(),
            json!({"user": t.paddock.auth.user_by_login("sam").await.unwrap().id,
                   "signed_in_at": chrono::Utc::now(), "seen_at": chrono::Utc::now()}),
        )]
        .into(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::days(1),
    };
    tower_sessions::SessionStore::save(&sessions, &record)
        .await
        .unwrap();
    assert!(!t.signed_in(&laptop).await);
    // Someone else's browser session is theirs, and goes on; so do tokens.
    assert!(t.signed_in(&other.cookie).await);
    let (status, _) = t.status(t.as_(&me, Method::GET, "/api/sessions")).await;
    assert_eq!(status, StatusCode::OK);
    // Anonymous, there is nothing to sign out of.
    let anonymous = t.request(Method::POST, "/auth/signout-everywhere");
    assert_eq!(t.status(anonymous).await.0, StatusCode::UNAUTHORIZED);
    let audit = t.paddock.store.audit_log(None, 100).await.unwrap();
    let entry = audit
        .iter()
        .find(|e| e.action.as_str() == "sign_out_everywhere")
        .unwrap_or_else(|| panic!("no sign_out_everywhere: {audit:?}"));
    assert!(entry.detail.contains("2 browser sessions"), "{entry:?}");
}

#[tokio::test]
async fn changing_a_password_needs_the_current_one_and_ends_other_sessions() {
    let t = team(&[]).await;
    let me = t.person("pia", Role::Member).await;
    let phone = t.sign_in("pia", PASSWORD).await.unwrap();
    let updates = open_stream(t.with_cookie(&phone, Method::GET, "/api/updates")).await;
    let change = |cookie: &str, current: &str, password: &str, confirm: &str| {
        t.with_cookie(cookie, Method::POST, "/auth/password")
            .form(&[
                ("current", current),
                ("password", password),
                ("confirm", confirm),
            ])
    };
    const NEW: &str = "a new and longer passphrase";

    // Refused, and nothing changes: a wrong current password, two
    // different new ones, one too short, a form that is not one.
    let (status, body) = t
        .status(change(&me.cookie, "not my password", NEW, NEW))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("current password is wrong"), "{body}");
    let (status, _) = t
        .status(change(
            &me.cookie,
            PASSWORD,
            NEW,
            "a different one entirely",
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = t
        .status(change(&me.cookie, PASSWORD, "short", "short"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let garbled = t
        .with_cookie(&me.cookie, Method::POST, "/auth/password")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("current=%ZZ&&=");
    assert!(t.status(garbled).await.0.is_client_error());
    // A browser is sent back to the form with a message code.
    let res = change(&me.cookie, PASSWORD, NEW, "not the same")
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[header::LOCATION], "/account?error=invalid");
    assert!(t.signed_in(&me.cookie).await && t.signed_in(&phone).await);

    let res = change(&me.cookie, PASSWORD, NEW, NEW).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // This browser goes on, under a new session id; every other one ends.
    let renewed = cookie_pair(res.headers()[header::SET_COOKIE].to_str().unwrap());
    assert_ne!(renewed, me.cookie);
    assert!(t.signed_in(&renewed).await);
    assert!(!t.signed_in(&me.cookie).await);
    assert!(!t.signed_in(&phone).await);
    ends(updates).await;
    // (Guesses of the current password count as sign-in attempts: five a
    // minute for one account, the one that signs in with the new password
    // being the fifth here.)
    let late = t.sign_in("pia", NEW).await.unwrap();
    let audit = t.paddock.store.audit_log(None, 100).await.unwrap();
    let changes: Vec<_> = audit
        .iter()
        .filter(|e| e.action.as_str() == "password_changed")
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(changes.len(), 2, "{audit:?}");
    assert!(changes.iter().any(|d| d.is_empty()), "{changes:?}");

    // A browser session signed in with a password changed since holds no
    // more, also one the change's ending of sessions missed (its check of
    // the old password was under way as it changed): a password changed
    // under it, its sessions left, stands for that.
    assert!(t.signed_in(&late).await);
    let pia = t.paddock.auth.user_by_login("pia").await.unwrap();
    let change = server::store::accounts::UserChange {
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into()),
        ..Default::default()
    };
    t.paddock.store.change_user(pia.id, &change).await.unwrap();
    assert!(!t.signed_in(&late).await);
    assert!(!t.signed_in(&renewed).await);
}

#[tokio::test]
async fn cookies_are_secure_behind_an_https_public_url() {
    let plain = team(&[]).await;
    plain.person("hal", Role::Member).await;
    let cookie = plain.sign_in_set_cookie("hal", PASSWORD).await.unwrap();
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(cookie.starts_with("paddock_session="), "{cookie}");

    let t = team(&["--public-url=https://paddock.example"]).await;
    t.person("ida", Role::Member).await;
    let cookie = t.sign_in_set_cookie("ida", PASSWORD).await.unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Only this host's own, for every path: no neighbour can plant one.
    assert!(cookie.starts_with("__Host-paddock_session="), "{cookie}");
    assert!(
        cookie.contains("Path=/") && !cookie.contains("Domain"),
        "{cookie}"
    );
    assert!(t.signed_in(&cookie_pair(&cookie)).await);
    // Its own public origin may write, as a proxy in front sends it.
    let from_public = t
        .http
        .post(t.url("/auth/signin"))
        .header(header::ORIGIN, "https://paddock.example")
        .form(&[("login", "ida"), ("password", PASSWORD)]);
    assert_eq!(t.status(from_public).await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_token_works_sessions_but_cannot_hand_out_access() {
    let t = team(&[]).await;
    let admin = t.person("root", Role::Admin).await;
    let refused: &[(&str, &[(&str, &str)])] = &[
        ("create_token", &[("name", "another")]),
        (
            "save_credential",
            &[
                ("scope", "server"),
                ("kind", "anthropic_api_key"),
                ("value", "sk-ant-not-a-real-key"),
            ],
        ),
        (
            "add_user",
            &[
                ("login", "mallory"),
                ("display_name", ""),
                ("role", "admin"),
                ("password", PASSWORD),
            ],
        ),
    ];
    for (function, form) in refused {
        let (status, body) = t.call(&admin, function, form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{function}: {body}");
        assert!(body.contains("API token cannot"), "{body}");
    }
    for path in ["/auth/password", "/auth/signout-everywhere"] {
        let form = [
            ("current", PASSWORD),
            ("password", "a new and longer passphrase"),
            ("confirm", "a new and longer passphrase"),
        ];
        let (status, _) = t
            .status(t.as_(&admin, Method::POST, path).form(&form))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    assert!(t.signed_in(&admin.cookie).await);
    assert!(t.paddock.auth.user_by_login("mallory").await.is_err());
    assert!(t.paddock.store.list_credentials().await.unwrap().is_empty());
    let (_, listed) = t.call(&admin, "list_tokens", &[]).await;
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    // Signed in, the same person may.
    let (status, body) = t
        .status(
            t.with_cookie(&admin.cookie, Method::POST, "/api/create_token")
                .form(&[("name", "another")]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A name that would turn what the audit log shows around it: refused.
    let (status, body) = t
        .status(
            t.with_cookie(&admin.cookie, Method::POST, "/api/create_token")
                .form(&[("name", "deploy\u{202E}nimda")]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("characters that are not shown"), "{body}");
    // At most 100 in use: the next waits for one revoked.
    let caller = t.paddock.auth.user_by_login("root").await.unwrap().caller();
    for n in 2..100 {
        t.paddock
            .auth
            .create_token(&caller, &format!("token {n}"), None, None)
            .await
            .unwrap();
    }
    let one_more = || {
        t.status(
            t.with_cookie(&admin.cookie, Method::POST, "/api/create_token")
                .form(&[("name", "one more")]),
        )
    };
    let (status, body) = one_more().await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("at most 100 tokens"), "{body}");
    let listed = t.paddock.auth.list_tokens(&caller).await.unwrap();
    t.paddock
        .auth
        .revoke_token(&caller, listed[0].token.id, None)
        .await
        .unwrap();
    let (status, body) = one_more().await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn owners_change_settings_others_cannot_and_bad_values_change_nothing() {
    let t = team(&[]).await;
    let owner = t.person("olga", Role::Member).await;
    let member = t.person("max", Role::Member).await;
    let stranger = t.person("sam", Role::Member).await;
    let admin = t.person("root", Role::Admin).await;
    let s = t.create(&owner, json!({"name": "before"})).await;
    t.share(&owner, &s, &member, "operate").await;
    let path = format!("/api/sessions/{}/settings", s.id);
    let settings = json!({
        "name": "after", "model": "claude-haiku-4-5",
        "permission_mode": "read-only", "budget_usd": 2.5
    });

    // Operating is not owning; a stranger does not see it at all.
    let (status, _) = t
        .status(t.as_(&member, Method::PUT, &path).json(&settings))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = t
        .status(t.as_(&stranger, Method::PUT, &path).json(&settings))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let unknown = format!("/api/sessions/{}/settings", uuid::Uuid::now_v7());
    let (status, _) = t
        .status(t.as_(&owner, Method::PUT, &unknown).json(&settings))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bad values: each a 4xx that says why, and nothing changes.
    let bad = [
        json!({"name": " ", "model": "m", "permission_mode": "ask"}),
        json!({"name": "a\u{0}b", "model": "m", "permission_mode": "ask"}),
        json!({"name": "x", "model": "no spaces please", "permission_mode": "ask"}),
        json!({"name": "x", "model": "m", "permission_mode": "yolo"}),
        json!({"name": "x", "model": "m", "permission_mode": "ask", "budget_usd": -1}),
        json!({"name": "x", "model": "m", "permission_mode": "ask", "engine": "claude-code"}),
        json!({"name": "x"}),
    ];
    for body in bad {
        let (status, text) = t
            .status(t.as_(&owner, Method::PUT, &path).json(&body))
            .await;
        assert!(status.is_client_error(), "{body} → {status} {text}");
        assert!(text.contains("message"), "{text}");
    }
    let (status, _) = t
        .status(
            t.as_(&owner, Method::PUT, &path)
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let unchanged = t.paddock.store.get_session(s.id).await.unwrap().unwrap();
    assert_eq!(unchanged.name, "before");

    // The owner changes them, and an admin may too; the audit log says what.
    let (status, text) = t
        .status(t.as_(&owner, Method::PUT, &path).json(&settings))
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let changed = t.paddock.store.get_session(s.id).await.unwrap().unwrap();
    assert_eq!(
        (
            changed.name.as_str(),
            changed.model.as_str(),
            changed.budget_usd
        ),
        ("after", "claude-haiku-4-5", Some(2.5))
    );
    assert_eq!(changed.permission_mode.as_str(), "read-only");
    let (status, _) = t
        .status(t.as_(&admin, Method::PUT, &path).json(&json!({
            "name": "after", "model": "claude-haiku-4-5", "permission_mode": "ask"
        })))
        .await;
    assert_eq!(status, StatusCode::OK);
    let budget = t
        .paddock
        .store
        .get_session(s.id)
        .await
        .unwrap()
        .unwrap()
        .budget_usd;
    assert_eq!(budget, None, "no budget given is none");
    let audit = t.paddock.store.audit_log(None, 100).await.unwrap();
    let details: Vec<&str> = audit
        .iter()
        .filter(|e| e.action.as_str() == "settings_changed")
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details.iter().any(
            |d| d.contains(r#"name: "before" → "after""#) && d.contains("budget: none → $2.50")
        ),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.contains("permissions: read-only → ask")),
        "{details:?}"
    );
}

#[tokio::test]
async fn notification_endpoints_are_their_makers_and_go_to_public_addresses() {
    let t = team(&[]).await;
    let owner = t.person("olga", Role::Member).await;
    let watcher = t.person("max", Role::Member).await;
    let stranger = t.person("eve", Role::Member).await;
    let operator = t.person("oscar", Role::Member).await;
    let s = t.create(&owner, json!({"name": "mine"})).await;
    t.share(&owner, &s, &watcher, "watch").await;
    t.share(&owner, &s, &operator, "operate").await;
    let path = format!("/api/sessions/{}/notifications", s.id);
    // With sign-in on, only public addresses (names are checked as they
    // resolve).
    for url in [
        "http://127.0.0.1:9/x",
        "http://10.1.2.3/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
        "http://",
    ] {
        let (status, body) = t
            .status(
                t.as_(&owner, Method::POST, &path)
                    .json(&json!({ "url": url })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
    }
    let (status, made) = t
        .status(
            t.as_(&owner, Method::POST, &path)
                .json(&json!({"url": "https://hooks.example.com/paddock"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    let endpoint = made["endpoint"]["id"].as_str().unwrap();
    // Its URL may be a secret of its own: the watcher cannot list it, and
    // neither can see, send again or delete it.
    let (status, _) = t.status(t.as_(&watcher, Method::GET, &path)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = t.status(t.as_(&stranger, Method::GET, &path)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Someone who may operate the session makes their own, and sees only
    // theirs: the owner's is not theirs to see, send again or delete.
    let (status, listed) = t.status(t.as_(&operator, Method::GET, &path)).await;
    assert_eq!((status, listed.as_str()), (StatusCode::OK, "[]"));
    for who in [&watcher, &stranger, &operator] {
        for (method, path) in [
            (
                Method::GET,
                format!("/api/notifications/{endpoint}/messages"),
            ),
            (
                Method::POST,
                format!("/api/notifications/{endpoint}/messages/any/redeliver"),
            ),
            (Method::DELETE, format!("/api/notifications/{endpoint}")),
        ] {
            let (status, _) = t.status(t.as_(who, method, &path)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
    }
    let (status, listed) = t.status(t.as_(&owner, Method::GET, &path)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(listed.contains("hooks.example.com"));
    // A template's notifications are set up by its owner, signed in: not
    // with an API token.
    let (status, template) = t
        .status(
            t.as_(&owner, Method::POST, "/api/templates")
                .json(&json!({"name": "agent"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let template: serde_json::Value = serde_json::from_str(&template).unwrap();
    let (status, _) = t
        .status(
            t.as_(
                &owner,
                Method::POST,
                &format!(
                    "/api/templates/{}/notifications",
                    template["id"].as_str().unwrap()
                ),
            )
            .json(&json!({"url": "https://hooks.example.com/agent"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Its page offers the triggers' form to its owner, signed in, only.
    let id = template["id"].as_str().unwrap();
    let panel = |req: reqwest::RequestBuilder| async {
        let (status, body) = t.status(req.form(&[("template", id)])).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str::<app::triggers::TriggerPanel>(&body).unwrap()
    };
    let signed_in = t.with_cookie(&owner.cookie, Method::POST, "/api/list_triggers");
    assert!(panel(signed_in).await.yours);
    let with_token = t.as_(&owner, Method::POST, "/api/list_triggers");
    assert!(!panel(with_token).await.yours);
    // Signed in, the owner makes the agent's; an admin sees and deletes
    // it, though the agent is not theirs.
    let agent_path = format!("/api/templates/{id}/notifications");
    let (status, made) = t
        .status(
            t.with_cookie(&owner.cookie, Method::POST, &agent_path)
                .json(&json!({"url": "https://hooks.example.com/agent"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let made: serde_json::Value = serde_json::from_str(&made).unwrap();
    let admin = t.person("root", Role::Admin).await;
    let (status, listed) = t.status(t.as_(&admin, Method::GET, &agent_path)).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert!(listed.contains("hooks.example.com/agent"), "{listed}");
    let agent_endpoint = made["endpoint"]["id"].as_str().unwrap();
    let (status, _) = t
        .status(t.as_(
            &admin,
            Method::DELETE,
            &format!("/api/notifications/{agent_endpoint}"),
        ))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Ten each: the operator's nine, beside the owner's one, take none of
    // the owner's places (which the owner could neither see nor free).
    for n in 0..9 {
        let (status, body) = t
            .status(
                t.as_(&operator, Method::POST, &path)
                    .json(&json!({ "url": format!("https://hooks.example.com/op{n}") })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = t
        .status(
            t.as_(&owner, Method::POST, &path)
                .json(&json!({"url": "https://hooks.example.com/second"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = t
        .status(t.as_(
            &owner,
            Method::DELETE,
            &format!("/api/notifications/{endpoint}"),
        ))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_members_agent_cannot_spend_an_admins_secrets_or_git_token() {
    let t = team(&[]).await;
    let member = t.person("mallory", Role::Member).await;
    let admin = t.person("root", Role::Admin).await;
    // Saved by a member who has neither the secret nor the git token: both
    // are checked when a session is made, in its maker's credentials.
    let (status, made) = t
        .status(t.as_(&member, Method::POST, "/api/templates").json(&json!({
            "name": "Deploy",
            "session": {
                "secrets": ["AWS_KEY"],
                "source": {"kind": "git", "url": "https://git.example.com/r.git", "credential": "GITHUB"}
            }
        })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = serde_json::from_str::<serde_json::Value>(&made).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // An admin edits it without holding them either.
    let (status, text) = t
        .status(
            t.as_(&admin, Method::PUT, &format!("/api/templates/{id}"))
                .json(&json!({
                    "name": "Deploy",
                    "description": "Checked by an admin.",
                    "session": {
                        "secrets": ["AWS_KEY"],
                        "source": {"kind": "git", "url": "https://git.example.com/r.git", "credential": "GITHUB"}
                    }
                })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");

    for (kind, name) in [("secret", "AWS_KEY"), ("git_token", "GITHUB")] {
        let (status, text) = t
            .status(
                t.with_cookie(&admin.cookie, Method::POST, "/api/save_credential")
                    .form(&[
                        ("scope", "mine"),
                        ("kind", kind),
                        ("name", name),
                        ("value", "admin-only-value-1234"),
                    ]),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    let sessions = || async {
        let (_, list) = t.status(t.as_(&admin, Method::GET, "/api/sessions")).await;
        serde_json::from_str::<Vec<Session>>(&list).unwrap().len()
    };
    for (body, names) in [
        (
            json!({"template": id}),
            "the secret AWS_KEY and the git token GITHUB",
        ),
        (
            json!({"template": id, "source": {"kind": "empty"}}),
            "names the secret AWS_KEY:",
        ),
    ] {
        let (status, text) = t
            .status(t.as_(&admin, Method::POST, "/api/sessions").json(&body))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
        assert!(text.contains(names), "{text}");
    }
    assert_eq!(sessions().await, 0);
    // Its owner is not refused that way (their own are missing), and an
    // admin's own copy spends the admin's.
    let (status, text) = t
        .status(
            t.as_(&member, Method::POST, "/api/sessions")
                .json(&json!({"template": id})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("AWS_KEY is not saved"), "{text}");
    let (status, copy) = t
        .status(t.as_(
            &admin,
            Method::POST,
            &format!("/api/templates/{id}/duplicate"),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{copy}");
    let copy = serde_json::from_str::<serde_json::Value>(&copy).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, text) = t
        .status(
            t.as_(&admin, Method::POST, "/api/sessions")
                .json(&json!({"template": copy, "source": {"kind": "empty"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
}

#[tokio::test]
async fn one_person_holds_at_most_two_workspace_downloads_and_others_still_get_theirs() {
    let t = team(&[]).await;
    let ann = t.person("ann", Role::Member).await;
    let bob = t.person("bob", Role::Member).await;
    let anns = t.create(&ann, json!({"name": "big"})).await;
    let bobs = t.create(&bob, json!({"name": "small"})).await;
    // 32 MiB that gzip cannot shrink: more than what is read ahead and
    // what the connection buffers, so an archive left unread holds on.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..32 * 1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    let folder = t.home.workspace(anns.id);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("noise.bin"), noise).unwrap();
    let archive = |who: &Person, s: &Session| {
        t.as_(who, Method::GET, &format!("/api/sessions/{}/archive", s.id))
            .send()
    };
    let held = [
        archive(&ann, &anns).await.unwrap(),
        archive(&ann, &anns).await.unwrap(),
    ];
    for res in &held {
        assert_eq!(res.status(), StatusCode::OK);
    }
    let third = archive(&ann, &anns).await.unwrap();
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(third.text().await.unwrap().contains("You have 2"));
    // Bob's is not held up by Ann's.
    let res = archive(&bob, &bobs).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.bytes().await.unwrap();
    // Read to their end, Ann's give their places back.
    for res in held {
        res.bytes().await.unwrap();
    }
    for tries in 0.. {
        let res = archive(&ann, &anns).await.unwrap();
        if res.status() == StatusCode::OK {
            break;
        }
        assert!(tries < 100, "Ann's places were not given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What reaches Paddock without signing in (the sign-in form, a delivery)
/// must come whole within the stall: a body sent a byte at a time, each
/// within the stall, is given up (400) rather than holding its connection
/// for as long as the sender likes.
#[tokio::test]
async fn an_anonymous_body_sent_a_byte_at_a_time_is_given_up() {
    use tokio::io::AsyncWriteExt;
    let t = team(&["--client-stall-secs=1"]).await;
    let url = t.url("");
    let addr = url.trim_start_matches("http://");
    // A webhook trigger, whose delivery's body is read to check it.
    let ada = t.person("ada", Role::Member).await;
    let as_ada = |method, path: &str| t.request(method, path).bearer_auth(&ada.token);
    let agent: serde_json::Value = as_ada(Method::POST, "/api/templates")
        .json(&json!({"name": "hooked"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Made in the dashboard (a token may not make a trigger's secret).
    let trigger: serde_json::Value = t
        .request(
            Method::POST,
            &format!("/api/templates/{}/triggers", agent["id"].as_str().unwrap()),
        )
        .header(header::COOKIE, &ada.cookie)
        .json(&json!({"name": "hook", "prompt": "{{ payload.task }}"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hook = trigger["path"].as_str().unwrap().to_owned();
    // (The sign-in's declares an email's size: what it declares earns it
    // no time, only what comes.)
    for (path, declared) in [("/auth/signin", 40_000_000), (hook.as_str(), 1000)] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        // (A delivery's headers as its sender's: the body is read to
        // check its signature.)
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {declared}\r\n\
             webhook-id: msg_1\r\nwebhook-timestamp: {}\r\nwebhook-signature: v1,AAAA\r\n\r\n",
            chrono::Utc::now().timestamp()
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let (answer, took) = common::trickle_until_answered(&mut tcp).await;
        assert!(took < Duration::from_secs(10), "{path}: {answer}");
        assert!(answer.starts_with("HTTP/1.1 4"), "{path}: {answer}");
    }
}
