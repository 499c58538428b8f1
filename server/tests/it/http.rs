//! The HTTP surface against a real SQLite file: router tests without a
//! socket, and a real server on port 0.

use crate::common::{self, Home};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use leptos::config::LeptosOptions;
use server::http::{router, AppState};
use tower::ServiceExt;

struct Harness {
    home: Home,
    state: AppState,
}

async fn harness() -> Harness {
    harness_with(&[]).await
}

async fn harness_with(extra: &[&str]) -> Harness {
    let home = Home::new();
    // Local sandboxes: these tests are about HTTP, and must not leave
    // containers behind for the sessions they create.
    let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
    let config = home.config("local", &extra);
    let options = LeptosOptions::builder()
        .output_name("paddock")
        .site_root(home.path().join("site").to_string_lossy().into_owned())
        .build();
    let state = AppState::with_options(&config, options).await.unwrap();
    Harness { home, state }
}

async fn send(h: &Harness, req: Request<Body>) -> (StatusCode, String) {
    let res = router(h.state.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn form_post(uri: &str, body: impl Into<String>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(Body::from(body.into()))
        .unwrap()
}

async fn session_count(h: &Harness) -> usize {
    h.state
        .paddock
        .store
        .list_sessions(None)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn probes_answer() {
    let h = harness().await;
    assert_eq!(
        send(&h, get("/healthz")).await,
        (StatusCode::OK, "ok".into())
    );
    let (status, body) = send(&h, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["database"], "ok");
    // A dependency that fails makes it 503, saying which and not why (the
    // log says): anyone may ask.
    let root = h.home.workspaces();
    std::fs::remove_dir_all(&root).ok();
    std::fs::write(&root, "not a folder").unwrap();
    let (status, body) = send(&h, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["sandbox"]["state"], "unavailable", "{body}");
    assert_eq!(json["database"], "ok", "{body}");
}

#[tokio::test]
async fn home_page_renders_empty_state_then_created_session() {
    let h = harness().await;
    let (status, html) = send(&h, get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("No sessions yet"), "{html}");
    // Framed by no other site, read as no other type, no address of its
    // own given away as the referrer.
    let page = router(h.state.clone()).oneshot(get("/")).await.unwrap();
    let said = |name: &str| page.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(said("x-frame-options"), "DENY");
    assert_eq!(said("x-content-type-options"), "nosniff");
    assert_eq!(said("referrer-policy"), "same-origin");
    // Kept by no cache on the way (nor the browser): a person's page.
    assert_eq!(said("cache-control"), "private, no-store");
    let (parts, body) = page.into_parts();
    let policies: Vec<&str> = parts
        .headers
        .get_all("content-security-policy")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        policies
            .iter()
            .any(|p| p.contains("frame-ancestors 'none'")),
        "{policies:?}"
    );
    // Scripts: the site's own, and the inline ones marked with this
    // answer's nonce (every one the page has), nothing else.
    let nonce = policies
        .iter()
        .find_map(|p| p.strip_prefix("script-src 'self' 'nonce-"))
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("no script policy: {policies:?}"));
    assert!(nonce.len() >= 16, "{nonce}");
    let body = body.collect().await.unwrap().to_bytes();
    let html = String::from_utf8_lossy(&body);
    let inline = html.matches("<script").count() - html.matches("<script src=").count();
    assert!(inline > 0, "{html}");
    assert_eq!(
        html.matches(&format!("<script nonce=\"{nonce}\">")).count()
            + html
                .matches(&format!("<script type=\"module\" nonce=\"{nonce}\">"))
                .count(),
        inline,
        "{html}"
    );
    let listed = router(h.state.clone())
        .oneshot(get("/api/sessions"))
        .await
        .unwrap();
    assert_eq!(listed.headers()["cache-control"], "private, no-store");
    assert!(html.contains("/pkg/paddock.js"), "hydration script missing");

    let (status, body) = send(
        &h,
        form_post(
            "/api/create_session",
            "name=Fix+%3Cb%3Eit%3C%2Fb%3E&model=claude-haiku-4-5",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session: app::domain::Session = serde_json::from_str(&body).unwrap();
    assert_eq!(session.name, "Fix <b>it</b>");
    assert_eq!(session.model, "claude-haiku-4-5");

    let (_, html) = send(&h, get("/")).await;
    assert!(
        html.contains("Fix &lt;b&gt;it&lt;/b&gt;"),
        "name must be escaped: {html}"
    );
    assert!(!html.contains("<b>it</b>"));

    let (status, html) = send(&h, get(&format!("/sessions/{}", session.id))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("claude-haiku-4-5"));
    // The page's title too (leptos_meta writes it as it is given).
    assert!(
        html.contains("<title>Fix &lt;b&gt;it&lt;/b&gt; · Paddock</title>"),
        "title must be escaped: {html}"
    );
    assert!(!html.contains("<b>it</b>"));
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let h = harness().await;
    let long = "x".repeat(10_000);
    for body in [
        // An empty name is fine (it becomes "Untitled session"); these are not.
        "name=ok&permission_mode=sometimes".to_string(),
        "name=ok&engine=emacs".to_string(),
        "name=ok&budget_usd=-1".to_string(),
        "name=ok&budget_usd=lots".to_string(),
        format!("name={long}"),
        "name=ok&model=%3Cscript%3E".to_string(),
        "%%%garbage".to_string(),
        "model=no-name".to_string(),
    ] {
        let (status, msg) = send(&h, form_post("/api/create_session", body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {msg}");
        assert!(!msg.is_empty());
    }
    let (status, _) = send(
        &h,
        form_post(
            "/api/create_session",
            format!("name={}", "y".repeat(3 * 1024 * 1024)),
        ),
    )
    .await;
    assert!(status.is_client_error(), "{status}");
    assert_eq!(session_count(&h).await, 0);
}

#[tokio::test]
async fn unknown_ids_and_paths_are_404() {
    let h = harness().await;
    for uri in [
        "/sessions/not-a-uuid",
        "/sessions/0190f5a0-0000-7000-8000-000000000000",
        "/no/such/page",
    ] {
        let (status, html) = send(&h, get(uri)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert!(html.contains("not found"), "{uri}: {html}");
    }
    let (status, body) = send(
        &h,
        form_post("/api/get_session", "id=..%2F..%2Fetc%2Fpasswd"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("NotFound"), "{body}");
}

/// The site's files: the brotli copy to a browser that takes it, every
/// answer to be revalidated before use (`no-cache`), and a copy of exactly
/// the file's time a 304 without the body (one of another time, older or
/// later, is sent the file), so that no page runs a bundle of another
/// release and twenty tabs fetch it once; `HEAD` and `Range` as for any
/// file, but no part for a copy of another time (`If-Range`). A folder, an
/// unknown name or one no file can have is the page-not-found page; another
/// method on a file a 405; a file that cannot be read a 503.
#[tokio::test]
async fn site_files_go_compressed_and_are_revalidated() {
    let h = harness().await;
    let pkg = h.home.path().join("site/pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("paddock.js"), "console.log('hydrate');").unwrap();
    std::fs::write(pkg.join("paddock.js.br"), "brotli copy").unwrap();
    let ask = |method: &str, uri: &str, headers: &[(&str, &str)]| {
        let request = browser(method, uri, headers, "");
        let router = router(h.state.clone());
        async move { router.oneshot(request).await.unwrap() }
    };
    let text = |res: axum::response::Response| async move {
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    };

    let plain = ask("GET", "/pkg/paddock.js", &[]).await;
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(plain.headers()[header::CACHE_CONTROL], "no-cache");
    let vary: Vec<_> = plain.headers().get_all(header::VARY).iter().collect();
    assert_eq!(vary, ["accept-encoding"]);
    let modified = plain.headers()[header::LAST_MODIFIED]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(text(plain).await, "console.log('hydrate');");

    let brotli = ask("GET", "/pkg/paddock.js", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(brotli.status(), StatusCode::OK);
    assert_eq!(brotli.headers()[header::CONTENT_ENCODING], "br");
    assert_eq!(text(brotli).await, "brotli copy");

    let current = ask(
        "GET",
        "/pkg/paddock.js",
        &[("if-modified-since", &modified)],
    )
    .await;
    assert_eq!(current.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(current.headers()[header::CACHE_CONTROL], "no-cache");
    assert_eq!(current.headers()[header::VARY], "accept-encoding");
    assert_eq!(current.headers()[header::LAST_MODIFIED], modified.as_str());
    assert_eq!(text(current).await, "");
    let since = ("if-modified-since", modified.as_str());
    let head = ask("HEAD", "/pkg/paddock.js", &[since]).await;
    assert_eq!(head.status(), StatusCode::NOT_MODIFIED);
    let br = ("accept-encoding", "br");
    let brotli = ask("GET", "/pkg/paddock.js", &[br]).await;
    let brotli_time = brotli.headers()[header::LAST_MODIFIED].clone();
    let brotli_time = ("if-modified-since", brotli_time.to_str().unwrap());
    let current = ask("GET", "/pkg/paddock.js", &[br, brotli_time]).await;
    assert_eq!(current.status(), StatusCode::NOT_MODIFIED);
    // Beside an entity tag, or given twice, the time is not asked about.
    let tagged = ask(
        "GET",
        "/pkg/paddock.js",
        &[since, ("if-none-match", "\"x\"")],
    )
    .await;
    assert_eq!(tagged.status(), StatusCode::OK);
    let twice = ask("GET", "/pkg/paddock.js", &[since, since]).await;
    assert_eq!(twice.status(), StatusCode::OK);
    let unchanged_since = ("if-unmodified-since", "Thu, 01 Jan 1970 00:00:00 GMT");
    let changed = ask("GET", "/pkg/paddock.js", &[unchanged_since]).await;
    assert_eq!(changed.status(), StatusCode::PRECONDITION_FAILED);
    // A copy of another time is not this file: older, or later (the copy
    // of a release since rolled back).
    for other in [
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "Fri, 01 Jan 2100 00:00:00 GMT",
    ] {
        let stale = ask("GET", "/pkg/paddock.js", &[("if-modified-since", other)]).await;
        assert_eq!(stale.status(), StatusCode::OK, "{other}");
        assert_eq!(text(stale).await, "console.log('hydrate');");
    }

    let head = ask("HEAD", "/pkg/paddock.js", &[]).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()[header::CONTENT_LENGTH], "23");
    let part = ask("GET", "/pkg/paddock.js", &[("range", "bytes=0-6")]).await;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(text(part).await, "console");
    let other_time = ("if-range", "Thu, 01 Jan 1970 00:00:00 GMT");
    let whole = ask(
        "GET",
        "/pkg/paddock.js",
        &[("range", "bytes=8-"), other_time],
    )
    .await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(text(whole).await, "console.log('hydrate');");

    let long = format!("/pkg/{}.js", "n".repeat(300));
    for uri in ["/pkg", "/pkg/", "/pkg/missing.js", &long, "/pkg/%00"] {
        let missing = ask("GET", uri, &[]).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND, "{uri}");
        let page = text(missing).await;
        assert!(page.contains("not found"), "{uri}: {page}");
        // Rendered whole, as every page: the sandbox's warning in place,
        // not a placeholder filled in by a later chunk.
        assert!(page.contains("Weaker isolation"), "{uri}: {page}");
        assert!(!page.contains("<template"), "{uri}: {page}");
    }
    let post = ask("POST", "/pkg/paddock.js", &[]).await;
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()[header::ALLOW], "GET, HEAD");
    for (method, uri) in [
        ("POST", "/pkg/missing.js"),
        ("HEAD", "/pkg/missing.js"),
        ("HEAD", "/pkg/%00"),
        ("POST", "/pkg/%00"),
    ] {
        let missing = ask(method, uri, &[]).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND, "{method} {uri}");
    }
    // An authority alone (CONNECT's form of target) names nothing here.
    let connect = ask("CONNECT", "localhost:443", &[]).await;
    assert!(connect.status().is_client_error(), "{}", connect.status());

    std::os::unix::fs::symlink("loop.js", pkg.join("loop.js")).unwrap();
    let unreadable = ask("GET", "/pkg/loop.js", &[]).await;
    assert_eq!(unreadable.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn serves_on_port_zero_and_shuts_down_gracefully() {
    let h = harness().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, h.state.clone(), async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let res = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .post(format!("http://{addr}/api/create_session"))
        .form(&[("name", "over the wire")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client.get(format!("http://{addr}/")).send().await.unwrap();
    assert!(res.text().await.unwrap().contains("over the wire"));

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn prompt_stop_and_decide_server_functions_refuse_bad_input() {
    let h = harness().await;
    let (_, body) = send(&h, form_post("/api/create_session", "name=talk")).await;
    let session: app::domain::Session = serde_json::from_str(&body).unwrap();
    let id = session.id;
    let (status, _) = send(
        &h,
        form_post("/api/send_prompt", format!("id={id}&text=+++")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(&h, form_post("/api/send_prompt", "id=nope&text=hi")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(&h, form_post("/api/stop_session", format!("id={id}"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(
        &h,
        form_post(
            "/api/decide_permission",
            format!("id={id}&request_id=perm_x&decision=allow"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(
        &h,
        form_post(
            "/api/decide_permission",
            format!("id={id}&request_id=perm_x&decision=maybe"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A reason with control characters (each six bytes in the JSON that
    // carries it to another replica): refused before anything is looked up.
    let (status, said) = send(
        &h,
        form_post(
            "/api/decide_permission",
            format!("id={id}&request_id=perm_x&decision=deny&reason=no%01"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{said}");
    assert!(said.contains("control characters"), "{said}");
    // A body over the dashboard's limit, its length said up front: the
    // refusal in the words the page shows.
    let over = format!("id={id}&text={}", "x".repeat(6 << 20));
    let mut request = form_post("/api/send_prompt", over.clone());
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, over.len().into());
    let (status, said) = send(&h, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    match serde_json::from_str(&said) {
        Ok(app::domain::AppError::TooLarge(why)) => assert!(why.contains("MiB"), "{why}"),
        other => panic!("{said}: {other:?}"),
    }
    let events = h
        .state
        .paddock
        .store
        .events_after(id, 0, 100)
        .await
        .unwrap();
    assert!(events.is_empty(), "nothing stored: {events:?}");

    // The longest prompt, each byte escaped three times as long by the
    // form encoding: taken.
    let longest = "漢".repeat(server::engine::PROMPT_MAX_BYTES / "漢".len());
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("id", &id.to_string())
        .append_pair("text", &longest)
        .finish();
    assert!(form.len() > 3 * 1024 * 1024);
    let (status, said) = send(&h, form_post("/api/send_prompt", form)).await;
    assert_eq!(status, StatusCode::OK, "{said}");
}

/// A request as a browser sends it: with its `Host`, and the other headers
/// given (`Origin`, `Sec-Fetch-Site`, `Referer`, a content type).
fn browser(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Body::from(body.to_owned())).unwrap()
}

/// Every kind of door: pages, static files, server functions, REST and both
/// event streams, as (method, path, content type, body).
fn doors(id: &str) -> Vec<(&'static str, String, &'static str, String)> {
    let form = "application/x-www-form-urlencoded";
    let json = "application/json";
    vec![
        ("GET", "/".into(), "", "".into()),
        ("GET", format!("/sessions/{id}"), "", "".into()),
        ("GET", "/pkg/paddock.css".into(), "", "".into()),
        ("POST", "/api/list_sessions".into(), form, "".into()),
        (
            "POST",
            "/api/create_session".into(),
            form,
            "name=evil&permission_mode=auto".into(),
        ),
        (
            "POST",
            "/api/send_prompt".into(),
            form,
            format!("id={id}&text=rm+-rf+%2F"),
        ),
        ("POST", "/api/stop_session".into(), form, format!("id={id}")),
        (
            "POST",
            "/api/delete_session".into(),
            form,
            format!("id={id}"),
        ),
        ("GET", "/api/sessions".into(), "", "".into()),
        (
            "POST",
            "/api/sessions".into(),
            json,
            r#"{"name":"evil"}"#.into(),
        ),
        ("GET", format!("/api/sessions/{id}"), "", "".into()),
        (
            "POST",
            format!("/api/sessions/{id}/prompt"),
            json,
            r#"{"text":"rm -rf /"}"#.into(),
        ),
        ("POST", format!("/api/sessions/{id}/stop"), "", "".into()),
        ("DELETE", format!("/api/sessions/{id}"), "", "".into()),
        ("GET", format!("/api/sessions/{id}/events"), "", "".into()),
        ("GET", "/api/updates".into(), "", "".into()),
        (
            "GET",
            format!("/api/live?list=true&sessions={id}:0"),
            "",
            "".into(),
        ),
    ]
}

/// Nothing was created, prompted or deleted: only `id` exists, with no event.
async fn untouched(h: &Harness, id: app::domain::SessionId) {
    let sessions = h.state.paddock.store.list_sessions(None).await.unwrap();
    assert_eq!(sessions.iter().map(|s| s.id).collect::<Vec<_>>(), [id]);
    let events = h.state.paddock.store.events_after(id, 0, 10).await.unwrap();
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test]
async fn foreign_hosts_are_refused_at_every_door_but_the_probes() {
    let h = harness().await;
    let (_, body) = send(&h, form_post("/api/create_session", "name=mine")).await;
    let session: app::domain::Session = serde_json::from_str(&body).unwrap();
    for host in [
        "rebind.evil.example",
        "rebind.evil.example:3000",
        "127.0.0.1.evil.example",
    ] {
        for (method, uri, content_type, body) in doors(&session.id.to_string()) {
            let mut headers = vec![("host", host)];
            if !content_type.is_empty() {
                headers.push(("content-type", content_type));
            }
            let (status, text) = send(&h, browser(method, &uri, &headers, &body)).await;
            assert_eq!(
                status,
                StatusCode::MISDIRECTED_REQUEST,
                "{method} {uri} {host}: {text}"
            );
            assert!(text.contains("does not serve the host"), "{text}");
            if uri.starts_with("/api/") {
                let json: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(json["error"]["type"], "misdirected_request");
            }
        }
    }
    untouched(&h, session.id).await;
    for probe in ["/healthz", "/readyz"] {
        let req = browser(
            "GET",
            probe,
            &[("host", "healthcheck.platform.example")],
            "",
        );
        assert_eq!(send(&h, req).await.0, StatusCode::OK, "{probe}");
    }
}

#[tokio::test]
async fn cross_origin_writes_are_forbidden_and_change_nothing() {
    let h = harness().await;
    let (_, body) = send(&h, form_post("/api/create_session", "name=mine")).await;
    let session: app::domain::Session = serde_json::from_str(&body).unwrap();
    let host = ("host", "127.0.0.1:3000");
    let sources: [&[(&str, &str)]; 6] = [
        &[("origin", "http://evil.example")],
        // Another port on loopback is another origin.
        &[("origin", "http://127.0.0.1:8080")],
        &[("origin", "null")],
        &[("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
        &[("referer", "http://evil.example/innocent.html")],
    ];
    for source in sources {
        // Reads change nothing, and a page of another origin cannot read
        // their answers (no CORS headers): only the host check is theirs.
        for (method, uri, content_type, body) in doors(&session.id.to_string())
            .into_iter()
            .filter(|(method, ..)| *method != "GET")
        {
            let mut headers = vec![host];
            headers.extend_from_slice(source);
            if !content_type.is_empty() {
                headers.push(("content-type", content_type));
            }
            let (status, text) = send(&h, browser(method, &uri, &headers, &body)).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {uri} {source:?}: {text}"
            );
            assert!(text.contains("not by Paddock's own pages"), "{text}");
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(json["error"]["type"], "forbidden");
        }
    }
    untouched(&h, session.id).await;
}

/// With sign-in on (as behind a public URL it must be): a signed-in
/// browser's session cookie and a script's `Authorization` header.
async fn signed_in(h: &Harness) -> (String, String) {
    const PASSWORD: &str = "correct horse battery";
    let auth = &h.state.paddock.auth;
    let user = auth
        .add_user(
            "test",
            "ada",
            "Ada",
            app::accounts::Role::Member,
            PASSWORD,
            None,
        )
        .await
        .unwrap();
    let token = auth
        .create_token(&user.caller(), "script", None, None)
        .await
        .unwrap()
        .secret;
    let (status, cookie) = {
        let res = router(h.state.clone())
            .oneshot(browser(
                "POST",
                "/auth/signin",
                &[
                    ("host", "127.0.0.1:3000"),
                    ("origin", "http://127.0.0.1:3000"),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                &format!("login=ada&password={}", PASSWORD.replace(' ', "+")),
            ))
            .await
            .unwrap();
        let cookie = res.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_owned();
        (res.status(), cookie)
    };
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.split(';').next().unwrap().to_owned();
    (cookie, format!("Bearer {token}"))
}

#[tokio::test]
async fn same_origin_pages_and_non_browser_clients_keep_working() {
    let h = harness_with(&["--auth=on", "--public-url=https://paddock.example.com"]).await;
    let (cookie, bearer) = signed_in(&h).await;
    let cookie = ("cookie", cookie.as_str());
    let script = ("authorization", bearer.as_str());
    let form = ("content-type", "application/x-www-form-urlencoded");
    let json = ("content-type", "application/json");
    let created = [
        // The dashboard, with and without its port, and by its public URL
        // behind a proxy that keeps or rewrites the Host.
        browser(
            "POST",
            "/api/create_session",
            &[
                ("host", "127.0.0.1:3000"),
                ("origin", "http://127.0.0.1:3000"),
                form,
                cookie,
            ],
            "name=a",
        ),
        browser(
            "POST",
            "/api/create_session",
            &[
                ("host", "localhost"),
                ("origin", "http://localhost"),
                form,
                cookie,
            ],
            "name=b",
        ),
        browser(
            "POST",
            "/api/create_session",
            &[
                ("host", "paddock.example.com"),
                ("origin", "https://paddock.example.com"),
                form,
                cookie,
            ],
            "name=c",
        ),
        browser(
            "POST",
            "/api/create_session",
            &[
                ("host", "127.0.0.1:3000"),
                ("origin", "https://paddock.example.com"),
                form,
                cookie,
            ],
            "name=d",
        ),
        browser(
            "POST",
            "/api/create_session",
            &[
                ("host", "127.0.0.1:3000"),
                ("sec-fetch-site", "same-origin"),
                form,
                cookie,
            ],
            "name=e",
        ),
        browser(
            "POST",
            "/api/create_session",
            &[
                ("host", "127.0.0.1:3000"),
                ("referer", "http://127.0.0.1:3000/"),
                form,
                cookie,
            ],
            "name=f",
        ),
        // curl and scripts send none of those headers.
        browser(
            "POST",
            "/api/sessions",
            &[("host", "127.0.0.1:3000"), json, script],
            r#"{"name":"g"}"#,
        ),
        browser("POST", "/api/sessions", &[json, script], r#"{"name":"h"}"#),
    ];
    for req in created {
        let what = format!("{:?}", req.headers());
        let (status, text) = send(&h, req).await;
        assert!(status.is_success(), "{what}: {status} {text}");
    }
    assert_eq!(session_count(&h).await, 8);
    let (status, _) = send(
        &h,
        browser("GET", "/", &[("host", "paddock.example.com"), cookie], ""),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// A body refused before it is read as a request says why in its type, as
/// the README lists them, and changes nothing.
#[tokio::test]
async fn a_refused_body_says_why_in_its_type() {
    let h = harness().await;
    let long = format!(r#"{{"name":"{}"}}"#, "x".repeat(3 << 20));
    for (content_type, body, status, kind) in [
        (
            "text/plain",
            r#"{"name":"x"}"#,
            415,
            "unsupported_media_type",
        ),
        ("application/json", long.as_str(), 413, "too_large"),
        ("application/json", "{", 400, "invalid_request"),
        ("application/json", r#"{"name": 7}"#, 400, "invalid_request"),
    ] {
        let req = browser(
            "POST",
            "/api/sessions",
            &[("content-type", content_type)],
            body,
        );
        let (got, text) = send(&h, req).await;
        assert_eq!(got.as_u16(), status, "{content_type}: {text}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["error"]["type"], kind, "{text}");
    }
    assert_eq!(session_count(&h).await, 0);
}

/// What Paddock keeps (workspaces, clones of private repositories, the
/// CLI's homes) is its user's only: made so, or tightened at start where
/// it is its own and was open to others.
#[tokio::test]
async fn what_paddock_keeps_is_its_users_only() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    std::fs::create_dir_all(home.workspaces()).unwrap();
    std::fs::set_permissions(home.workspaces(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // One another account owns (a volume shared on purpose) is left as it
    // is, and the server starts (giving a folder away takes root).
    let shared = home.path().join("cc");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o775)).unwrap();
    let given = rustix::process::geteuid().is_root()
        && std::os::unix::fs::chown(&shared, Some(65534), Some(65534)).is_ok();
    let _paddock = common::open(&home, "local", &[]).await;
    for folder in [home.workspaces(), home.path().join("git")] {
        let mode = std::fs::metadata(&folder).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", folder.display());
    }
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, if given { 0o775 } else { 0o700 });
}
