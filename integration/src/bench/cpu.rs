//! CPU time and memory from `/proc`: per process (utime + stime of all its
//! threads) and for the whole machine (busy = everything but idle and
//! iowait), so a benchmark can say how many CPU-seconds a GB cost.
use std::time::Instant;

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of process `pid` in seconds (all its threads), or `None` if
/// it is gone.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces; the
    // fields after the last ')' start with field 3 (state).
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) are at 11 and 12 counting from field 3.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_sec())
}

/// Time process `pid`'s threads have run on a CPU, in seconds, from the
/// scheduler's nanosecond counters (`/proc/PID/task/*/schedstat`, first
/// field), or `None` if it is gone. Finer than [`process_cpu_secs`] (clock
/// ticks, usually 10 ms), so sub-second intervals can be compared; threads
/// that already exited are not counted.
pub fn process_run_secs(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns = 0u64;
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        ns += text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(ns as f64 / 1e9)
}

/// Whole-machine CPU counters from the first line of `/proc/stat`, in seconds
/// summed over all cores.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineCpu {
    /// user + nice + system + irq + softirq + steal.
    pub busy: f64,
    /// busy + idle + iowait.
    pub total: f64,
}

impl MachineCpu {
    /// Reads `/proc/stat` now.
    pub fn read() -> MachineCpu {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let line = text.lines().next().unwrap_or_default();
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        let get = |i: usize| v.get(i).copied().unwrap_or(0.0);
        // user nice system idle iowait irq softirq steal (guest is in user).
        let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
        let total = busy + get(3) + get(4);
        let hz = clock_ticks_per_sec();
        MachineCpu {
            busy: busy / hz,
            total: total / hz,
        }
    }
}

/// A CPU sample taken at the start of a measured interval: call
/// [`CpuSample::finish`] at its end.
#[derive(Debug, Clone)]
pub struct CpuSample {
    at: Instant,
    machine: MachineCpu,
    pids: Vec<(u32, f64)>,
}

/// CPU used during one interval.
#[derive(Debug, Clone, Default)]
pub struct CpuUsage {
    /// Wall-clock seconds.
    pub wall_secs: f64,
    /// Whole-machine busy CPU-seconds (all cores).
    pub machine_busy_secs: f64,
    /// Busy fraction of the whole machine (1.0 = every core busy).
    pub machine_busy_frac: f64,
    /// CPU-seconds of the watched processes, summed.
    pub process_secs: f64,
    /// CPU-seconds per watched PID.
    pub per_process: Vec<(u32, f64)>,
}

impl CpuSample {
    /// Starts an interval watching `pids` (may be empty).
    pub fn start(pids: &[u32]) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            machine: MachineCpu::read(),
            pids: pids
                .iter()
                .map(|&p| (p, process_cpu_secs(p).unwrap_or(0.0)))
                .collect(),
        }
    }

    /// Ends the interval.
    pub fn finish(&self) -> CpuUsage {
        let wall_secs = self.at.elapsed().as_secs_f64();
        let m = MachineCpu::read();
        let per_process: Vec<(u32, f64)> = self
            .pids
            .iter()
            .map(|&(p, before)| (p, process_cpu_secs(p).map_or(0.0, |now| now - before)))
            .collect();
        let total = (m.total - self.machine.total).max(1e-9);
        CpuUsage {
            wall_secs,
            machine_busy_secs: m.busy - self.machine.busy,
            machine_busy_frac: (m.busy - self.machine.busy) / total,
            process_secs: per_process.iter().map(|(_, s)| s).sum(),
            per_process,
        }
    }
}

impl CpuUsage {
    /// Cores process `pid` used on average over the interval (CPU-seconds
    /// per wall second; 0 if it was not watched).
    pub fn cores(&self, pid: u32) -> f64 {
        let secs = self
            .per_process
            .iter()
            .find(|(p, _)| *p == pid)
            .map_or(0.0, |(_, s)| *s);
        if self.wall_secs > 0.0 {
            secs / self.wall_secs
        } else {
            0.0
        }
    }
}

/// `VmRSS` and `VmHWM` of process `pid` in bytes, from `/proc/PID/status`.
pub fn resident_memory(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_are_cpu_seconds_per_wall_second() {
        let u = CpuUsage {
            wall_secs: 2.0,
            per_process: vec![(7, 1.0), (9, 3.0)],
            ..CpuUsage::default()
        };
        assert_eq!(u.cores(7), 0.5);
        assert_eq!(u.cores(9), 1.5);
        assert_eq!(u.cores(8), 0.0, "not watched");
        assert_eq!(CpuUsage::default().cores(7), 0.0, "no interval");
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(process_cpu_secs(pid).is_some());
        let (rss, hwm) = resident_memory(pid).expect("own status");
        assert!(rss > 0 && hwm >= rss);
        let m = MachineCpu::read();
        assert!(m.total >= m.busy && m.total > 0.0);
    }
}
