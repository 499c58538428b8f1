//! A session's workspace through its doors (sign-in on, a real server on
//! port 0, the local sandbox's host folders): folders, a file shown,
//! downloads of a file and of the whole workspace, uploads; who may do
//! which; and hostile paths, names and bodies, which change nothing.

use crate::accounts::{team, Person, Team};
use app::accounts::Role;
use app::domain::Session;
use reqwest::header;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::Read;

const BOUNDARY: &str = "paddock-test-boundary";

/// A multipart upload body: `dir`, then each `(file name, bytes)`.
fn multipart(dir: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body =
        format!("--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"dir\"\r\n\r\n{dir}\r\n")
            .into_bytes();
    for (name, data) in files {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"file\"; \
                 filename=\"{name}\"\r\ncontent-type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn upload(t: &Team, who: &Person, s: &Session, body: Vec<u8>) -> reqwest::RequestBuilder {
    t.as_(who, Method::POST, &format!("/api/sessions/{}/files", s.id))
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
}

async fn get(t: &Team, who: &Person, path: &str) -> reqwest::Response {
    t.as_(who, Method::GET, path).send().await.unwrap()
}

/// The paths and contents of a `.tar.gz`, sorted; a link's content is
/// `-> ` and what it names.
fn untar(gz: &[u8]) -> Vec<(String, String)> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut tar)
        .unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut found: Vec<_> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut text = String::new();
            e.read_to_string(&mut text).unwrap_or_default();
            if let Some(target) = e.link_name().unwrap() {
                text = format!("-> {}", target.display());
            }
            (e.path().unwrap().display().to_string(), text)
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn people_browse_download_and_upload_what_they_may() {
    let t = team(&[]).await;
    let owner = t.person("olive", Role::Member).await;
    let watcher = t.person("walt", Role::Member).await;
    let stranger = t.person("sid", Role::Member).await;
    let viewer = t.person("vera", Role::Viewer).await;
    let s = t.create(&owner, json!({"name": "Fix the build!"})).await;
    t.share(&owner, &s, &watcher, "watch").await;
    // A viewer stays a reader, even with an operate share.
    t.share(&owner, &s, &viewer, "operate").await;
    let base = format!("/api/sessions/{}", s.id);

    // Before its sandbox ever started, the workspace is there and empty.
    let res = get(&t, &owner, &format!("{base}/files")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap(), json!([]));

    // The owner uploads two files into a folder.
    let body = multipart(
        "src",
        &[
            ("main.rs", b"fn main() { println!(\"<hi>\"); }"),
            ("logo.bin", &[0, 159, 1, 2]),
        ],
    );
    let (status, written) = t.status(upload(&t, &owner, &s, body)).await;
    assert_eq!(status, StatusCode::CREATED, "{written}");
    let written: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(written[0]["path"], "src/main.rs");
    let host = server::sandbox::workspace_dir(&t.paddock.config.workspace_root, s.id);
    assert_eq!(
        std::fs::read(host.join("src/main.rs")).unwrap(),
        b"fn main() { println!(\"<hi>\"); }"
    );
    // A link planted in the workspace that leaves it.
    std::os::unix::fs::symlink("/etc/passwd", host.join("escape")).unwrap();

    // The watcher browses, sees a file highlighted, downloads it and the
    // whole workspace.
    let listed: Value = get(&t, &watcher, &format!("{base}/files?path=src"))
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["src/logo.bin", "src/main.rs"]);
    let id = s.id.to_string();
    let (status, shown) = t
        .call(
            &watcher,
            "view_file",
            &[("id", &id), ("path", "src/main.rs")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    let html = shown["content"]["Text"].as_str().unwrap();
    assert!(
        html.contains("&lt;hi&gt;") && !html.contains("<hi>"),
        "{html}"
    );
    let (_, binary) = t
        .call(
            &watcher,
            "view_file",
            &[("id", &id), ("path", "src/logo.bin")],
        )
        .await;
    assert!(binary.contains("Binary"), "{binary}");

    let res = get(&t, &watcher, &format!("{base}/files/src/main.rs")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let headers = res.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"main.rs\""));
    assert_eq!(
        res.bytes().await.unwrap(),
        &b"fn main() { println!(\"<hi>\"); }"[..]
    );
    // HEAD says what the download would be, without reading it; what GET
    // refuses, it refuses alike.
    let head = |who: &Person, path: &str| {
        t.as_(who, Method::HEAD, &format!("{base}/files/{path}"))
            .send()
    };
    let res = head(&watcher, "src/main.rs").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_LENGTH], "31");
    assert_eq!(
        res.headers()[header::CONTENT_DISPOSITION],
        headers[header::CONTENT_DISPOSITION]
    );
    assert!(res.bytes().await.unwrap().is_empty());
    for (path, status) in [
        ("src", StatusCode::BAD_REQUEST),
        ("nope.rs", StatusCode::NOT_FOUND),
        ("escape", StatusCode::BAD_REQUEST),
        ("src%2F..%2F..%2Fx", StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(
            head(&watcher, path).await.unwrap().status(),
            status,
            "{path}"
        );
        assert_eq!(
            get(&t, &watcher, &format!("{base}/files/{path}"))
                .await
                .status(),
            status,
            "{path}"
        );
    }
    assert_eq!(
        head(&stranger, "src/main.rs").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let res = get(&t, &watcher, &format!("{base}/archive")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .contains("Fix-the-build.tar.gz"));
    let files = untar(&res.bytes().await.unwrap());
    let paths: Vec<_> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "Fix-the-build/escape",
            "Fix-the-build/src/",
            "Fix-the-build/src/logo.bin",
            "Fix-the-build/src/main.rs"
        ],
    );
    assert_eq!(
        files[0].1, "-> /etc/passwd",
        "the link that leaves the workspace is a link, nothing read through it"
    );
    assert_eq!(files[3].1, "fn main() { println!(\"<hi>\"); }");

    // …but may not upload; a stranger sees nothing, through every door.
    for reader in [&watcher, &viewer] {
        let (status, _) = t
            .status(upload(&t, reader, &s, multipart("", &[("w.txt", b"w")])))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let res = get(&t, reader, &format!("{base}/files/src/main.rs")).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert!(!host.join("w.txt").exists());
    for path in [
        format!("{base}/files"),
        format!("{base}/files/src/main.rs"),
        format!("{base}/archive"),
    ] {
        let res = get(&t, &stranger, &path).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(!res.text().await.unwrap().contains("main"), "{path}");
    }
    let (status, _) = t
        .status(upload(&t, &stranger, &s, multipart("", &[("x.txt", b"x")])))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Only who may operate it deletes: a reader is refused, a stranger
    // finds nothing, through both doors; nothing goes.
    let delete =
        |who: &Person, path: &str| t.as_(who, Method::DELETE, &format!("{base}/files/{path}"));
    for (who, refused) in [
        (&watcher, StatusCode::FORBIDDEN),
        (&viewer, StatusCode::FORBIDDEN),
        (&stranger, StatusCode::NOT_FOUND),
    ] {
        assert_eq!(t.status(delete(who, "src/main.rs")).await.0, refused);
        let (status, _) = t
            .call(who, "delete_file", &[("id", &id), ("path", "src")])
            .await;
        assert_eq!(status, refused);
    }
    assert!(host.join("src/main.rs").exists());
    let (status, _) = t
        .call(
            &stranger,
            "view_file",
            &[("id", &id), ("path", "src/main.rs")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A browser's form post goes back to the Files view of that folder,
    // also when it is refused (with the error's type, never its text).
    let posted = |body: Vec<u8>| async {
        let res = t
            .with_cookie(&owner.cookie, Method::POST, &format!("{base}/files"))
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .header(header::ACCEPT, "text/html")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        res.headers()[header::LOCATION].to_str().unwrap().to_owned()
    };
    assert_eq!(
        posted(multipart("/workspace/docs/", &[("../../x", b"x")])).await,
        format!(
            "/sessions/{}?view=files&dir=docs&error=invalid_request",
            s.id
        )
    );
    assert_eq!(
        posted(multipart("docs", &[("notes.md", b"# Notes")])).await,
        format!("/sessions/{}?view=files&dir=docs", s.id)
    );
    // The owner deletes a file, then a folder with all it holds (the link
    // that leaves the workspace goes, what it names stays).
    let (status, said) = t.status(delete(&owner, "docs/notes.md")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{said}");
    assert!(!host.join("docs/notes.md").exists());
    std::os::unix::fs::symlink("/etc", host.join("src/etc")).unwrap();
    let (status, said) = t
        .call(&owner, "delete_file", &[("id", &id), ("path", "src")])
        .await;
    assert_eq!(status, StatusCode::OK, "{said}");
    assert!(!host.join("src").exists());
    assert!(std::path::Path::new("/etc/passwd").exists());
    assert_eq!(
        t.status(delete(&owner, "src")).await.0,
        StatusCode::NOT_FOUND
    );
    std::fs::write(host.join("docs/notes.md"), "# Notes").unwrap();

    // And the page renders that view on the server.
    let (status, page) = t
        .status(t.with_cookie(
            &owner.cookie,
            Method::GET,
            &format!(
                "/sessions/{}?view=files&dir=docs&file=docs%2Fnotes.md",
                s.id
            ),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("notes.md") && page.contains("# Notes"),
        "{page}"
    );
}

#[tokio::test]
async fn hostile_paths_names_and_bodies_change_nothing() {
    let t = team(&[]).await;
    let me = t.person("hana", Role::Member).await;
    let s = t.create(&me, json!({"name": "target"})).await;
    let base = format!("/api/sessions/{}", s.id);
    let host = server::sandbox::workspace_dir(&t.paddock.config.workspace_root, s.id);
    t.status(upload(&t, &me, &s, multipart("", &[("ok.txt", b"ok")])))
        .await;
    std::os::unix::fs::symlink("/etc/passwd", host.join("escape")).unwrap();
    std::os::unix::fs::symlink("looped", host.join("looped")).unwrap();
    // A pipe the agent made: reading or writing it would block for ever.
    let made = std::process::Command::new("mkfifo")
        .arg(host.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    let before = t
        .status(t.as_(&me, Method::GET, &format!("{base}/files")))
        .await;
    assert!(before.1.contains("pipe"), "{}", before.1);

    // Reads that would leave the workspace: 400, and no byte of outside.
    for path in [
        format!("{base}/files/..%2F..%2F..%2Fetc%2Fpasswd"),
        format!("{base}/files/%2Fetc%2Fpasswd"),
        format!("{base}/files/escape"),
        format!("{base}/files/looped"),
        format!("{base}/files/pipe"),
        format!("{base}/files/a%00b"),
        format!("{base}/files/{}", "n".repeat(300)),
        format!("{base}/files?path=..%2F.."),
        format!("{base}/files?path=%2Fetc"),
    ] {
        let res = get(&t, &me, &path).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {text}");
        assert!(!text.contains("root:"), "{path}: {text}");
    }
    let res = get(&t, &me, &format!("{base}/files/nope.txt")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Deletions that would leave the workspace, take it whole, or name
    // what no file system holds: 400, nothing gone.
    let too_long = "n".repeat(300);
    for path in [
        "..%2F..%2Fevil",
        "%2Fetc%2Fpasswd",
        "a%00b",
        "%2Fworkspace",
        "%2F",
        "src%2F..",
        &too_long,
    ] {
        let (status, text) = t
            .status(t.as_(&me, Method::DELETE, &format!("{base}/files/{path}")))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {text}");
    }
    assert!(host.join("ok.txt").exists() && host.join("escape").is_symlink());
    assert!(std::path::Path::new("/etc/passwd").exists());
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/api/sessions/{unknown}/files"),
        format!("/api/sessions/{unknown}/archive"),
        "/api/sessions/not-an-id/files/x".to_owned(),
        // A path that is not UTF-8 names nothing.
        format!("{base}/files/%FF"),
    ] {
        assert_eq!(
            get(&t, &me, &path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let res = get(&t, &me, &format!("{base}/files?unknown=1")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // Uploads with names that leave, unknown parts, a broken body, no
    // file, one too big: refused whole, nothing written anywhere.
    let outside = host.parent().unwrap().join("evil");
    let refused: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        (
            "leaves by ..",
            multipart("", &[("fine.txt", b"1"), ("../evil", b"2")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "leaves by its folder",
            multipart("../..", &[("evil", b"2")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "absolute",
            multipart("", &[("/etc/evil", b"2")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "through a link",
            multipart("escape", &[("evil", b"2")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "onto a pipe",
            multipart("", &[("pipe", b"2")]),
            StatusCode::BAD_REQUEST,
        ),
        ("no file", multipart("", &[]), StatusCode::BAD_REQUEST),
        (
            "unknown part",
            format!(
                "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"other\"\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
            )
            .into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "cut short",
            format!("--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc")
                .into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "too big",
            multipart(
                "",
                &[("fine.txt", b"1"), ("big.bin", &vec![7u8; app::files::UPLOAD_MAX_BYTES + 1])],
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        // A folder of thousands of parts for many empty files (it was
        // cleaned again for each, and kept whole with each: gigabytes).
        (
            "a folder past PATH_MAX",
            multipart(&"a/".repeat(2100), &[("x", b"")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a name past NAME_MAX",
            multipart("", &[(&"n".repeat(256), b"1")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "too many files",
            multipart("", &vec![("e", &b"1"[..]); 10_001]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (what, body, expected) in refused {
        let (status, text) = t.status(upload(&t, &me, &s, body)).await;
        assert_eq!(status, expected, "{what}: {text}");
        let json: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: {text}"));
        assert!(json["error"]["message"].is_string(), "{what}: {text}");
    }
    let no_boundary = t
        .as_(&me, Method::POST, &format!("{base}/files"))
        .header(header::CONTENT_TYPE, "multipart/form-data")
        .body("x");
    assert_eq!(t.status(no_boundary).await.0, StatusCode::BAD_REQUEST);
    let not_multipart = t
        .as_(&me, Method::POST, &format!("{base}/files"))
        .json(&json!({"file": "x"}));
    assert_eq!(t.status(not_multipart).await.0, StatusCode::BAD_REQUEST);
    // Someone who may not upload is refused before the body is read.
    let stranger = t.person("stan", Role::Member).await;
    let (status, _) = t
        .status(upload(
            &t,
            &stranger,
            &s,
            vec![b'x'; app::files::UPLOAD_MAX_BYTES * 2],
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!outside.exists());
    assert!(
        !host.join("fine.txt").exists(),
        "a refused upload writes nothing"
    );
    assert!(std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .contains("root"));
    let after = t
        .status(t.as_(&me, Method::GET, &format!("{base}/files")))
        .await;
    assert_eq!(before, after);
    // A deep folder of many long names, whose listing (each entry's path
    // and name) would be over 16 MiB: refused, not built.
    let deep = vec!["d".repeat(250); 14].join("/");
    std::fs::create_dir_all(host.join(&deep)).unwrap();
    for i in 0..4_400 {
        std::fs::File::create(host.join(&deep).join(format!("{i:0>255}"))).unwrap();
    }
    let (status, text) = t
        .status(t.as_(&me, Method::GET, &format!("{base}/files?path={deep}")))
        .await;
    let said = &text[..text.len().min(300)];
    assert_eq!(status, StatusCode::BAD_REQUEST, "{said}");
    assert!(text.contains("too many entries"), "{said}");
}

/// A request sent by hand on a connection of its own, which takes little
/// at a time (a small receive window): its head, and the first `body`
/// bytes of what it says is longer.
async fn half_sent(t: &Team, who: &Person, head: &str, body: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let url = t.url("");
    let addr = url.trim_start_matches("http://");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr.parse().unwrap()).await.unwrap();
    let request = format!(
        "{head}\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
        who.token
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    tcp
}

/// All a connection receives until the server closes it.
async fn rest_of(mut tcp: tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tcp.read_to_end(&mut got),
    );
    // A connection the server drops with bytes unread may end in a reset.
    let _ = read.await.expect("the server closes the connection");
    got
}

/// An upload sent a byte at a time, each within the stall, is ended all
/// the same once it is not whole within the stall and the time what came
/// takes at 64 KiB/s: it holds its slot no longer.
#[tokio::test]
async fn an_upload_sent_a_byte_at_a_time_is_ended() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = team(&["--client-stall-secs=3"]).await;
    let me = t.person("sam", Role::Member).await;
    let s = t.create(&me, json!({"name": "trickle"})).await;
    std::fs::create_dir_all(server::sandbox::workspace_dir(
        &t.paddock.config.workspace_root,
        s.id,
    ))
    .unwrap();
    let head = format!(
        "POST /api/sessions/{}/files HTTP/1.1\r\nContent-Type: multipart/form-data; \
         boundary={BOUNDARY}\r\nContent-Length: 100000",
        s.id
    );
    let mut tcp = half_sent(&t, &me, &head, format!("--{BOUNDARY}\r\n").as_bytes()).await;
    // A byte a second, for up to 20 s: the answer comes before.
    let started = std::time::Instant::now();
    let (mut answer, mut buf) = (Vec::new(), [0u8; 64]);
    while answer.len() < 12 {
        tokio::select! {
            read = tcp.read(&mut buf) => match read.unwrap() {
                0 => break,
                n => answer.extend_from_slice(&buf[..n]),
            },
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                assert!(started.elapsed() < std::time::Duration::from_secs(20), "still read");
                let _ = tcp.write_all(b"x").await;
            }
        }
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn stalled_uploads_and_unread_archives_hold_no_slot() {
    let t = team(&["--client-stall-secs=3"]).await;
    let me = t.person("sam", Role::Member).await;
    let s = t.create(&me, json!({"name": "slow"})).await;
    let host = server::sandbox::workspace_dir(&t.paddock.config.workspace_root, s.id);
    std::fs::create_dir_all(&host).unwrap();
    // Bytes gzip cannot shrink, more than the sockets between here and
    // the server hold, so that an archive nobody reads stops.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..1024 * 1024)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    std::fs::write(host.join("noise.bin"), &noise).unwrap();

    // As many uploads as run at once (two people's, as one person holds
    // two), each sending part of its body and then nothing, and an
    // archive nobody reads.
    let other = t.person("kim", Role::Member).await;
    let theirs = t.create(&other, json!({"name": "also slow"})).await;
    let upload_head = |s: &Session| {
        format!(
            "POST /api/sessions/{}/files HTTP/1.1\r\nContent-Type: multipart/form-data; \
             boundary={BOUNDARY}\r\nContent-Length: 100000",
            s.id
        )
    };
    let mut stalled = Vec::new();
    for (who, session) in [(&me, &s), (&me, &s), (&other, &theirs), (&other, &theirs)] {
        stalled.push(
            half_sent(
                &t,
                who,
                &upload_head(session),
                format!("--{BOUNDARY}\r\n").as_bytes(),
            )
            .await,
        );
    }
    let unread = half_sent(
        &t,
        &me,
        &format!("GET /api/sessions/{}/archive HTTP/1.1", s.id),
        b"",
    )
    .await;
    // Downloads of a file nobody reads hold a slot each, four a person.
    let mut unread_files = Vec::new();
    for _ in 0..4 {
        unread_files.push(
            half_sent(
                &t,
                &me,
                &format!("GET /api/sessions/{}/files/noise.bin HTTP/1.1", s.id),
                b"",
            )
            .await,
        );
    }
    // While they wait, the slots are taken; and a connection that sends
    // nothing at all is closed after the stall too.
    let silent = tokio::net::TcpStream::connect(t.url("").trim_start_matches("http://"))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let small = || multipart("", &[("ok.txt", b"ok")]);
    let (status, said) = t.status(upload(&t, &me, &s, small())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{said}");
    let file = format!("/api/sessions/{}/files/noise.bin", s.id);
    assert_eq!(
        get(&t, &me, &file).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Once they have sent nothing for the stall, each is answered with a
    // 400 and its slot is free.
    for tcp in stalled {
        let answer = String::from_utf8_lossy(&rest_of(tcp).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    let (status, said) = t.status(upload(&t, &me, &s, small())).await;
    assert_eq!(status, StatusCode::CREATED, "{said}");
    assert!(rest_of(silent).await.is_empty());

    // The archive was given up once it had sent what the connection holds
    // and then waited for its reader for the stall: what was sent ahead, then no clean end
    // (a chunked body's last chunk), so its reader cannot take it for the
    // whole workspace.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let got = rest_of(unread).await;
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(got.len() < noise.len(), "{} bytes came", got.len());
    assert!(!got.ends_with(b"\r\n0\r\n\r\n"));
    // The unread downloads gave their slots up too.
    let res = get(&t, &me, &file).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().len(), noise.len());
    drop(unread_files);
    // And the next archive comes whole.
    let res = get(&t, &me, &format!("/api/sessions/{}/archive", s.id)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&res.bytes().await.unwrap()[..])
        .read_to_end(&mut tar)
        .unwrap();
    let sizes: Vec<_> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().display().to_string(), e.size())
        })
        .collect();
    assert!(
        sizes.contains(&("slow/noise.bin".to_owned(), noise.len() as u64)),
        "{sizes:?}"
    );
}
