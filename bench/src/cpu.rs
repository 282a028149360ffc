//! CPU time of processes from `/proc` (Linux): what a benchmark prints per job beside its
//! throughput.

/// The kernel's clock ticks per second (`getconf CLK_TCK`, else 100).
pub fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// utime + stime (+ cutime + cstime with `children`) of a process, in clock ticks.
pub fn cpu_ticks(pid: u32, children: bool) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| {
        f.get(i - 3)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(n(14) + n(15) + if children { n(16) + n(17) } else { 0 })
}

/// CPU ticks of the PostgreSQL server: every `postgres` process, plus what the postmaster has
/// reaped from backends that exited.
pub fn postgres_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "postgres" {
            continue;
        }
        let ppid_is_init_or_other = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s[s.rfind(')')? + 2..].to_string();
                rest.split_whitespace().nth(1).map(|p| p.to_string())
            })
            .and_then(|ppid| std::fs::read_to_string(format!("/proc/{ppid}/comm")).ok())
            .map(|c| c.trim() != "postgres")
            .unwrap_or(true);
        // The postmaster (parent not postgres) also carries its reaped children's time.
        total += cpu_ticks(pid, ppid_is_init_or_other).unwrap_or(0);
    }
    total
}

/// This process's CPU time so far, in seconds: the sum of its threads' run time from
/// `/proc/self/task/*/schedstat` (nanoseconds; threads that exited are not counted, and a
/// benchmark's runtime threads live as long as it does), else clock ticks (10 ms steps).
pub fn own_seconds() -> f64 {
    let from_schedstat = || -> Option<f64> {
        let mut ns = 0u64;
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(ns as f64 / 1e9)
    };
    from_schedstat().unwrap_or_else(|| {
        cpu_ticks(std::process::id(), false).unwrap_or(0) as f64 / ticks_per_second()
    })
}
