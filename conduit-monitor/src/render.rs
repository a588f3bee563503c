//! Rendering samples: Prometheus text exposition and the human-readable layout.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::{Sample, SampleKind, Value};

/// Text metrics that become labels (low cardinality: identities, not free text).
fn label_fields(kind: SampleKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        SampleKind::Host => &[],
        SampleKind::Disk => &[("mount", "mount")],
        SampleKind::Gpu => &[("index", "gpu"), ("uuid", "uuid")],
        SampleKind::GpuProcess => &[
            ("gpu_uuid", "uuid"),
            ("pid", "pid"),
            ("container", "container"),
        ],
        SampleKind::Container => &[("name", "container")],
        #[allow(
            unreachable_patterns,
            reason = "non_exhaustive within the crate is exhaustive"
        )]
        _ => &[],
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// Renders samples in the Prometheus text format: `conduit_<type>_<metric>{target=…,…} value`,
/// one `# TYPE` per family (`counter` for names ending in `_total`, `gauge` otherwise),
/// booleans as 0/1, and per-kind info series (`conduit_gpu_info{name=…}`,
/// `conduit_container_info{image=…,state=…,health=…}`) for descriptive texts.
pub fn prometheus(samples: &[Sample]) -> String {
    // family → lines, so that each family's samples are contiguous.
    let mut families: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in samples {
        let kind = s.kind.as_str();
        let mut labels = vec![format!("target=\"{}\"", escape(&s.target))];
        for (field, label) in label_fields(s.kind) {
            match s.metrics.get(*field) {
                Some(Value::Text(t)) => labels.push(format!("{label}=\"{}\"", escape(t))),
                Some(Value::Number(n)) => labels.push(format!("{label}=\"{}\"", format_number(*n))),
                _ => {}
            }
        }
        let labels = labels.join(",");
        let mut info = Vec::new();
        for (name, value) in &s.metrics {
            if label_fields(s.kind).iter().any(|(f, _)| f == name) {
                continue;
            }
            let number = match value {
                Value::Number(n) => *n,
                Value::Bool(b) => f64::from(u8::from(*b)),
                Value::Text(t) => {
                    info.push(format!("{name}=\"{}\"", escape(t)));
                    continue;
                }
            };
            let family = format!("conduit_{kind}_{name}");
            families
                .entry(family.clone())
                .or_default()
                .push(format!("{family}{{{labels}}} {}", format_number(number)));
        }
        if !info.is_empty() {
            let family = format!("conduit_{kind}_info");
            families
                .entry(family.clone())
                .or_default()
                .push(format!("{family}{{{labels},{}}} 1", info.join(",")));
        }
    }
    let mut out = String::new();
    for (family, lines) in families {
        let kind = if family.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# HELP {family} {}", help(&family));
        let _ = writeln!(out, "# TYPE {family} {kind}");
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// The HELP text of a monitor family (`conduit_KIND_FIELD`): what is sampled, of what,
/// in which unit.
fn help(family: &str) -> String {
    let rest = family.strip_prefix("conduit_").unwrap_or(family);
    let (of, field) = [
        ("gpu_process_", "each process on a GPU"),
        ("container_", "each container"),
        ("host_", "each host"),
        ("disk_", "each mounted filesystem"),
        ("gpu_", "each GPU"),
    ]
    .iter()
    .find_map(|(prefix, of)| rest.strip_prefix(prefix).map(|f| (*of, f)))
    .unwrap_or(("each monitored target", rest));
    if field == "info" {
        return format!("Descriptive labels of {of} (value always 1).");
    }
    let named = match field {
        "load1" => Some("Load average over 1 minute"),
        "load5" => Some("Load average over 5 minutes"),
        "load15" => Some("Load average over 15 minutes"),
        "cpu_cores" => Some("CPU cores"),
        _ => None,
    };
    if let Some(what) = named {
        return format!("{what} of {of}, at the last monitor round.");
    }
    let (what, unit) = [
        ("_bytes_total", "in bytes since boot"),
        ("_bytes", "in bytes"),
        ("_ratio", "as a share from 0 to 1"),
        ("_celsius", "in degrees Celsius"),
        ("_watts", "in watts"),
        ("_seconds", "in seconds"),
        ("_total", "counted since start"),
    ]
    .iter()
    .find_map(|(suffix, unit)| field.strip_suffix(suffix).map(|w| (w, *unit)))
    .unwrap_or((field, "as sampled"));
    let what = what.replace('_', " ");
    let mut first = what.chars();
    let what = first
        .next()
        .map(|c| c.to_uppercase().chain(first).collect::<String>())
        .unwrap_or_default();
    format!("{what} of {of}, {unit}, at the last monitor round.")
}

const GB: f64 = 1e9;

/// The human-readable layout of the original tool, per target: host line, GPUs
/// (`GPU 0: NVIDIA H200 | Util: 87% | Mem: 72.1/141.1 GB | Temp: 62°C`), disks, containers.
pub fn human(samples: &[Sample]) -> String {
    let mut targets: Vec<&str> = samples.iter().map(|s| s.target.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    let mut out = String::new();
    for target in targets {
        let of = |kind| {
            samples
                .iter()
                .filter(move |s| s.target == target && s.kind == kind)
        };
        let _ = writeln!(out, "== {target}");
        for h in of(SampleKind::Host) {
            let pct = |v: Option<f64>| v.map_or("n/a".to_owned(), |r| format!("{:.0}%", r * 100.0));
            let _ = writeln!(
                out,
                "CPU: {} of {} cores | Load: {} | Mem: {} | Uptime: {}",
                pct(h.number("cpu_usage_ratio")),
                h.number("cpu_cores").map_or("?".into(), format_number),
                match (h.number("load1"), h.number("load5"), h.number("load15")) {
                    (Some(a), Some(b), Some(c)) => format!("{a:.2} {b:.2} {c:.2}"),
                    _ => "n/a".into(),
                },
                match (
                    h.number("memory_used_bytes"),
                    h.number("memory_total_bytes")
                ) {
                    (Some(u), Some(t)) => format!("{:.1}/{:.1} GB", u / GB, t / GB),
                    _ => "n/a".into(),
                },
                h.number("uptime_seconds").map_or("n/a".into(), |s| {
                    let s = s as u64;
                    format!("{}d {}h {}m", s / 86_400, s % 86_400 / 3600, s % 3600 / 60)
                }),
            );
        }
        for g in of(SampleKind::Gpu) {
            let _ = writeln!(
                out,
                "GPU {}: {} | Util: {} | Mem: {} | Temp: {}{}",
                g.number("index").map_or("?".into(), format_number),
                g.text("name").unwrap_or("?"),
                g.number("utilization_ratio")
                    .map_or("n/a".into(), |r| format!("{:.0}%", r * 100.0)),
                match (
                    g.number("memory_used_bytes"),
                    g.number("memory_total_bytes")
                ) {
                    (Some(u), Some(t)) => format!("{:.1}/{:.1} GB", u / GB, t / GB),
                    _ => "n/a".into(),
                },
                g.number("temperature_celsius")
                    .map_or("n/a".into(), |t| format!("{t:.0}°C")),
                g.number("power_watts")
                    .map_or(String::new(), |w| format!(" | Power: {w:.0} W")),
            );
        }
        for p in of(SampleKind::GpuProcess) {
            let _ = writeln!(
                out,
                "  pid {} {} {} on {}{}",
                p.number("pid").map_or("?".into(), format_number),
                p.text("name").unwrap_or("?"),
                p.number("used_memory_bytes")
                    .map_or("n/a".into(), |b| format!("{:.1} GB", b / GB)),
                p.text("gpu_uuid").unwrap_or("?"),
                p.text("container")
                    .map_or(String::new(), |c| format!(" (container {c})")),
            );
        }
        for d in of(SampleKind::Disk) {
            let _ = writeln!(
                out,
                "Disk {}: {} of {} ({})",
                d.text("mount").unwrap_or("?"),
                d.number("used_bytes")
                    .map_or("n/a".into(), |b| format!("{:.1} GB", b / GB)),
                d.number("size_bytes")
                    .map_or("n/a".into(), |b| format!("{:.1} GB", b / GB)),
                d.number("used_ratio")
                    .map_or("n/a".into(), |r| format!("{:.0}%", r * 100.0)),
            );
        }
        let containers: Vec<&Sample> = of(SampleKind::Container).collect();
        if !containers.is_empty() {
            let _ = writeln!(
                out,
                "{:<24} {:<10} {:<10} {:>7} {:>18} {:>8}",
                "CONTAINER", "STATE", "HEALTH", "CPU", "MEM", "RESTARTS"
            );
            for c in containers {
                let _ = writeln!(
                    out,
                    "{:<24} {:<10} {:<10} {:>7} {:>18} {:>8}",
                    c.text("name").unwrap_or("?"),
                    c.text("state").unwrap_or("?"),
                    c.text("health").unwrap_or("-"),
                    c.number("cpu_usage_ratio")
                        .map_or("-".into(), |r| format!("{:.1}%", r * 100.0)),
                    match (
                        c.number("memory_used_bytes"),
                        c.number("memory_limit_bytes")
                    ) {
                        (Some(u), Some(l)) => format!("{:.0}/{:.0} MB", u / 1e6, l / 1e6),
                        (Some(u), None) => format!("{:.0} MB", u / 1e6),
                        _ => "-".into(),
                    },
                    c.number("restart_count").map_or("-".into(), format_number),
                );
            }
        }
    }
    out
}
