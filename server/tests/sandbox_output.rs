//! A command printing 1 GiB: the output is capped and the server's memory
//! stays flat. Its own test binary, so no other test's allocations blur the
//! measurement of this process's peak memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::DockerBox;
use server::sandbox::{ExecRequest, Limits, Sandbox};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_gigabyte_of_output_is_truncated_in_flat_memory() {
    let d = DockerBox::start(Limits::default()).await;
    let (sandbox, session) = (&d.sandbox, d.session);

    let before = peak_rss_kib();
    let mut request =
        ExecRequest::new("head -c 1073741824 /dev/zero | tr '\\0' x; echo; echo done");
    request.timeout = Duration::from_secs(300);
    let mut streamed = 0u64;
    let outcome = sandbox
        .exec(session, &request, &CancellationToken::new(), &mut |_, b| {
            streamed += b.len() as u64
        })
        .await
        .unwrap();
    let growth_mib = (peak_rss_kib() - before) / 1024;
    sandbox.destroy(session).await.unwrap();

    assert!(outcome.success(), "{:?}", outcome.exit_code);
    assert!(outcome.truncated);
    assert_eq!(outcome.total_bytes, (1 << 30) + 6);
    assert_eq!(streamed, outcome.total_bytes);
    assert!(outcome.output.len() < 70 * 1024, "{}", outcome.output.len());
    assert!(outcome.output.contains("output truncated"));
    assert!(outcome.output.ends_with("done\n"), "the tail is kept");
    assert!(growth_mib < 32, "peak memory grew by {growth_mib} MiB");
}
