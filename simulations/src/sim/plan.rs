//! The events of a run, all drawn from the seed: scans (with shared screenshots and VIP
//! re-entries), annuls, a refund, the network's troubles, crashes, clock jumps, and what the
//! Byzantine device does.

use super::world::{GENERAL_TICKETS, VIP_TICKETS};
use rand::rngs::StdRng;
use rand::Rng;

/// Workload and chaos happen in [0, ACTIVE_MS); then everything heals.
pub const ACTIVE_MS: u64 = 20_000;

/// The scenarios of `gatemesh-sim run --scenario`.
pub const SCENARIOS: [&str; 8] = [
    "calm",
    "lossy",
    "split",
    "oneway",
    "crash",
    "skew",
    "byzantine",
    "mixed",
];

/// What the Byzantine device sends (crafted changes, the trust issue's attacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// Its next honest-looking record (withheld from all but one node).
    Own,
    /// A record claiming an honest device's next position, signed with its own key, and a
    /// forged rival of that device's last change sent before the genuine one.
    ForgedActor,
    /// Its record wrapped under an honest device's actor with that device's next sequence
    /// number and a dependency nobody has.
    Hijack,
    /// A delete of an honest record's key.
    Delete,
    /// An overwrite of an honest record's key.
    Overwrite,
    /// A write of a top-level key.
    RootWrite,
    /// Changes of its own chain whose predecessor never comes.
    Flood,
    /// A second, different change at a position of its chain it already wrote.
    Fork,
}

pub const ATTACKS: [Attack; 8] = [
    Attack::Own,
    Attack::ForgedActor,
    Attack::Hijack,
    Attack::Delete,
    Attack::Overwrite,
    Attack::RootWrite,
    Attack::Flood,
    Attack::Fork,
];

#[derive(Clone, Debug)]
pub enum Event {
    Scan {
        node: usize,
        vip: bool,
        ticket: usize,
        gate: &'static str,
        out: bool,
    },
    Annul {
        node: usize,
    },
    /// A supervisor pauses (or resumes) the gate `north` at its node.
    PauseGate {
        node: usize,
        paused: bool,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Split(Vec<bool>),
    OneWay(usize, usize),
    Loss(f64, f64),
    Heal,
    ClockJump {
        node: usize,
        by_ms: i64,
    },
    /// The organizer hands the refund bulletin to one node.
    Refund {
        node: usize,
    },
    /// The organizer hands a rule bulletin to one node: general tickets get two entries
    /// (`two`), or one again (a later bulletin, which wins whichever comes first).
    Rule {
        node: usize,
        two: bool,
    },
    /// The organizer hands the bulletin adding the Byzantine device to one node.
    AddByzantine {
        node: usize,
    },
    /// The organizer hands the Byzantine device's revocation to one node.
    RevokeByzantine {
        node: usize,
    },
    /// The Byzantine device attacks one node, over gossip or in a sync message.
    Byzantine {
        node: usize,
        attack: Attack,
        ticket: usize,
        sync: bool,
    },
}

/// Every event of a run, in time order.
pub fn plan(rng: &mut StdRng, nodes: usize, scenario: &str) -> Vec<(u64, Event)> {
    let mut ev: Vec<(u64, Event)> = Vec::new();
    scans(rng, nodes, &mut ev);
    if rng.gen_bool(1.0 / 3.0) {
        let node = rng.gen_range(0..nodes);
        ev.push((rng.gen_range(0..ACTIVE_MS), Event::Refund { node }));
    }
    let chosen: Vec<&str> = if scenario == "mixed" {
        SCENARIOS[1..7]
            .iter()
            .copied()
            .filter(|_| rng.gen_bool(0.5))
            .collect()
    } else {
        vec![scenario]
    };
    for s in chosen {
        chaos(rng, nodes, s, &mut ev);
    }
    ev.sort_by_key(|(t, _)| *t);
    ev
}

/// Scans at the vip gate, whose zone is strict ([`crate::sim::world::VIP_CAPACITY`] places),
/// and exits of those holders, drawn from their own generator (the rest of a seed's plan is as
/// it was before zones could be strict): gates run out of room, ask for it, and are given it,
/// through the splits, crashes and losses of the run.
pub fn strict_scans(seed: u64, nodes: usize) -> Vec<(u64, Event)> {
    let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(seed ^ 0x5791_c7e0);
    let mut ev = Vec::new();
    for _ in 0..rng.gen_range(6..16) {
        let (node, ticket) = (rng.gen_range(0..nodes), rng.gen_range(0..VIP_TICKETS));
        let t = rng.gen_range(0..ACTIVE_MS);
        ev.push((
            t,
            Event::Scan {
                node,
                vip: true,
                ticket,
                gate: "vip",
                out: false,
            },
        ));
        if rng.gen_bool(0.4) {
            let exit_at = t + rng.gen_range(2_000..6_000);
            // Sometimes the ticket at the exit again (a screenshot, a steward scanning twice).
            let times = if rng.gen_bool(0.4) { 2 } else { 1 };
            for k in 0..times {
                let node = rng.gen_range(0..nodes);
                ev.push((
                    exit_at + k * rng.gen_range(100..3_000),
                    Event::Scan {
                        node,
                        vip: true,
                        ticket,
                        gate: "vip-exit",
                        out: true,
                    },
                ));
            }
        }
    }
    ev
}

/// Rule changes by bulletin, drawn from their own generator (the rest of a seed's plan is as it
/// was before rules could change): in a third of the runs general tickets get two entries, and
/// in half of those the organizer takes it back, the two bulletins in either order.
pub fn rule_changes(seed: u64, nodes: usize) -> Vec<(u64, Event)> {
    let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(seed ^ 0x0417_e5c4);
    let mut ev = Vec::new();
    if !rng.gen_bool(1.0 / 3.0) {
        return ev;
    }
    let back = rng.gen_bool(0.5);
    for two in [true, false].into_iter().filter(|two| *two || back) {
        let node = rng.gen_range(0..nodes);
        ev.push((rng.gen_range(0..ACTIVE_MS), Event::Rule { node, two }));
    }
    ev
}

/// Supervisors' gate pauses, from their own generator: in half the runs, one or two pauses of
/// the gate `north` at a node, each resumed by some node (itself or another) a few seconds
/// later, so pauses and resumes cross splits, crashes and restarts.
pub fn gate_pauses(seed: u64, nodes: usize) -> Vec<(u64, Event)> {
    let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(seed ^ 0x9a05_e0a7);
    let mut ev = Vec::new();
    if !rng.gen_bool(0.5) {
        return ev;
    }
    for _ in 0..rng.gen_range(1..=2) {
        let at = rng.gen_range(0..ACTIVE_MS);
        let node = rng.gen_range(0..nodes);
        ev.push((at, Event::PauseGate { node, paused: true }));
        let node = rng.gen_range(0..nodes);
        let back = at + rng.gen_range(500..4_000);
        ev.push((
            back,
            Event::PauseGate {
                node,
                paused: false,
            },
        ));
    }
    ev
}

fn scans(rng: &mut StdRng, nodes: usize, ev: &mut Vec<(u64, Event)>) {
    let count = rng.gen_range(30..70) * nodes.max(4) / 4;
    for _ in 0..count {
        let node = rng.gen_range(0..nodes);
        let vip = rng.gen_bool(0.15);
        let ticket = if vip {
            rng.gen_range(0..VIP_TICKETS)
        } else {
            rng.gen_range(0..GENERAL_TICKETS)
        };
        let t = rng.gen_range(0..ACTIVE_MS);
        let gate = if rng.gen_bool(0.5) { "north" } else { "south" };
        ev.push((
            t,
            Event::Scan {
                node,
                vip,
                ticket,
                gate,
                out: false,
            },
        ));
        // A shared screenshot: the same ticket at another gate soon after.
        if rng.gen_bool(0.3) {
            let other = (node + rng.gen_range(1..nodes.max(2))) % nodes;
            let later = t + rng.gen_range(0..4_000);
            ev.push((
                later,
                Event::Scan {
                    node: other,
                    vip,
                    ticket,
                    gate: "south",
                    out: false,
                },
            ));
        }
        // Re-entry: a VIP walks out and back in.
        if vip && rng.gen_bool(0.5) {
            let t2 = t + rng.gen_range(3_000..8_000);
            ev.push((
                t2,
                Event::Scan {
                    node,
                    vip,
                    ticket,
                    gate: "exit",
                    out: true,
                },
            ));
            let t3 = t2 + rng.gen_range(3_000..8_000);
            let back = (node + 1) % nodes;
            ev.push((
                t3,
                Event::Scan {
                    node: back,
                    vip,
                    ticket,
                    gate: "north",
                    out: false,
                },
            ));
        }
        if rng.gen_bool(0.05) {
            ev.push((t + 100, Event::Annul { node }));
        }
    }
}

fn chaos(rng: &mut StdRng, nodes: usize, scenario: &str, ev: &mut Vec<(u64, Event)>) {
    let at = |rng: &mut StdRng| rng.gen_range(0..ACTIVE_MS);
    match scenario {
        "lossy" => {
            let t = at(rng);
            ev.push((
                t,
                Event::Loss(rng.gen_range(0.05..0.4), rng.gen_range(0.0..0.2)),
            ));
            ev.push((t + rng.gen_range(1_000..8_000), Event::Loss(0.0, 0.0)));
        }
        "split" => {
            let side: Vec<bool> = (0..nodes)
                .map(|i| i < nodes / 2 || rng.gen_bool(0.2))
                .collect();
            let t = at(rng);
            ev.push((t, Event::Split(side)));
            ev.push((t + rng.gen_range(2_000..10_000), Event::Heal));
        }
        "oneway" => {
            let a = rng.gen_range(0..nodes);
            let t = at(rng);
            ev.push((t, Event::OneWay(a, (a + 1) % nodes)));
            ev.push((t + rng.gen_range(2_000..10_000), Event::Heal));
        }
        "crash" => {
            for _ in 0..rng.gen_range(1..=3) {
                let node = rng.gen_range(0..nodes);
                let t = at(rng);
                ev.push((t, Event::Crash { node }));
                ev.push((t + rng.gen_range(200..5_000), Event::Restart { node }));
            }
        }
        "skew" => {
            for node in 0..nodes {
                if rng.gen_bool(0.5) {
                    let by_ms = rng.gen_range(-30_000..30_000);
                    ev.push((at(rng), Event::ClockJump { node, by_ms }));
                }
            }
        }
        "byzantine" => byzantine(rng, nodes, ev),
        _ => {}
    }
}

fn byzantine(rng: &mut StdRng, nodes: usize, ev: &mut Vec<(u64, Event)>) {
    for _ in 0..rng.gen_range(6..20) {
        let attack = ATTACKS[rng.gen_range(0..ATTACKS.len())];
        let e = Event::Byzantine {
            node: rng.gen_range(0..nodes),
            attack,
            ticket: rng.gen_range(0..GENERAL_TICKETS),
            sync: rng.gen_bool(0.5),
        };
        ev.push((rng.gen_range(0..ACTIVE_MS), e));
    }
    // The device joins by bulletin, handed to one node (peers pass it on), sometimes again
    // later to another. Its revocation, when it comes, may come first: nodes then hold a cut
    // for a device they do not know yet.
    ev.push((
        rng.gen_range(0..ACTIVE_MS / 2),
        Event::AddByzantine {
            node: rng.gen_range(0..nodes),
        },
    ));
    if rng.gen_bool(0.3) {
        ev.push((
            rng.gen_range(ACTIVE_MS / 2..ACTIVE_MS),
            Event::AddByzantine {
                node: rng.gen_range(0..nodes),
            },
        ));
    }
    if rng.gen_bool(0.5) {
        let node = rng.gen_range(0..nodes);
        let at = match rng.gen_bool(0.5) {
            true => rng.gen_range(0..ACTIVE_MS / 4),
            false => rng.gen_range(ACTIVE_MS / 2..ACTIVE_MS),
        };
        ev.push((at, Event::RevokeByzantine { node }));
    }
}
