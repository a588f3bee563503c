//! `nvidia-smi --query-gpu=… --format=csv,noheader,nounits` output, parsed robustly.

use crate::{Sample, SampleKind};

/// The fields asked of `nvidia-smi`, in order.
pub const QUERY_FIELDS: &str = "index,name,uuid,temperature.gpu,utilization.gpu,utilization.memory,memory.used,memory.total,power.draw,power.limit,clocks.sm";

/// The command line that prints [`QUERY_FIELDS`].
pub fn query_command() -> String {
    format!("nvidia-smi --query-gpu={QUERY_FIELDS} --format=csv,noheader,nounits")
}

/// A number, or absent for `[N/A]`, `[Not Supported]`, empty and anything unreadable.
fn number(field: &str) -> Option<f64> {
    field.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// One GPU sample per well-formed line (lines with too few fields are skipped). Names may
/// contain commas only if they are the sole text field: fields are counted from both ends.
pub fn parse_gpu_csv(target: &str, text: &str) -> Vec<Sample> {
    const N: usize = 11;
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < N {
            continue;
        }
        // A name with commas: everything between the index and the last nine fields.
        let extra = fields.len() - N;
        let name = fields[1..=1 + extra].join(", ");
        let f = |i: usize| fields[i + extra];
        let Some(index) = number(fields[0]) else {
            continue;
        };
        let mib = |v: Option<f64>| v.map(|m| m * 1024.0 * 1024.0);
        out.push(
            Sample::new(target, SampleKind::Gpu)
                .with("index", index)
                .with("name", name.as_str())
                .with("uuid", f(2))
                .with_opt("temperature_celsius", number(f(3)))
                .with_opt("utilization_ratio", number(f(4)).map(|p| p / 100.0))
                .with_opt("memory_utilization_ratio", number(f(5)).map(|p| p / 100.0))
                .with_opt("memory_used_bytes", mib(number(f(6))))
                .with_opt("memory_total_bytes", mib(number(f(7))))
                .with_opt("power_watts", number(f(8)))
                .with_opt("power_limit_watts", number(f(9)))
                .with_opt("sm_clock_hertz", number(f(10)).map(|m| m * 1e6)),
        );
    }
    out
}
