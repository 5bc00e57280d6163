//! `gatemesh-shaper`: a venue network in userspace, for the test harness and `gatemesh-bench
//! venue`. This kernel has no netem qdisc, so each namespaced host queues its outgoing LAN
//! packets to NFQUEUE (nftables `queue`), and this program holds each packet for a delay drawn
//! from the profile (normal, mean ± jitter, never negative) and drops a share LOSS of them in
//! the long run, in bursts: after a drop the next packet is dropped with probability BURST.
//!
//!     gatemesh-shaper QUEUE DELAY_MS JITTER_MS LOSS BURST SECONDS SEED
//!
//! It stops by itself after SECONDS (accepting what it still holds) and is meant to run inside
//! the host's network namespace. Every packet gets exactly one verdict.

use nfq::{Queue, Verdict};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Most packets held at once; past it a packet passes undelayed (the count is printed).
const HELD_MAX: usize = 100_000;

struct Profile {
    delay_ms: f64,
    jitter_ms: f64,
    loss: f64,
    burst: f64,
}

impl Profile {
    /// The loss after a delivered packet that makes the long-run loss `loss` once bursts
    /// (loss `burst` after a lost packet) are counted: a two-state chain whose stationary loss
    /// is base / (1 - burst + base).
    fn base_loss(&self) -> f64 {
        if self.burst <= self.loss {
            return self.loss;
        }
        self.loss * (1.0 - self.burst) / (1.0 - self.loss)
    }
}

fn args() -> Result<(u16, Profile, u64, u64), String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 7 {
        return Err(
            "usage: gatemesh-shaper QUEUE DELAY_MS JITTER_MS LOSS BURST SECONDS SEED".into(),
        );
    }
    let f = |i: usize| a[i].parse::<f64>().map_err(|e| format!("{}: {e}", a[i]));
    let profile = Profile {
        delay_ms: f(1)?,
        jitter_ms: f(2)?,
        loss: f(3)?,
        burst: f(4)?,
    };
    let queue = a[0].parse().map_err(|e| format!("queue: {e}"))?;
    let seconds = a[5].parse().map_err(|e| format!("seconds: {e}"))?;
    let seed = a[6].parse().map_err(|e| format!("seed: {e}"))?;
    Ok((queue, profile, seconds, seed))
}

/// A normal draw (Box-Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let (u, v): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn main() {
    let (num, p, seconds, seed) = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(num, &p, seconds, seed) {
        eprintln!("gatemesh-shaper: {e}");
        std::process::exit(1);
    }
}

fn run(num: u16, p: &Profile, seconds: u64, seed: u64) -> std::io::Result<()> {
    let mut q = Queue::open()?;
    q.bind(num)?;
    q.set_copy_range(num, 0)?;
    q.set_queue_max_len(num, 65_536)?;
    q.set_nonblocking(true);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let end = Instant::now() + Duration::from_secs(seconds);
    // Release time (and an arrival number, to keep equal times apart) → packet.
    let mut held: BTreeMap<(Instant, u64), nfq::Message> = BTreeMap::new();
    let (mut arrived, mut dropped, mut overflow, mut last_dropped) = (0u64, 0u64, 0u64, false);
    println!("{{\"event\":\"shaping\",\"queue\":{num}}}");
    while Instant::now() < end {
        loop {
            let mut msg = match q.recv() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            arrived += 1;
            let chance = if last_dropped {
                p.burst.max(p.loss)
            } else {
                p.base_loss()
            };
            last_dropped = rng.gen_bool(chance.clamp(0.0, 1.0));
            if last_dropped {
                dropped += 1;
                msg.set_verdict(Verdict::Drop);
                q.verdict(msg)?;
                continue;
            }
            let ms = (p.delay_ms + p.jitter_ms * normal(&mut rng)).max(0.0);
            if held.len() >= HELD_MAX || ms == 0.0 {
                overflow += u64::from(held.len() >= HELD_MAX);
                msg.set_verdict(Verdict::Accept);
                q.verdict(msg)?;
                continue;
            }
            let at = Instant::now() + Duration::from_secs_f64(ms / 1000.0);
            held.insert((at, arrived), msg);
        }
        let now = Instant::now();
        while let Some(entry) = held.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let mut msg = entry.remove();
            msg.set_verdict(Verdict::Accept);
            q.verdict(msg)?;
        }
        let next = held
            .keys()
            .next()
            .map_or(now + Duration::from_millis(1), |k| k.0);
        std::thread::sleep(
            next.saturating_duration_since(now)
                .min(Duration::from_micros(500)),
        );
    }
    for (_, mut msg) in std::mem::take(&mut held) {
        msg.set_verdict(Verdict::Accept);
        q.verdict(msg)?;
    }
    println!("{{\"event\":\"shaped\",\"packets\":{arrived},\"dropped\":{dropped},\"overflow\":{overflow}}}");
    Ok(())
}
