//! `gatemesh-sim run --seed S --nodes N --scenario NAME` and `gatemesh-sim sweep --seeds K
//! [--from S]`: the deterministic mesh simulator (see `simulations::sim`). A failing seed is
//! printed with the command that replays it; the exit status is 1 when any invariant broke.

use simulations::sim;

const USAGE: &str = "usage: gatemesh-sim run --seed S [--nodes N] [--scenario calm|lossy|split|oneway|crash|skew|mixed]\n       gatemesh-sim sweep [--seeds K] [--from S]";

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let number = |flag: &str, default: u64| -> anyhow::Result<u64> {
        value(flag).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| anyhow::anyhow!("{flag} needs a number"))
        })
    };
    match args.first().map(String::as_str) {
        Some("run") => {
            let seed = number("--seed", 0)?;
            let (default_nodes, default_scenario) = sim::sweep_case(seed);
            let nodes = number("--nodes", default_nodes as u64)? as usize;
            let scenario = value("--scenario").map_or(default_scenario, String::as_str);
            anyhow::ensure!(sim::SCENARIOS.contains(&scenario), "{USAGE}");
            anyhow::ensure!(
                (2..=sim::NODES_MAX).contains(&nodes),
                "--nodes must be 2..={}",
                sim::NODES_MAX
            );
            let o = sim::run(seed, nodes, scenario, None);
            println!(
                "seed {seed}, {nodes} nodes, {scenario}: {} scans, {} admits, {} double entries reported, {} messages",
                o.scans, o.admits, o.double_entries, o.messages
            );
            for v in &o.violations {
                println!("VIOLATION {v}");
            }
            Ok(o.violations.is_empty())
        }
        Some("sweep") => {
            let from = number("--from", 0)?;
            let seeds = number("--seeds", 1_000)?;
            let r = sim::sweep(from, seeds, None);
            for (seed, nodes, scenario, violations) in &r.failing {
                println!("FAILED seed {seed}: {}", violations.join("; "));
                println!("  replay: {}", sim::replay_command(*seed, *nodes, scenario));
            }
            println!(
                "{} seeds ({from}..{}), {} with violations, {} scans, {} double entries reported, {:.1} seeds/s",
                r.seeds,
                from + seeds,
                r.failing.len(),
                r.scans,
                r.double_entries,
                r.seeds as f64 / r.seconds
            );
            Ok(r.failing.is_empty())
        }
        _ => anyhow::bail!("{USAGE}"),
    }
}
