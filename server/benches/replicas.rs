//! Paddock replicas on one PostgreSQL 15 (a throw-away cluster started
//! here, as the tests start it): three of them, all in this process with
//! local sandboxes, beside a Paddock on SQLite.
//!
//! - How long a stored event takes to reach a viewer on the replica that
//!   stored it and on the two others (through `LISTEN/NOTIFY` and a read
//!   from the store), one event at a time and in a burst.
//! - 50 sessions streaming at once (token fragments at 50 a second each,
//!   and a stored block after every ten): the latency of fragments and of
//!   stored events for a viewer in the same process on SQLite, on the same
//!   replica on PostgreSQL, and on another replica.
//! - How long a session whose replica is gone (its lease left to lapse)
//!   waits until a survivor takes it over.
//!
//! ```text
//! cargo bench --bench replicas
//! REPLICAS_BENCH_EVENTS=5000 cargo bench --bench replicas
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use app::domain::{Delta, DeltaKind, EventKind, NewSession, SessionId, SessionStatus};
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
/// Sessions streaming at once, and what each one streams.
const STREAMS: usize = 50;
const BLOCKS: usize = 10;
const FRAGMENTS_PER_BLOCK: usize = 10;
const FRAGMENT_EVERY: Duration = Duration::from_millis(20);

fn fine_ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A Paddock on `database` named `name` (its own folder under `dir`).
async fn replica(dir: &Path, name: &str, database: &str) -> Paddock {
    let dir = dir.join(name);
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
        "--master-key=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".to_owned(),
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

/// Follows a viewer's channel until `count` events arrived: the `seq` of
/// the last one so far, and when each arrived.
fn follow(
    mut rx: broadcast::Receiver<HubMessage>,
    count: usize,
) -> (
    tokio::sync::watch::Receiver<i64>,
    tokio::task::JoinHandle<Vec<Instant>>,
) {
    let (tx, seen) = tokio::sync::watch::channel(0);
    let task = tokio::spawn(async move {
        let mut arrived = Vec::with_capacity(count);
        while arrived.len() < count {
            if let HubMessage::Event(e) = rx.recv().await.unwrap() {
                arrived.push(Instant::now());
                tx.send_replace(e.seq);
            }
        }
        arrived
    });
    (seen, task)
}

/// The time since `base` a fragment or block was sent at, as its text.
fn stamp(base: Instant) -> String {
    base.elapsed().as_nanos().to_string()
}

fn since_stamp(base: Instant, text: &str) -> Duration {
    base.elapsed()
        .saturating_sub(Duration::from_nanos(text.parse().unwrap()))
}

struct Streamed {
    fragments: Vec<Duration>,
    events: Vec<Duration>,
    fragments_sent: usize,
    blocks_sent: usize,
}

/// [`STREAMS`] sessions streaming from `producer` at once, each followed by
/// a viewer on `viewer`.
async fn streaming(producer: &Paddock, viewer: &Paddock) -> Streamed {
    let base = Instant::now();
    let mut viewers = Vec::new();
    let mut producers = Vec::new();
    for _ in 0..STREAMS {
        let s = session(producer).await;
        let mut rx = viewer.hub.subscribe(s);
        viewers.push(tokio::spawn(async move {
            let (mut fragments, mut events) = (Vec::new(), Vec::new());
            // Until the last block (its `seq` is BLOCKS), or a quiet spell
            // if a lagging channel dropped it.
            loop {
                let received = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
                match received {
                    Ok(Ok(HubMessage::Delta(d))) => fragments.push(since_stamp(base, &d.text)),
                    Ok(Ok(HubMessage::Event(e))) => {
                        if let EventKind::AssistantText { text } = &e.kind {
                            events.push(since_stamp(base, text));
                        }
                        if e.seq >= BLOCKS as i64 {
                            break;
                        }
                    }
                    // No workspace watched here.
                    Ok(Ok(HubMessage::Files(_))) => {}
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                    Ok(Err(e)) => panic!("{e}"),
                    Err(_) => break,
                }
            }
            (fragments, events)
        }));
        let journal = producer.journal.clone();
        producers.push(tokio::spawn(async move {
            for block in 0..BLOCKS {
                for _ in 0..FRAGMENTS_PER_BLOCK {
                    journal.delta(Delta {
                        session_id: s,
                        seq_hint: block as i64,
                        block: 0,
                        kind: DeltaKind::Text,
                        text: stamp(base),
                    });
                    tokio::time::sleep(FRAGMENT_EVERY).await;
                }
                let text = stamp(base);
                journal
                    .record(s, EventKind::AssistantText { text })
                    .await
                    .unwrap();
            }
        }));
    }
    for p in producers {
        p.await.unwrap();
    }
    let mut streamed = Streamed {
        fragments: Vec::new(),
        events: Vec::new(),
        fragments_sent: STREAMS * BLOCKS * FRAGMENTS_PER_BLOCK,
        blocks_sent: STREAMS * BLOCKS,
    };
    for v in viewers {
        let (fragments, events) = v.await.unwrap();
        streamed.fragments.extend(fragments);
        streamed.events.extend(events);
    }
    streamed
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
    let c = replica(dir.path(), "c", &database).await;

    // One event at a time: stored on A, seen on A, B and C, each viewer
    // noting arrivals in a task of its own.
    let s = session(&a).await;
    let viewers: Vec<_> = [&a, &b, &c]
        .into_iter()
        .map(|replica| follow(replica.hub.subscribe(s), events))
        .collect();
    let mut began = Vec::with_capacity(events);
    for i in 0..events {
        began.push(Instant::now());
        let seq = a.journal.record(s, text(i)).await.unwrap().seq;
        for (seen, _) in &viewers {
            seen.clone().wait_for(|last| *last >= seq).await.unwrap();
        }
    }
    let mut latencies = Vec::new();
    for (_, arrived) in viewers {
        let arrived = arrived.await.unwrap();
        latencies.push(
            arrived
                .iter()
                .zip(&began)
                .map(|(r, b)| *r - *b)
                .collect::<Vec<_>>(),
        );
    }
    let [mut local, mut remote, mut third] = <[Vec<Duration>; 3]>::try_from(latencies).unwrap();

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

    println!("{events} events stored on replica A (one transaction each), seen by a viewer on each of three replicas\n");
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
        "| stored on A → viewer on C, one at a time | {} | {} |",
        fine_ms(percentile(&mut third, 0.5)),
        fine_ms(percentile(&mut third, 0.99))
    );
    println!(
        "| stored on A → viewer on B, burst of {events} ({:.0} events/s through) | {} | {} |",
        events as f64 / burst_took.as_secs_f64(),
        fine_ms(percentile(&mut burst, 0.5)),
        fine_ms(percentile(&mut burst, 0.99))
    );

    // 50 sessions streaming: SQLite beside PostgreSQL, same replica or not.
    let sqlite = replica(
        dir.path(),
        "sqlite",
        &format!("sqlite://{}/sqlite.db", dir.path().display()),
    )
    .await;
    println!(
        "\n{STREAMS} sessions streaming at once: {FRAGMENTS_PER_BLOCK} fragments {} ms apart, then a stored block, {BLOCKS} times each\n",
        FRAGMENT_EVERY.as_millis()
    );
    println!("| database, viewer | fragments seen | fragment p50 | fragment p99 | blocks seen | block p50 | block p99 |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (label, producer, viewer) in [
        ("SQLite, same process", &sqlite, &sqlite),
        ("PostgreSQL, same replica", &a, &a),
        ("PostgreSQL, another replica", &a, &b),
    ] {
        // A first pass warms the pools and caches up; the second counts.
        streaming(producer, viewer).await;
        let mut st = streaming(producer, viewer).await;
        println!(
            "| {label} | {} of {} | {} | {} | {} of {} | {} | {} |",
            st.fragments.len(),
            st.fragments_sent,
            fine_ms(percentile(&mut st.fragments, 0.5)),
            fine_ms(percentile(&mut st.fragments, 0.99)),
            st.events.len(),
            st.blocks_sent,
            fine_ms(percentile(&mut st.events, 0.5)),
            fine_ms(percentile(&mut st.events, 0.99)),
        );
    }

    // Takeover: a session mid-turn under the lease of a replica that is
    // gone, until a survivor (A, B or C) marks it interrupted.
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
