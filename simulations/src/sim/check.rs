//! The invariants, checked after a quiet period (the network whole, every node up).

use super::world::world;
use super::Sim;
use gatemesh_crdt::{Direction, EntryRule, Ledger, Verdict};
use std::collections::{BTreeMap, HashMap, HashSet};

type Picture = (
    Vec<gatemesh_crdt::Tip>,
    BTreeMap<String, Vec<String>>,
    String,
    String,
);

fn tickets() -> Vec<String> {
    world()
        .general
        .iter()
        .chain(world().vip.iter())
        .map(|(t, _)| t.clone())
        .collect()
}

fn picture(l: &Ledger, tickets: &[String]) -> Picture {
    let records = tickets
        .iter()
        .map(|t| {
            let rs = l
                .index()
                .records(t)
                .into_iter()
                .map(|r| format!("{}@{}", r.scan_id, r.hlc));
            (t.clone(), rs.collect())
        })
        .collect();
    let index = l.index();
    // The gate pause register (the pause in force, second by second over the run) and the audit
    // of supervisors' actions belong with the rules: what every node judges by.
    let roster = l.roster();
    let paused: Vec<_> = (0..60)
        .map(|k| super::BASE_MS + k * 1_000)
        .map(|t| (index.actions()).gate_pause("north", t, |d| roster.is_supervisor(d)))
        .collect();
    let audit: Vec<_> = index.actions().latest(usize::MAX).collect();
    let rules = format!(
        "{:?} {:?} {paused:?} {audit:?}",
        index.rule("general"),
        index.rule("vip")
    );
    (
        l.summary(),
        records,
        serde_json::to_string(&l.index().conflicts()).unwrap_or_default(),
        rules,
    )
}

impl Sim {
    /// Check every invariant now; violations are labelled with `when`.
    pub(super) fn check(&mut self, when: &str) {
        let mut v = Vec::new();
        let ledgers: Vec<&Ledger> = self
            .nodes
            .iter()
            .map(|n| {
                n.replica
                    .as_ref()
                    .expect("every node is up")
                    .gate()
                    .ledger()
            })
            .collect();
        self.lost_acks(&ledgers, &mut v);
        let all = tickets();
        converged(&ledgers, &all, &mut v);
        let doubles = beyond_policy(&ledgers, &all, &mut v);
        self.restart_equivalent(&all, &mut v);
        if when.is_empty() {
            self.outcome.double_entries = doubles;
            let byz = world().byzantine().id().to_string();
            let mut held = 0;
            ledgers[0]
                .index()
                .for_each_record(|r| held += usize::from(r.device == byz));
            self.outcome.byzantine_records = held;
        }
        self.outcome
            .violations
            .extend(v.into_iter().map(|s| format!("{when}{s}")));
    }

    /// 5. Restart equivalence: each node reopened from its store (what it wrote, durable or
    ///    not, fork proofs, bulletins) holds the same records, conflicts, roster and revoked
    ///    tickets as the running node; and no clock, running or reopened, follows a time beyond
    ///    [`MAX_FORWARD_DRIFT_MS`] past the node's own.
    fn restart_equivalent(&self, tickets: &[String], v: &mut Vec<String>) {
        for i in 0..self.nodes.len() {
            self.node_restart_equivalent(i, tickets, v);
        }
    }

    /// Invariant 5 for one node, at any step of the run (the harness checks it after every
    /// bulletin a node takes, mid-run, as well as at each check).
    pub(super) fn node_restart_equivalent(
        &self,
        i: usize,
        tickets: &[String],
        v: &mut Vec<String>,
    ) {
        use gatemesh_crdt::record::hlc::MAX_FORWARD_DRIFT_MS;
        let node = &self.nodes[i];
        let Some(running) = node.replica.as_ref() else {
            return;
        };
        let now = self.node_now(i);
        let stored: Vec<Vec<u8>> = node.durable.iter().chain(&node.relaxed).cloned().collect();
        let back = self.reopened(i, &stored, now);
        let (r, b) = (running.gate(), back.gate());
        if picture(r.ledger(), tickets) != picture(b.ledger(), tickets) {
            v.push(format!(
                "node {i} reopened from its store holds other records"
            ));
        }
        if standing(r) != standing(b) {
            v.push(format!(
                "node {i} reopened has another roster or revoked tickets"
            ));
        }
        for (what, g) in [("running", r), ("reopened", b)] {
            let clock = g.ledger().clock().wall_ms();
            if clock > now + MAX_FORWARD_DRIFT_MS {
                v.push(format!(
                    "node {i} {what} follows a clock {} s ahead of its own",
                    (clock - now) / 1000
                ));
            }
        }
    }

    /// Invariant 5 checked mid-run on node `n` (after it took a bulletin).
    pub(super) fn check_restart_now(&mut self, n: usize) {
        let mut v = Vec::new();
        self.node_restart_equivalent(n, &tickets(), &mut v);
        let at = self.now;
        (self.outcome.violations).extend(v.into_iter().map(|s| format!("at {at} ms: {s}")));
    }

    /// 1. No acknowledged admit lost.
    fn lost_acks(&self, ledgers: &[&Ledger], v: &mut Vec<String>) {
        for a in &self.acked {
            for (i, l) in ledgers.iter().enumerate() {
                let held = l
                    .index()
                    .records(&a.ticket)
                    .iter()
                    .any(|r| r.scan_id == a.scan_id);
                if !held {
                    v.push(format!(
                        "acknowledged admit {} (ticket {}, node {}) missing on node {i}",
                        a.scan_id, a.ticket, a.node
                    ));
                }
            }
        }
    }
}

/// What the bulletins made of a node: its roster (devices and their cuts) and revoked tickets
/// (the rules in force are in its [`picture`]).
fn standing(g: &gatemesh_crdt::gate::GateLogic) -> (Vec<String>, Vec<String>) {
    let mut roster: Vec<String> = (g.ledger().roster().iter())
        .map(|(id, d)| format!("{id}:{:?}", d.cut))
        .collect();
    roster.sort();
    let revoked = tickets().into_iter().filter(|t| g.is_revoked(t)).collect();
    (roster, revoked)
}

/// 2. Convergence.
fn converged(ledgers: &[&Ledger], tickets: &[String], v: &mut Vec<String>) {
    let first = picture(ledgers[0], tickets);
    for (i, l) in ledgers.iter().enumerate().skip(1) {
        let p = picture(l, tickets);
        if p.0 != first.0 {
            v.push(format!("node {i} has other chain tips than node 0"));
        }
        if p.1 != first.1 {
            let diff: Vec<String> =
                p.1.iter()
                    .filter(|(t, r)| first.1.get(*t) != Some(*r))
                    .map(|(t, r)| format!("{t}: {r:?} vs {:?}", first.1.get(t)))
                    .take(3)
                    .collect();
            v.push(format!(
                "node {i} holds other records than node 0 ({})",
                diff.join(", ")
            ));
        }
        if p.2 != first.2 {
            v.push(format!("node {i} reports other conflicts than node 0"));
        }
        if p.3 != first.3 {
            v.push(format!(
                "node {i} judges by other entry rules, gate pauses or audit than node 0"
            ));
        }
    }
}

/// 3. Every admit beyond policy is a reported double entry, on every node (an independent
///    replay: general = one entry; vip = one at a time, an `out` gives it back; annuls by the
///    admitting device). Returns node 0's count.
fn beyond_policy(ledgers: &[&Ledger], tickets: &[String], v: &mut Vec<String>) -> usize {
    let vip: HashSet<&String> = world().vip.iter().map(|(t, _)| t).collect();
    let mut first = 0;
    for (i, l) in ledgers.iter().enumerate() {
        let conflicts: HashMap<String, HashSet<String>> = l
            .index()
            .conflicts()
            .into_iter()
            .map(|c| {
                (
                    c.ticket_id,
                    c.double_entries.into_iter().map(|r| r.scan_id).collect(),
                )
            })
            .collect();
        for t in tickets {
            let tier = if vip.contains(t) { "vip" } else { "general" };
            let beyond = replay(l, t, l.index().rule(tier));
            let reported = conflicts.get(t).cloned().unwrap_or_default();
            if i == 0 {
                first += beyond.len();
            }
            for b in beyond.iter().filter(|b| !reported.contains(*b)) {
                v.push(format!(
                    "node {i}: double entry {b} on ticket {t} not reported"
                ));
            }
            if reported.len() != beyond.len() {
                v.push(format!(
                    "node {i}: ticket {t} reports {} double entries, the policy says {}",
                    reported.len(),
                    beyond.len()
                ));
            }
        }
    }
    first
}

fn replay(l: &Ledger, ticket: &str, rule: EntryRule) -> Vec<String> {
    let records = l.index().records(ticket);
    let device_of = |id: &str| id.split('-').next().unwrap_or_default().to_string();
    // One undo per ticket: the first annul, in ledger order, of an earlier admit by its own
    // device within the window; later ones undo nothing.
    let wall = |hlc: u64| gatemesh_crdt::Hlc(hlc).wall_ms();
    let annulled: HashSet<&str> = (records.iter().enumerate())
        .filter(|(_, a)| a.verdict == Verdict::Annul)
        .find_map(|(i, a)| {
            let t = a.annuls.as_deref()?;
            let target = records[..i]
                .iter()
                .find(|r| r.scan_id == t && r.verdict == Verdict::Admit)?;
            let ok = device_of(t) == a.device
                && wall(a.hlc).saturating_sub(wall(target.hlc)) <= gatemesh_crdt::ANNUL_WINDOW_MS;
            ok.then_some(t)
        })
        .into_iter()
        .collect();
    let (mut inside, mut credits) = (false, rule.max_entries);
    let mut beyond = Vec::new();
    for r in records.iter().filter(|r| r.verdict == Verdict::Admit) {
        if annulled.contains(r.scan_id.as_str()) {
            continue;
        }
        match r.direction {
            Direction::In if credits > 0 => {
                credits -= 1;
                inside = true;
            }
            Direction::In => beyond.push(r.scan_id.clone()),
            Direction::Out => {
                if inside && rule.reentry {
                    credits += 1;
                }
                inside = false;
            }
        }
    }
    beyond
}
