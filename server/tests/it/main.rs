//! The server's integration tests, in one binary so that a 2-core machine
//! links them once: real SQLite files and PostgreSQL clusters, a real Docker
//! daemon and agent image (and a second daemon over TLS), the deploy image,
//! the real Claude Code CLI, real servers on port 0, and the scripted model
//! server as the only stand-in (the real API is unreachable). The memory
//! bound of capped output is measured in a binary of its own
//! (`sandbox_output.rs`), where no other test allocates beside it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod claude_code;
mod credential_store;
mod deploy_image;
mod docker_tls;
mod egress;
mod engine;
mod events;
mod git_workspace;
mod http;
mod llm;
mod mcp;
mod metrics;
mod mounts;
mod notifications;
mod recovery;
mod replicas;
mod sandbox;
mod secrets;
mod skills;
mod store;
mod templates;
mod terminal;
mod tools;
mod triggers;
mod workspace_files;
