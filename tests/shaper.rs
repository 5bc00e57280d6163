//! `gatemesh-shaper`: a venue network in userspace, for the test harness and `gatemesh-bench
//! venue`. This kernel has no netem qdisc, so each namespaced host queues its outgoing LAN
//! packets to NFQUEUE (iptables' target), and this program holds each packet for a delay drawn
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

/// The kernel's queue for this program: a held packet stays in it until its verdict.
const QUEUE_LEN: u32 = 65_536;
/// Most packets held at once, under [`QUEUE_LEN`] (the kernel would drop past it); past it a
/// packet passes undelayed (the count is printed).
const HELD_MAX: usize = 60_000;
/// Most packets taken from the queue before the due ones are released.
const RECV_BATCH_MAX: usize = 256;

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

/// What passes through, and what is held: release time (and an arrival number, to keep equal
/// times apart) → packet.
struct Shaper<'p> {
    p: &'p Profile,
    rng: rand::rngs::StdRng,
    held: BTreeMap<(Instant, u64), nfq::Message>,
    last_dropped: bool,
    arrived: u64,
    dropped: u64,
    overflow: u64,
    enobufs: u64,
}

impl Shaper<'_> {
    /// Take what arrived (at most [`RECV_BATCH_MAX`]): drop it, hold it, or pass it.
    fn take(&mut self, q: &mut Queue) -> std::io::Result<()> {
        for _ in 0..RECV_BATCH_MAX {
            let mut msg = match q.recv() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // The socket's buffer overflowed: the kernel dropped some; go on.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.enobufs += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.arrived += 1;
            let p = self.p;
            let chance = if self.last_dropped {
                p.burst.max(p.loss)
            } else {
                p.base_loss()
            };
            self.last_dropped = self.rng.gen_bool(chance.clamp(0.0, 1.0));
            if self.last_dropped {
                self.dropped += 1;
                msg.set_verdict(Verdict::Drop);
                q.verdict(msg)?;
                continue;
            }
            let ms = (p.delay_ms + p.jitter_ms * normal(&mut self.rng)).max(0.0);
            let full = self.held.len() >= HELD_MAX;
            if full || ms == 0.0 {
                self.overflow += u64::from(full);
                msg.set_verdict(Verdict::Accept);
                q.verdict(msg)?;
                continue;
            }
            let at = Instant::now() + Duration::from_secs_f64(ms / 1000.0);
            self.held.insert((at, self.arrived), msg);
        }
        Ok(())
    }

    /// Pass every held packet due by `now`; the next release time.
    fn release(&mut self, q: &mut Queue, now: Instant) -> std::io::Result<Instant> {
        while let Some(entry) = self.held.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let mut msg = entry.remove();
            msg.set_verdict(Verdict::Accept);
            q.verdict(msg)?;
        }
        Ok(self
            .held
            .keys()
            .next()
            .map_or(now + Duration::from_millis(1), |k| k.0))
    }
}

fn run(num: u16, p: &Profile, seconds: u64, seed: u64) -> std::io::Result<()> {
    let mut q = Queue::open()?;
    q.bind(num)?;
    q.set_copy_range(num, 0)?;
    q.set_queue_max_len(num, QUEUE_LEN)?;
    q.set_nonblocking(true);
    let mut s = Shaper {
        p,
        rng: rand::rngs::StdRng::seed_from_u64(seed),
        held: BTreeMap::new(),
        last_dropped: false,
        arrived: 0,
        dropped: 0,
        overflow: 0,
        enobufs: 0,
    };
    let end = Instant::now() + Duration::from_secs(seconds);
    println!("{{\"event\":\"shaping\",\"queue\":{num}}}");
    while Instant::now() < end {
        s.take(&mut q)?;
        let now = Instant::now();
        let next = s.release(&mut q, now)?;
        std::thread::sleep(
            next.saturating_duration_since(now)
                .min(Duration::from_micros(500)),
        );
    }
    // Time is up: pass everything still held.
    s.release(&mut q, Instant::now() + Duration::from_secs(3600))?;
    println!(
        "{{\"event\":\"shaped\",\"packets\":{},\"dropped\":{},\"overflow\":{},\"enobufs\":{}}}",
        s.arrived, s.dropped, s.overflow, s.enobufs
    );
    Ok(())
}
