//! Sandboxes on a remote Docker host (`DOCKER_HOST` over TCP to another
//! machine, or `PADDOCK_DOCKER_REMOTE`): nothing of this server's
//! filesystem reaches them, so
//! - the workspace is a Docker volume on that host, `paddock-ws-<session>`
//!   (the image's `/workspace` must belong to the sandbox user, as in
//!   Paddock's image: a new volume takes its owner from it);
//! - the agent's binary is uploaded, root's and read-only to the sandbox,
//!   into an anonymous volume at [`AGENT_DIR`] (the root filesystem is
//!   read-only, and the Docker API writes only into volumes there) before
//!   each start (and into a sandbox an older server left running, should
//!   its agent not answer), and is started with `--stdio`: its connection
//!   is the `docker exec`'s own streams, carried by the Docker API's
//!   connection (mutual TLS to another machine);
//! - the workspace's files go through the agent
//!   ([`AgentWorkspace`](super::agent_workspace::AgentWorkspace)).
//!
//! What needs this server's folders is refused when a session asks for it
//! (read-only mounts, folder and git sources, network access through the
//! egress proxy, the claude-code engine), and a template's instructions
//! and skills fail the session's preparation, with why.

use super::agent_link::{AgentConnection, AgentLinks};
use super::{sandbox_user, Result, SandboxError, MOUNT_POINT};
use app::domain::SessionId;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{Mount, MountType, MountVolumeOptions};
use bollard::query_parameters::UploadToContainerOptionsBuilder;
use bollard::Docker;
use bytes::Bytes;
use futures_util::StreamExt;
use paddock_sandbox_agent::{AGENT_DIR, AGENT_NAME, AGENT_PATH};
use std::collections::HashMap;
use std::path::Path;

/// Bytes of one write of the agent's stderr that are logged.
const STDERR_LOGGED: usize = 1024;

/// The Docker volume holding a session's workspace.
pub fn workspace_volume(session: SessionId) -> String {
    format!("paddock-ws-{session}")
}

/// What a sandbox mounts: its workspace's volume (with `labels`, its
/// container's, so a server finds its own), made at the first start and
/// taking its owner from the image's `/workspace`; and a new empty volume
/// for the agent's binary, root's whatever the image holds there.
pub fn volumes(session: SessionId, labels: HashMap<String, String>) -> Vec<Mount> {
    vec![
        Mount {
            target: Some(MOUNT_POINT.to_owned()),
            source: Some(workspace_volume(session)),
            typ: Some(MountType::VOLUME),
            volume_options: Some(MountVolumeOptions {
                labels: Some(labels),
                ..Default::default()
            }),
            ..Default::default()
        },
        Mount {
            target: Some(AGENT_DIR.to_owned()),
            typ: Some(MountType::VOLUME),
            volume_options: Some(MountVolumeOptions {
                no_copy: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]
}

/// The agent's binary as the tar the Docker API takes: one file, root's,
/// that the sandbox user may run but not change.
pub fn agent_tar(bin: &Path) -> std::io::Result<Bytes> {
    let binary = std::fs::read(bin)?;
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(binary.len() as u64);
    header.set_mode(0o555);
    header.set_uid(0);
    header.set_gid(0);
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_data(&mut header, AGENT_NAME, &binary[..])?;
    tar.into_inner().map(Bytes::from)
}

/// Puts the agent's binary into the (created, not running) sandbox.
pub async fn upload_agent(docker: &Docker, container: &str, tar: &Bytes) -> Result<()> {
    let options = UploadToContainerOptionsBuilder::new()
        .path(AGENT_DIR)
        .build();
    docker
        .upload_to_container(container, Some(options), bollard::body_full(tar.clone()))
        .await
        .map_err(|e| SandboxError::Failed(format!("cannot put the sandbox agent in place: {e}")))
}

/// Starts the agent in the running sandbox with `--stdio`, and takes the
/// exec's streams as its connection. What the agent says on stderr is
/// logged.
pub async fn start_agent(
    docker: &Docker,
    container: &str,
    session: SessionId,
    env: Vec<String>,
    agents: &AgentLinks,
) -> std::result::Result<AgentConnection, String> {
    let options = CreateExecOptions {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        // A terminal would mangle the bytes (and its detach keys end the
        // stream).
        tty: Some(false),
        cmd: Some(vec![AGENT_PATH.to_owned(), "--stdio".to_owned()]),
        env: Some(env),
        working_dir: Some(MOUNT_POINT.to_owned()),
        user: Some(sandbox_user()),
        ..Default::default()
    };
    let exec = docker
        .create_exec(container, options)
        .await
        .map_err(|e| e.to_string())?;
    let StartExecResults::Attached { input, output } = docker
        .start_exec(&exec.id, None)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Err("its streams could not be attached".into());
    };
    let stdout = output.filter_map(move |item| async move {
        match item {
            Ok(LogOutput::StdOut { message }) => Some(Ok(message)),
            Ok(LogOutput::StdErr { message }) => {
                let said = String::from_utf8_lossy(&message[..message.len().min(STDERR_LOGGED)]);
                tracing::warn!(%session, "the sandbox agent: {}", said.trim_end());
                None
            }
            Ok(_) => None,
            Err(e) => Some(Err(std::io::Error::other(e))),
        }
    });
    let io = tokio::io::join(tokio_util::io::StreamReader::new(Box::pin(stdout)), input);
    agents.attach(session, io).await
}
