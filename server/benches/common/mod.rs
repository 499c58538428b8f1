//! Helpers shared by the benches (each bench is its own crate, so they are
//! included with `mod common;`).

use std::time::Duration;

/// The `p` quantile (0.0..=1.0) of `samples`, nearest rank; sorts them.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

/// Milliseconds with one decimal, as the README tables show them.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
