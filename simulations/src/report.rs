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
