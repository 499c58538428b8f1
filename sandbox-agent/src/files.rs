//! The agent's `/fs/` operations on `/workspace`, for a sandbox whose files
//! are not on the server's host: each path confined by the kernel inside
//! the sandbox too ([`ConfinedFolder`]), a refusal answered with
//! [`FILE_ERROR_STATUS`] and the [`FileError`] as JSON.

use super::{answer, read_json, read_start, streamed, whole, Body};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use paddock_sandbox_agent::archive::archive_gz;
use paddock_sandbox_agent::folder::{ConfinedFolder, FileError, MOUNT_POINT};
use paddock_sandbox_agent::search::{self, Bounds, SearchError, Timed};
use paddock_sandbox_agent::watch::Watch;
use paddock_sandbox_agent::{
    record, Archive, FilePath, Kind, FILE_ERROR_STATUS, SIZE_HEADER, WRITE_MAX_BYTES,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Bytes of a file sent per frame.
const CHUNK: usize = 64 * 1024;
/// How long a batch of changes gathers those that follow its first.
const SETTLE: Duration = Duration::from_millis(150);

fn workspace() -> ConfinedFolder {
    // The agent is the sandbox user: what it makes is already its own.
    ConfinedFolder::new(PathBuf::from(MOUNT_POINT), None)
}

/// Runs a folder operation off the agent's one thread.
async fn blocking<T: Send + 'static>(
    op: impl FnOnce(&ConfinedFolder) -> Result<T, FileError> + Send + 'static,
) -> Result<T, FileError> {
    tokio::task::spawn_blocking(move || op(&workspace()))
        .await
        .unwrap_or_else(|e| {
            Err(FileError::Io {
                path: String::new(),
                message: format!("the file operation failed: {e}"),
            })
        })
}

/// A refusal: a [`FileError`] or a [`SearchError`].
fn refused(e: &impl serde::Serialize) -> Response<Body> {
    let status = StatusCode::from_u16(FILE_ERROR_STATUS).unwrap_or(StatusCode::BAD_REQUEST);
    whole(status, serde_json::to_vec(e).unwrap_or_default())
}

fn json_answer(value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(json) => whole(StatusCode::OK, json),
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `/fs/read`: the file's bytes as they are read, its size in
/// [`SIZE_HEADER`]; a failed read resets the answer.
pub async fn read(request: Request<Incoming>) -> Response<Body> {
    let FilePath { path } = match read_json(request).await {
        Ok(path) => path,
        Err(why) => return answer(StatusCode::BAD_REQUEST, &why),
    };
    let open = match blocking(move |folder| folder.open_file(&path)).await {
        Ok(open) => open,
        Err(e) => return refused(&e),
    };
    let file = tokio::fs::File::from_std(open.file).take(open.size);
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        let mut chunk = vec![0u8; CHUNK];
        match file.read(&mut chunk).await {
            Ok(0) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok(Frame::data(Bytes::from(chunk))), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
    response.headers_mut().insert(SIZE_HEADER, open.size.into());
    response
}

/// `/fs/list`: the folder's entries, sorted by name.
pub async fn list(request: Request<Incoming>) -> Response<Body> {
    match read_json::<FilePath>(request).await {
        Ok(FilePath { path }) => match blocking(move |folder| folder.list(&path)).await {
            Ok(entries) => json_answer(&entries),
            Err(e) => refused(&e),
        },
        Err(why) => answer(StatusCode::BAD_REQUEST, &why),
    }
}

/// `/fs/stat`: what a path is, a link inside the workspace followed.
pub async fn stat(request: Request<Incoming>) -> Response<Body> {
    match read_json::<FilePath>(request).await {
        Ok(FilePath { path }) => match blocking(move |folder| folder.stat(&path)).await {
            Ok(stat) => json_answer(&stat),
            Err(e) => refused(&e),
        },
        Err(why) => answer(StatusCode::BAD_REQUEST, &why),
    }
}

/// `/fs/glob`: the [`GlobMatches`](search::GlobMatches) as JSON.
pub async fn glob(request: Request<Incoming>) -> Response<Body> {
    searched(request, search::glob).await
}

/// `/fs/grep`: the [`GrepMatches`](search::GrepMatches) as JSON.
pub async fn grep(request: Request<Incoming>) -> Response<Body> {
    searched(request, search::grep).await
}

/// A search as [`Timed`] asks, answered once done; a [`SearchError`] is
/// answered with [`FILE_ERROR_STATUS`] and itself as JSON. A server that
/// stops waiting (its time limit, a Stop) resets the request, which stops
/// the search.
async fn searched<Q, T>(
    request: Request<Incoming>,
    search: fn(&ConfinedFolder, &Q, &Bounds) -> Result<T, SearchError>,
) -> Response<Body>
where
    Q: serde::de::DeserializeOwned + Send + 'static,
    T: serde::Serialize + Send + 'static,
{
    let Timed { query, timeout_ms } = match read_json::<Timed<Q>>(request).await {
        Ok(timed) => timed,
        Err(why) => return answer(StatusCode::BAD_REQUEST, &why),
    };
    let timeout = Duration::from_millis(timeout_ms);
    let found = search::bounded(timeout, std::future::pending(), move |bounds| {
        search(&workspace(), &query, bounds)
    })
    .await;
    match found {
        Ok(found) => json_answer(&found),
        Err(e) => refused(&e),
    }
}

/// `/fs/watch`: the workspace's changes as they come, a batch a stdout
/// record (the [`Changes`](paddock_sandbox_agent::watch::Changes) as
/// JSON), until the server stops reading.
pub async fn watch() -> Response<Body> {
    let made = tokio::task::spawn_blocking(|| Watch::new(Path::new(MOUNT_POINT))).await;
    let mut watch = match made {
        Ok(Ok(watch)) => watch,
        Ok(Err(e)) => {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot watch the workspace: {e}"),
            )
        }
        Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        loop {
            let changes = tokio::select! {
                changes = watch.next(SETTLE) => changes,
                () = tx.closed() => return,
            };
            let Ok(changes) = changes else { return };
            let json = serde_json::to_vec(&changes).unwrap_or_default();
            if tx
                .send(Bytes::from(record(Kind::Stdout, &json)))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    streamed(rx, None)
}

/// `/fs/delete`: a file, a link or a folder with all it holds.
pub async fn delete(request: Request<Incoming>) -> Response<Body> {
    match read_json::<FilePath>(request).await {
        Ok(FilePath { path }) => match blocking(move |folder| folder.delete(&path)).await {
            Ok(()) => answer(StatusCode::NO_CONTENT, ""),
            Err(e) => refused(&e),
        },
        Err(why) => answer(StatusCode::BAD_REQUEST, &why),
    }
}

/// `/fs/write`: the path in the start record, then the file's bytes; the
/// file is replaced whole once they are all there.
pub async fn write(request: Request<Incoming>) -> Response<Body> {
    let mut body = request.into_body();
    let (FilePath { path }, mut records) = match read_start(&mut body).await {
        Ok(start) => start,
        Err(why) => return answer(StatusCode::BAD_REQUEST, &why),
    };
    let mut data = Vec::new();
    loop {
        while let Some(record) = records.next_record() {
            match record {
                Ok((Kind::Stdin, bytes)) if data.len() + bytes.len() <= WRITE_MAX_BYTES => {
                    data.extend_from_slice(&bytes)
                }
                Ok((Kind::Stdin, _)) => {
                    return answer(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("a file of more than {WRITE_MAX_BYTES} bytes"),
                    )
                }
                Ok(_) => return answer(StatusCode::BAD_REQUEST, "only the file's bytes follow"),
                Err(why) => return answer(StatusCode::BAD_REQUEST, &why),
            }
        }
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(bytes) = frame.into_data() {
                    records.push(&bytes);
                }
            }
            Some(Err(e)) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    &format!("the file's bytes were cut short: {e}"),
                )
            }
        }
    }
    if records.has_partial() {
        return answer(
            StatusCode::BAD_REQUEST,
            "the file's last record was cut short",
        );
    }
    match blocking(move |folder| folder.write(&path, &data)).await {
        Ok(()) => answer(StatusCode::NO_CONTENT, ""),
        Err(e) => refused(&e),
    }
}

/// `/fs/archive`: the workspace as a gzipped tar, made as it is sent; a
/// failed read resets the answer.
pub async fn archive(request: Request<Incoming>) -> Response<Body> {
    let Archive { top } = match read_json(request).await {
        Ok(archive) => archive,
        Err(why) => return answer(StatusCode::BAD_REQUEST, &why),
    };
    let mut chunks = archive_gz(workspace(), top);
    let frames = futures_util::stream::poll_fn(move |cx| {
        chunks.poll_recv(cx).map(|c| c.map(|c| c.map(Frame::data)))
    });
    Response::new(BodyExt::boxed(StreamBody::new(frames)))
}
