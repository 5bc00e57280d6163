//! The simulator in the test suite: a sweep of 1,000 seeds (about 3 minutes on this machine)
//! over the scenarios (Byzantine device, 20- and 50-node runs included) must keep every
//! invariant, and each test-only fault must be caught (the self-check). A longer sweep:
//! `cargo run --release -p simulations --bin gatemesh-sim -- sweep --seeds 5000`.

use simulations::sim::{self, Fault};

/// Seeds in the suite's sweep (`GATEMESH_SIM_SEEDS` overrides).
fn seeds() -> u64 {
    std::env::var("GATEMESH_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000)
}

#[test]
fn a_sweep_of_mixed_scenarios_keeps_every_invariant() {
    let r = sim::sweep(0, seeds(), None);
    let shown: Vec<String> = r
        .failing
        .iter()
        .take(5)
        .map(|(seed, nodes, scenario, v)| {
            format!(
                "seed {seed}: {}\n  replay: {}",
                v.join("; "),
                sim::replay_command(*seed, *nodes, scenario)
            )
        })
        .collect();
    assert!(
        r.failing.is_empty(),
        "{} of {} seeds broke an invariant:\n{}",
        r.failing.len(),
        r.seeds,
        shown.join("\n")
    );
    assert!(
        r.double_entries > 0,
        "the workload makes double entries to report"
    );
    // Its attacks must reach the ledger (they did not while the device sent no hello).
    assert!(
        r.byzantine_records > 0,
        "the Byzantine device gets records into the ledger"
    );
    eprintln!(
        "{} seeds, {} scans, {} double entries, {:.1} s",
        r.seeds, r.scans, r.double_entries, r.seconds
    );
}

/// Seeds a longer sweep once broke, kept as regressions: 2809 (a device revoked after some
/// replicas had admitted its later changes: they kept them and the chains never agreed) and 3625
/// (50 nodes, split: a re-entry scan came 3 ms before the check, which ran at a fixed time
/// instead of a quiet period after the last scan; seen as an admit missing on 44 nodes).
const FOUND: [u64; 2] = [2809, 3625];

#[test]
fn seeds_a_longer_sweep_broke_keep_every_invariant() {
    for seed in FOUND {
        let (nodes, scenario) = sim::sweep_case(seed);
        let o = sim::run(seed, nodes, scenario, None);
        assert!(o.violations.is_empty(), "seed {seed}: {:?}", o.violations);
    }
}

#[test]
fn the_same_seed_replays_the_same_run() {
    for seed in [3, 17, 99] {
        let (nodes, scenario) = sim::sweep_case(seed);
        let a = sim::run(seed, nodes, scenario, None);
        let b = sim::run(seed, nodes, scenario, None);
        assert_eq!(
            (a.scans, a.admits, a.double_entries, a.messages),
            (b.scans, b.admits, b.double_entries, b.messages)
        );
    }
}

/// Seeds of the sweep tried before a fault must have been caught.
const SELF_CHECK_SEEDS: u64 = 300;

/// Whether a seed of the sweep (scenarios as in the suite) catches `fault`: the first that does.
fn caught(fault: Fault) -> usize {
    for seed in 0..SELF_CHECK_SEEDS {
        let (nodes, scenario) = sim::sweep_case(seed);
        let o = sim::run(seed, nodes, scenario, Some(fault));
        if !o.violations.is_empty() {
            eprintln!("{fault:?}: caught by seed {seed}: {}", o.violations[0]);
            return 1;
        }
    }
    0
}

#[test]
fn the_self_check_catches_a_merge_that_drops_records() {
    assert!(caught(Fault::MergeDropsRecords) > 0);
}

#[test]
fn the_self_check_catches_an_ack_before_the_durable_write() {
    assert!(caught(Fault::AckBeforeDurable) > 0);
}

#[test]
fn the_self_check_catches_a_stale_index() {
    assert!(caught(Fault::StaleIndex) > 0);
}

#[test]
fn the_self_check_catches_bulletins_that_are_never_applied() {
    assert!(caught(Fault::BulletinsIgnored) > 0);
}

#[test]
fn the_self_check_catches_a_restart_that_trusts_a_clock_from_the_future() {
    assert!(caught(Fault::RestoreTrustsClocks) > 0);
}

#[test]
fn the_self_check_catches_a_failed_write_reported_done() {
    assert!(caught(Fault::FailedWriteReported) > 0);
}

#[test]
fn the_self_check_catches_a_restart_that_reads_the_store_before_the_bulletins() {
    assert!(caught(Fault::RosterAfterStore) > 0);
}

#[test]
fn the_self_check_catches_a_revocation_lost_because_it_came_before_the_addition() {
    assert!(caught(Fault::EarlyRevocationLost) > 0);
}

#[test]
fn the_self_check_catches_a_forged_rival_taken_as_fork_evidence() {
    assert!(caught(Fault::RivalTakenAsEvidence) > 0);
}

#[test]
fn a_seed_replays_the_same_run_in_another_process() {
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatemesh-sim"))
            .args(["run", "--seed", "7", "--nodes", "4", "--scenario", "mixed"])
            .output()
            .expect("gatemesh-sim runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with("seed 7"))
            .unwrap_or_else(|| panic!("no summary in {text}"))
            .to_string()
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    let here = sim::run(7, 4, "mixed", None);
    let want = format!(
        "{} scans, {} admits, {} double entries reported, {} messages",
        here.scans, here.admits, here.double_entries, here.messages
    );
    assert!(a.contains(&want), "{a}\nthis process: {want}");
}
