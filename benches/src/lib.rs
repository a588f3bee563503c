//! Benchmarks live in `benches/`; this library holds what the benchmark programs in
//! `src/bin` share.
//!
//! ```
//! let mut ms = vec![3.0, 1.0, 2.0, 4.0];
//! assert_eq!(conduit_benches::percentile(&mut ms, 0.5), 3.0);
//! assert_eq!(conduit_benches::percentile(&mut ms, 1.0), 4.0);
//! ```

pub mod sim;

/// The `p` quantile (0.0-1.0) of `samples`, nearest rank; sorts them. NaN when empty.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(i).copied().unwrap_or(f64::NAN)
}
