//! Percentiles and the two output forms of a benchmark result.

use serde_json::{Map, Value};

/// The `p`-th percentile (0..=100) of `samples`, nearest-rank; 0 for no samples.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Print one result: a JSON line, or a two-column table.
pub fn print(result: &Map<String, Value>, json: bool) {
    if json {
        println!("{}", Value::Object(result.clone()));
        return;
    }
    let width = result.keys().map(String::len).max().unwrap_or(0);
    for (k, v) in result {
        let shown = match v {
            Value::Number(n) if n.is_f64() => format!("{:.3}", n.as_f64().unwrap_or_default()),
            other => other.to_string().trim_matches('"').to_string(),
        };
        println!("{k:width$}  {shown}");
    }
    println!();
}

/// Resident set size of this process, from /proc/self/statm.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Every benchmark, in the order `gatemesh-bench all` runs them.
pub const ALL: [&str; 11] = [
    "ledger", "decide", "mesh", "http", "stats", "search", "venue", "catchup", "bridge", "phone",
    "sim",
];
/// Markers around the section `gatemesh-bench all` rewrites in BENCHMARKS.md.
pub const ALL_BEGIN: &str = "<!-- gatemesh-bench all: begin -->";
pub const ALL_END: &str = "<!-- gatemesh-bench all: end -->";

/// Run every benchmark (each in its own process, this binary with `--json`) and rewrite the
/// generated section of `path`: figures, machine, command, date. The rest of the file (the
/// analysis written by people) is kept.
pub fn all(path: &std::path::Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut rows = Vec::new();
    for name in ALL {
        eprintln!("gatemesh-bench {name} ...");
        let started = std::time::Instant::now();
        let out = std::process::Command::new(&exe)
            .args([name, "--json"])
            .stderr(std::process::Stdio::inherit())
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let result = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l).ok())
            .unwrap_or_else(
                || serde_json::json!({"error": format!("exit {:?}", out.status.code())}),
            );
        rows.push((name, result, started.elapsed().as_secs_f64()));
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let mut section = format!(
        "{ALL_BEGIN}\n## Every benchmark, as last run by `gatemesh-bench all` ({date})\n\n\
         Machine: {cpus} CPUs ({model}), {mem_gib:.0} GiB. Command: \
         `cargo run --release -p simulations --bin gatemesh-bench -- all` (each line below is \
         `gatemesh-bench NAME --json`, run alone).\n\n| bench | seconds | figures |\n|---|---|---|\n"
    );
    for (name, v, secs) in &rows {
        section.push_str(&format!("| `{name}` | {secs:.0} | `{v}` |\n"));
    }
    section.push_str(ALL_END);
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(ALL_BEGIN), old.find(ALL_END)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{section}{}", &old[..a], &old[b + ALL_END.len()..])
        }
        _ => format!("{}\n{section}\n", old.trim_end()),
    };
    std::fs::write(path, new)?;
    for (name, v, _) in &rows {
        println!("{name}: {v}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&mut s, 50.0), 50.0);
        assert_eq!(percentile(&mut s, 99.0), 99.0);
        assert_eq!(percentile(&mut s, 100.0), 100.0);
        assert_eq!(percentile(&mut [], 99.0), 0.0);
    }
}
