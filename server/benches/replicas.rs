//! Two Paddock replicas on one PostgreSQL 15 (a throw-away cluster started
//! here, as the tests start it), both in this process with local
//! sandboxes: how long a stored event takes to reach a viewer on the other
//! replica (through `LISTEN/NOTIFY` and a read from the store) beside one
//! on the replica that stored it, one event at a time and in a burst; and
//! how long a session whose replica is gone (its lease left to lapse)
//! waits until a survivor takes it over.
//!
//!     cargo bench --bench replicas
//!     REPLICAS_BENCH_EVENTS=5000 cargo bench --bench replicas

#![allow(clippy::unwrap_used, clippy::expect_used)]

use app::domain::{EventKind, NewSession, SessionId, SessionStatus};
use clap::Parser;
use server::hub::HubMessage;
use server::paddock::Paddock;
use server::Config;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

#[allow(dead_code)] // only its percentile
mod common;
#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use common::percentile;

const LEASE_SECS: u64 = 3;
const TAKEOVERS: usize = 5;

fn fine_ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn replica(dir: &Path, name: &str, database: &str) -> Paddock {
    let config = Config::parse_from([
        "paddock".to_owned(),
        format!("--database-url={database}"),
        "--sandbox=local".to_owned(),
        "--auth=off".to_owned(),
        format!("--replica={name}"),
        format!("--lease-secs={LEASE_SECS}"),
        format!("--workspace-root={}", dir.join("workspaces").display()),
        format!("--claude-code-root={}", dir.join("cc").display()),
        format!("--git-root={}", dir.join("git").display()),
        format!("--master-key-file={}", dir.join("master.key").display()),
    ]);
    let paddock = Paddock::open(config).await.unwrap();
    paddock.recover().await.unwrap();
    paddock
}

async fn session(paddock: &Paddock) -> SessionId {
    let spec = NewSession {
        name: "bench".into(),
        ..Default::default()
    }
    .validate()
    .unwrap();
    paddock.store.create_session(&spec, None).await.unwrap().id
}

fn text(i: usize) -> EventKind {
    EventKind::AssistantText {
        text: format!("Step {i}: the parser now keeps its tests green."),
    }
}

/// Waits for the event `seq` on a viewer's channel; when it came.
async fn arrival(rx: &mut broadcast::Receiver<HubMessage>, seq: i64) -> Instant {
    loop {
        match rx.recv().await.unwrap() {
            HubMessage::Event(e) if e.seq == seq => return Instant::now(),
            _ => {}
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let events: usize = std::env::var("REPLICAS_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let database = postgres::database().await;
    let a = replica(dir.path(), "a", &database).await;
    let b = replica(dir.path(), "b", &database).await;

    // One event at a time: stored on A, seen on A and on B.
    let s = session(&a).await;
    let (mut on_a, mut on_b) = (a.hub.subscribe(s), b.hub.subscribe(s));
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for i in 0..events {
        let began = Instant::now();
        let seq = a.journal.record(s, text(i)).await.unwrap().seq;
        local.push(arrival(&mut on_a, seq).await - began);
        remote.push(arrival(&mut on_b, seq).await - began);
    }

    // A burst: every event stored back to back while a viewer on B notes
    // when each arrives.
    let s = session(&a).await;
    let mut on_b = b.hub.subscribe(s);
    let last = events as i64;
    let viewer = tokio::spawn(async move {
        let mut arrived = Vec::with_capacity(events);
        while arrived.len() < events {
            if let HubMessage::Event(e) = on_b.recv().await.unwrap() {
                assert_eq!(e.seq, arrived.len() as i64 + 1, "in order, each once");
                arrived.push(Instant::now());
            }
        }
        arrived
    });
    let began = Instant::now();
    let mut stored = Vec::with_capacity(events);
    for i in 0..events {
        a.journal.record(s, text(i)).await.unwrap();
        stored.push(Instant::now());
    }
    let arrived = viewer.await.unwrap();
    assert_eq!(arrived.len() as i64, last);
    let mut burst: Vec<Duration> = arrived.iter().zip(&stored).map(|(r, s)| *r - *s).collect();
    let burst_took = arrived.last().unwrap().duration_since(began);

    println!("{events} events stored on replica A (one transaction each), seen by a viewer on each replica\n");
    println!("| path | p50 | p99 |");
    println!("| --- | --- | --- |");
    println!(
        "| stored on A → viewer on A, one at a time | {} | {} |",
        fine_ms(percentile(&mut local, 0.5)),
        fine_ms(percentile(&mut local, 0.99))
    );
    println!(
        "| stored on A → viewer on B, one at a time | {} | {} |",
        fine_ms(percentile(&mut remote, 0.5)),
        fine_ms(percentile(&mut remote, 0.99))
    );
    println!(
        "| stored on A → viewer on B, burst of {events} ({:.0} events/s through) | {} | {} |",
        events as f64 / burst_took.as_secs_f64(),
        fine_ms(percentile(&mut burst, 0.5)),
        fine_ms(percentile(&mut burst, 0.99))
    );

    // Takeover: a session mid-turn under the lease of a replica that is
    // gone, until a survivor marks it interrupted.
    let mut waits = Vec::new();
    for _ in 0..TAKEOVERS {
        let s = session(&a).await;
        let mut on_b = b.hub.subscribe(s);
        let now = chrono::Utc::now();
        let lease = Duration::from_secs(LEASE_SECS);
        a.store
            .acquire_lease(s, "gone", now, now + lease)
            .await
            .unwrap();
        a.store
            .set_status(s, SessionStatus::Running, None)
            .await
            .unwrap();
        let began = Instant::now();
        loop {
            if let HubMessage::Event(e) = on_b.recv().await.unwrap() {
                if matches!(
                    e.kind,
                    EventKind::Status {
                        status: SessionStatus::Interrupted,
                        ..
                    }
                ) {
                    break;
                }
            }
        }
        waits.push(began.elapsed());
    }
    println!(
        "\nA session of a replica that is gone, taken over by a survivor ({TAKEOVERS} times, lease {LEASE_SECS} s, heartbeat every {} ms): p50 {}, slowest {}",
        LEASE_SECS * 1000 / 3,
        fine_ms(percentile(&mut waits.clone(), 0.5)),
        fine_ms(*waits.iter().max().unwrap())
    );
}
