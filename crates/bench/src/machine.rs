//! The machine a run measured, read from `/proc` and `/sys` (Linux; elsewhere the fields
//! say "unknown"): CPU model and cores, memory, the disk under the engine files, the OS.

use std::path::Path;

use serde::Serialize;

/// What the machine is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Machine {
    /// CPU model name (`/proc/cpuinfo`), with "(virtualised)" under a hypervisor.
    pub cpu: String,
    /// Logical CPUs this process may run on.
    pub cores: usize,
    /// Physical memory in bytes (`MemTotal`), 0 when unknown.
    pub ram_bytes: u64,
    /// The filesystem and device under the engine files (device, type, SSD or HDD, size).
    pub disk: String,
    /// OS name (`/etc/os-release`) and kernel release.
    pub os: String,
}

impl Machine {
    /// Describe this machine; `dir` is where the engine files go.
    pub fn detect(dir: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        let mut cpu = field("model name").unwrap_or_else(|| "unknown CPU".into());
        if field("flags").is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor")) {
            cpu.push_str(" (virtualised)");
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let ram_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            })
            .map(|kib| kib * 1024)
            .unwrap_or(0);
        let os_name = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!(", kernel {}", s.trim()))
            .unwrap_or_default();
        Machine {
            cpu,
            cores,
            ram_bytes,
            disk: disk(dir),
            os: format!("{os_name}{kernel}"),
        }
    }

    /// One line: `AMD EPYC (virtualised), 2 cores, 23.5 GiB RAM, disk ..., OS ...`.
    pub fn describe(&self) -> String {
        format!(
            "{}, {} cores, {:.1} GiB RAM; disk: {}; OS: {}",
            self.cpu,
            self.cores,
            self.ram_bytes as f64 / (1u64 << 30) as f64,
            self.disk,
            self.os
        )
    }
}

/// The 1-minute load average (`/proc/loadavg`), `None` where unavailable: other work on
/// the machine while a run measures shows here.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The mount holding `dir` (longest mount point that prefixes it), its device's kind
/// (rotational or not) and size.
fn disk(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let best = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, at, fs) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(at).then_some((dev, at, fs))
        })
        .max_by_key(|(_, at, _)| at.len());
    let Some((dev, at, fs)) = best else {
        return "unknown".into();
    };
    let mut s = format!("{dev} ({fs}) mounted at {at}");
    if let Some(name) = dev.strip_prefix("/dev/") {
        // A partition's queue lives in its parent device's directory.
        let sys = Path::new("/sys/class/block").join(name);
        let queue = [sys.join("queue"), sys.join("../queue")]
            .into_iter()
            .find(|q| q.exists());
        if let Some(q) = queue {
            match std::fs::read_to_string(q.join("rotational")).map(|r| r.trim().to_string()) {
                // Virtual disks often claim to rotate: report the flag, not a guess.
                Ok(r) if r == "0" => s.push_str(", kernel flag: non-rotational"),
                Ok(r) if r == "1" => s.push_str(", kernel flag: rotational"),
                _ => {}
            }
        }
        if let Ok(sectors) = std::fs::read_to_string(sys.join("size")) {
            if let Ok(n) = sectors.trim().parse::<u64>() {
                s.push_str(&format!(
                    ", {:.0} GiB",
                    (n * 512) as f64 / (1u64 << 30) as f64
                ));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_something_for_every_field_on_linux() {
        let m = Machine::detect(&std::env::temp_dir());
        assert!(m.cores >= 1);
        if cfg!(target_os = "linux") {
            assert!(m.ram_bytes > 0, "{m:?}");
            assert!(m.disk != "unknown", "{m:?}");
            assert!(m.os.contains("kernel"), "{m:?}");
        }
        let line = m.describe();
        assert!(line.contains("cores") && line.contains("RAM"), "{line}");
    }
}
