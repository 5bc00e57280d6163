//! `gatemesh-bench NAME [--json]`: run a benchmark and print what it measured.

#![allow(unsafe_code)] // only for the counting allocator below

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// The system allocator, counting live bytes so `ledger` can report memory per redemption.
struct Counting;
static LIVE: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as u64, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> u64 {
    LIVE.load(Ordering::Relaxed)
}

const USAGE: &str = "usage: gatemesh-bench ledger|decide|mesh|http|stats|search|venue|catchup|bridge|phone|room|sim|all [--json] [--transfers N] [--rotating] [--strict] [--reconcile N] [--decisions N] [--profile wired|good-wifi|busy-wifi|bad-wifi] [--split-seconds N] [--tickets N] [--redemptions N] [--nodes N] [--rate N] [--seconds N] [--heal-scans N] [--concurrency N] [--requests N] [--scans N] [--seeds N] [--clients N]";

/// The command line: flags with a value (`--nodes 10`) and switches (`--json`).
struct Args(Vec<String>);

impl Args {
    fn has(&self, flag: &str) -> bool {
        self.0.iter().any(|a| a == flag)
    }

    fn value(&self, flag: &str) -> Option<&String> {
        let i = self.0.iter().position(|a| a == flag)?;
        self.0.get(i + 1)
    }

    fn number(&self, flag: &str) -> anyhow::Result<Option<usize>> {
        match self.0.iter().any(|a| a == flag) {
            true => {
                let v =
                    (self.value(flag)).ok_or_else(|| anyhow::anyhow!("{flag} needs a number"))?;
                Ok(Some(v.parse()?))
            }
            false => Ok(None),
        }
    }

    fn profile(&self) -> String {
        self.value("--profile")
            .cloned()
            .unwrap_or_else(|| "busy-wifi".into())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args(std::env::args().skip(1).collect());
    let json = args.has("--json");
    let number = |flag: &str| args.number(flag);
    let redemptions = number("--redemptions")?;
    if args.0.first().map(String::as_str) == Some("all") {
        return simulations::report::all(std::path::Path::new("BENCHMARKS.md"));
    }
    let result = match args.0.first().map(String::as_str) {
        Some("ledger") => simulations::bench::ledger(redemptions.unwrap_or(500_000), live_bytes)?,
        Some("decide") => simulations::bench::decide(
            redemptions.unwrap_or(100_000),
            2_000,
            args.has("--rotating"),
            args.has("--strict"),
        )?,
        Some("mesh") => simulations::meshbench::run(&simulations::meshbench::MeshBench {
            nodes: number("--nodes")?.unwrap_or(10),
            rate_per_s: number("--rate")?.unwrap_or(100) as u32,
            seconds: number("--seconds")?.unwrap_or(10) as u32,
            heal_scans: number("--heal-scans")?.unwrap_or(10_000),
        })?,
        Some("http") => simulations::httpbench::run(&simulations::httpbench::HttpBench {
            concurrency: number("--concurrency")?.unwrap_or(32),
            requests: number("--requests")?.unwrap_or(20_000),
        })?,
        Some("stats") => simulations::statsbench::run(&simulations::statsbench::StatsBench {
            redemptions: redemptions.unwrap_or(500_000),
            rate_per_s: number("--rate")?.unwrap_or(100) as u32,
            seconds: number("--seconds")?.unwrap_or(30) as u32,
            stream_clients: number("--clients")?.unwrap_or(10),
        })?,
        Some("search") => {
            simulations::searchbench::run(number("--tickets")?.unwrap_or(500_000), live_bytes)?
        }
        Some("venue") => simulations::venuebench::run(&simulations::venuebench::VenueBench {
            profile: args.profile(),
            nodes: number("--nodes")?.unwrap_or(10),
            scans: number("--scans")?.unwrap_or(200),
            rate_per_s: number("--rate")?.unwrap_or(10) as u32,
            split_seconds: number("--split-seconds")?.unwrap_or(60) as u64,
            split_scans: number("--heal-scans")?.unwrap_or(40),
        })?,
        Some("phone") => simulations::phonebench::run(&simulations::phonebench::PhoneBench {
            tickets: number("--tickets")?.unwrap_or(100_000),
            reconcile: number("--reconcile")?.unwrap_or(1_000),
            decisions: number("--decisions")?.unwrap_or(200),
        })?,
        Some("room") => simulations::roombench::run(&simulations::roombench::RoomBench {
            profile: args.profile(),
            transfers: number("--transfers")?.unwrap_or(30),
        })?,
        Some("catchup") => simulations::catchupbench::run(redemptions.unwrap_or(500_000))?,
        Some("bridge") => simulations::bridgebench::run(number("--scans")?.unwrap_or(1_000_000))?,
        Some("sim") => sim(number("--seeds")?.unwrap_or(1_000) as u64),
        _ => anyhow::bail!("{USAGE}"),
    };
    simulations::report::print(&result, json);
    Ok(())
}

/// `sim`: a sweep of simulator seeds, summed up.
fn sim(seeds: u64) -> serde_json::Map<String, serde_json::Value> {
    let r = simulations::sim::sweep(0, seeds, None);
    let mut out = serde_json::Map::new();
    out.insert("bench".into(), serde_json::json!("sim"));
    out.insert("seeds".into(), serde_json::json!(r.seeds));
    out.insert("violations".into(), serde_json::json!(r.failing.len()));
    out.insert(
        "seeds_per_s".into(),
        serde_json::json!(r.seeds as f64 / r.seconds),
    );
    out.insert("scans".into(), serde_json::json!(r.scans));
    out.insert("double_entries".into(), serde_json::json!(r.double_entries));
    out
}
