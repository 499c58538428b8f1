//! The store on each database, side by side: event appends per second
//! (each one its own transaction that takes the next `seq`, as the journal
//! does), by one writer to one session and by 50 sessions' writers at
//! once, and the latency of one append (p50/p99) under that load. SQLite
//! is a file in a temporary folder; PostgreSQL 15 a throw-away cluster
//! started here, as the tests start it (`tests/common/postgres.rs`).
//!
//!     cargo bench --bench store
//!     STORE_BENCH_EVENTS=20000 cargo bench --bench store

#![allow(clippy::unwrap_used, clippy::expect_used)]

use app::domain::{EventKind, NewSession};
use server::store::{self, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[allow(dead_code)] // only its percentile
mod common;
#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use common::percentile;

/// Milliseconds with two decimals: an append takes a fraction of one.
fn fine_ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

const SESSIONS: usize = 50;

fn text(i: usize) -> EventKind {
    EventKind::AssistantText {
        text: format!(
            "Step {i}: the parser now keeps its tests green. {}",
            "x".repeat(200)
        ),
    }
}

async fn session(store: &dyn Store) -> uuid::Uuid {
    let spec = NewSession {
        name: "bench".into(),
        ..Default::default()
    }
    .validate()
    .unwrap();
    store.create_session(&spec, None).await.unwrap().id
}

struct Figures {
    one_writer: f64,
    many_writers: f64,
    p50: Duration,
    p99: Duration,
}

async fn measure(store: Arc<dyn Store>, events: usize) -> Figures {
    let one = session(&*store).await;
    let began = Instant::now();
    for i in 0..events {
        store.append_event(one, &text(i)).await.unwrap().unwrap();
    }
    let one_writer = events as f64 / began.elapsed().as_secs_f64();

    let mut ids = Vec::new();
    for _ in 0..SESSIONS {
        ids.push(session(&*store).await);
    }
    let each = events / SESSIONS;
    let began = Instant::now();
    let writers: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut took = Vec::with_capacity(each);
                for i in 0..each {
                    let t = Instant::now();
                    store.append_event(id, &text(i)).await.unwrap().unwrap();
                    took.push(t.elapsed());
                }
                took
            })
        })
        .collect();
    let mut samples = Vec::new();
    for w in writers {
        samples.extend(w.await.unwrap());
    }
    let many_writers = (each * SESSIONS) as f64 / began.elapsed().as_secs_f64();
    Figures {
        one_writer,
        many_writers,
        p50: percentile(&mut samples, 0.5),
        p99: percentile(&mut samples, 0.99),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let events: usize = std::env::var("STORE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}/bench.db", dir.path().display());
    let postgres = postgres::database().await;
    println!(
        "{events} appends by one writer, then {events} by {SESSIONS} writers (one session each)\n"
    );
    println!("| database | one writer | {SESSIONS} writers | append p50 | append p99 |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, url) in [("SQLite (WAL)", sqlite), ("PostgreSQL 15", postgres)] {
        let store = store::open(&url).await.unwrap();
        let f = measure(store, events).await;
        println!(
            "| {name} | {:.0} events/s | {:.0} events/s | {} | {} |",
            f.one_writer,
            f.many_writers,
            fine_ms(f.p50),
            fine_ms(f.p99)
        );
    }
}
