//! Parsers of Linux's /proc files and of `df -P -B1`, shared by the local and SSH sources.
//! Every parser takes text and returns what it could read; none panics on any input.

/// Aggregate CPU times from the first line of /proc/stat, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// Time spent idle (idle + iowait).
    pub idle: u64,
    /// All time (every column, guest time excluded as it is already in user time).
    pub total: u64,
}

impl CpuTimes {
    /// CPU use between `earlier` and `self` as a ratio 0-1; `None` if no time passed.
    pub fn usage_since(&self, earlier: &Self) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let idle = self.idle.checked_sub(earlier.idle)?;
        (total > 0).then(|| (1.0 - idle as f64 / total as f64).clamp(0.0, 1.0))
    }
}

/// CPU use between successive samples of one host.
#[derive(Debug, Default)]
pub(crate) struct CpuTracker(std::sync::Mutex<Option<CpuTimes>>);

impl CpuTracker {
    /// CPU use since the previous call; since boot on the first. With no tick since the
    /// previous call, the average since boot, keeping the older reference point so the next
    /// delta spans real time.
    pub(crate) fn usage(&self, now: CpuTimes) -> Option<f64> {
        let mut previous = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match now.usage_since(&previous.unwrap_or_default()) {
            Some(usage) => {
                *previous = Some(now);
                Some(usage)
            }
            None => now.usage_since(&CpuTimes::default()),
        }
    }
}

/// Reads /proc/stat: aggregate times and the number of CPUs (`cpuN` lines).
pub fn parse_stat(text: &str) -> Option<(CpuTimes, u32)> {
    let mut times = None;
    let mut cores = 0u32;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let values: Vec<u64> = fields.take(8).map_while(|f| f.parse().ok()).collect();
                if values.len() >= 4 {
                    let idle = values[3].saturating_add(values.get(4).copied().unwrap_or(0));
                    let total = values.iter().fold(0u64, |a, v| a.saturating_add(*v));
                    times = Some(CpuTimes { idle, total });
                }
            }
            Some(name)
                if name.starts_with("cpu") && name[3..].chars().all(|c| c.is_ascii_digit()) =>
            {
                cores += 1;
            }
            _ => {}
        }
    }
    times.map(|t| (t, cores))
}

/// Reads /proc/loadavg: the 1, 5 and 15 minute load averages.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut f = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().ok().filter(|x| x.is_finite()));
    Some([f.next()??, f.next()??, f.next()??])
}

/// Memory from /proc/meminfo, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    /// MemTotal.
    pub total: Option<u64>,
    /// MemAvailable.
    pub available: Option<u64>,
    /// SwapTotal.
    pub swap_total: Option<u64>,
    /// SwapFree.
    pub swap_free: Option<u64>,
}

/// Reads /proc/meminfo (values in kB).
pub fn parse_meminfo(text: &str) -> Memory {
    let mut m = Memory::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let Some(value) = parts.next().and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        let bytes = match parts.next() {
            Some("kB") => value.saturating_mul(1024),
            None => value,
            Some(_) => continue,
        };
        match key {
            "MemTotal" => m.total = Some(bytes),
            "MemAvailable" => m.available = Some(bytes),
            "SwapTotal" => m.swap_total = Some(bytes),
            "SwapFree" => m.swap_free = Some(bytes),
            _ => {}
        }
    }
    m
}

/// Reads /proc/uptime: seconds since boot.
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_whitespace()
        .next()?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// Reads /proc/net/dev: received and sent bytes summed over every interface but `lo`.
pub fn parse_net_dev(text: &str) -> Option<(u64, u64)> {
    let mut rx = 0u64;
    let mut tx = 0u64;
    let mut any = false;
    for line in text.lines().skip(2) {
        let Some((iface, rest)) = line.split_once(':') else {
            continue;
        };
        if iface.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map_while(|f| f.parse().ok())
            .collect();
        if fields.len() >= 9 {
            rx = rx.saturating_add(fields[0]);
            tx = tx.saturating_add(fields[8]);
            any = true;
        }
    }
    any.then_some((rx, tx))
}

/// One filesystem's use, in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskUse {
    /// Where it is mounted.
    pub mount: String,
    /// The device (or source) mounted there.
    pub device: String,
    /// Size.
    pub total: u64,
    /// Used (size - free).
    pub used: u64,
    /// Available to unprivileged users.
    pub available: u64,
}

impl DiskUse {
    /// Used share as `df` computes it: used / (used + available), 0-1.
    pub fn used_ratio(&self) -> Option<f64> {
        let denominator = self.used.checked_add(self.available)?;
        (denominator > 0).then(|| self.used as f64 / denominator as f64)
    }
}

/// Filesystem types that are not disks.
const VIRTUAL_FS: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "tmpfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "pstore",
    "debugfs",
    "tracefs",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "fusectl",
    "bpf",
    "autofs",
    "binfmt_misc",
    "rpc_pipefs",
    "nsfs",
    "ramfs",
    "efivarfs",
    "squashfs",
    "overlay",
    "shm",
    "fuse.lxcfs",
];

/// Reads /proc/mounts: (device, mount point) of real filesystems, the first mount of each device.
pub fn parse_mounts(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(device), Some(mount), Some(fstype)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if VIRTUAL_FS.contains(&fstype) || out.iter().any(|(d, _)| d == device) {
            continue;
        }
        // /proc/mounts escapes spaces as \040.
        out.push((device.to_owned(), mount.replace("\\040", " ")));
    }
    out
}

/// Reads `df -P -B1` output (header, then `device size used avail use% mount`).
pub fn parse_df(text: &str) -> Vec<DiskUse> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            Some(DiskUse {
                device: f[0].to_owned(),
                total: f[1].parse().ok()?,
                used: f[2].parse().ok()?,
                available: f[3].parse().ok()?,
                mount: f[5..].join(" "),
            })
        })
        .collect()
}
