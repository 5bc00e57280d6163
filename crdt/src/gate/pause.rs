//! Emergency controls: the organizer pauses and resumes one gate, one zone or the whole event
//! with a signed bulletin (a supervisor pauses a gate for five minutes with a record of its
//! own: `gate::supervise`). While a scan's gate, its zone or the event is paused, every entry is
//! denied `paused` (recorded like any denial; exits still go through) and every scanner page
//! says so.
//!
//! Each target (a gate, a zone, the event) is a last-writer-wins register: the order with the
//! latest `issued_ms` wins, ties broken by the bulletin's hash. Bulletins may arrive in any
//! order and more than once; every node ends with the same pauses.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most pause orders in one bulletin.
pub const PAUSE_ORDERS_MAX: usize = 256;

/// What a pause order covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Event,
    Zone,
    Gate,
}

/// One order of a bulletin: pause (or resume) a gate, a zone or the event (`name` empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseOrder {
    pub scope: Scope,
    #[serde(default)]
    pub name: String,
    pub paused: bool,
}

impl PauseOrder {
    /// A name for a gate or zone (1..=64 bytes, no spaces or control characters), none for the
    /// event.
    pub fn is_valid(&self) -> bool {
        match self.scope {
            Scope::Event => self.name.is_empty(),
            _ => {
                !self.name.is_empty()
                    && self.name.len() <= crate::event::NAME_LEN_MAX
                    && !self
                        .name
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control())
            }
        }
    }
}

/// A pause in force, as the API and the pages show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActivePause {
    pub scope: Scope,
    pub name: String,
    pub since_ms: u64,
    /// A supervisor's gate pause: the device that signed it (none for the organizer's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Its device's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_name: Option<String>,
    /// When a supervisor's pause runs out (the organizer's hold until resumed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

impl ActivePause {
    /// `the event`, `zone main`, `gate north`.
    pub fn what(&self) -> String {
        match self.scope {
            Scope::Event => "the event".to_string(),
            Scope::Zone => format!("zone {}", self.name),
            Scope::Gate => format!("gate {}", self.name),
        }
    }
}

/// The pause registers: target → (issued, bulletin hash, paused).
#[derive(Clone, Debug, Default)]
pub struct Pauses {
    registers: BTreeMap<(Scope, String), (u64, [u8; 32], bool)>,
}

impl Pauses {
    /// Take an order issued at `issued_ms` by the bulletin `hash`; the latest wins.
    pub fn apply(&mut self, order: &PauseOrder, issued_ms: u64, hash: [u8; 32]) {
        if !order.is_valid() {
            return;
        }
        let key = (order.scope, order.name.clone());
        let new = (issued_ms, hash, order.paused);
        match self.registers.get(&key) {
            Some(old) if (old.0, old.1) >= (new.0, new.1) => {}
            _ => {
                self.registers.insert(key, new);
            }
        }
    }

    /// The pause stopping scans at this gate of this zone, if any (the event's first, then the
    /// zone's, then the gate's).
    pub fn stopping(&self, gate: &str, zone: &str) -> Option<ActivePause> {
        [(Scope::Event, ""), (Scope::Zone, zone), (Scope::Gate, gate)]
            .into_iter()
            .find_map(|(scope, name)| self.active(scope, name))
    }

    fn active(&self, scope: Scope, name: &str) -> Option<ActivePause> {
        let (since_ms, _, paused) = self.registers.get(&(scope, name.to_string()))?;
        paused.then(|| ActivePause {
            scope,
            name: name.to_string(),
            since_ms: *since_ms,
            by: None,
            by_name: None,
            until_ms: None,
        })
    }

    /// Every pause in force.
    pub fn all(&self) -> Vec<ActivePause> {
        self.registers
            .iter()
            .filter(|(_, (_, _, paused))| *paused)
            .map(|((scope, name), (since_ms, _, _))| ActivePause {
                scope: *scope,
                name: name.clone(),
                since_ms: *since_ms,
                by: None,
                by_name: None,
                until_ms: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(scope: Scope, name: &str, paused: bool) -> PauseOrder {
        PauseOrder {
            scope,
            name: name.into(),
            paused,
        }
    }

    #[test]
    fn the_latest_order_wins_in_any_arrival_order() {
        let pause = (order(Scope::Gate, "north", true), 10, [1; 32]);
        let resume = (order(Scope::Gate, "north", false), 20, [0; 32]);
        for seq in [[&pause, &resume], [&resume, &pause]] {
            let mut p = Pauses::default();
            for (o, t, h) in seq {
                p.apply(o, *t, *h);
                p.apply(o, *t, *h);
            }
            assert_eq!(p.stopping("north", "main"), None);
        }
        let mut p = Pauses::default();
        p.apply(&order(Scope::Zone, "main", true), 5, [0; 32]);
        p.apply(&order(Scope::Event, "", true), 6, [0; 32]);
        assert_eq!(p.stopping("south", "main").unwrap().scope, Scope::Event);
        p.apply(&order(Scope::Event, "", false), 7, [0; 32]);
        assert_eq!(p.stopping("south", "main").unwrap().scope, Scope::Zone);
        assert_eq!(p.stopping("vip", "vip"), None);
        assert_eq!(p.all().len(), 1);
        // Orders that name nothing valid are ignored.
        p.apply(&order(Scope::Gate, "", true), 9, [0; 32]);
        p.apply(&order(Scope::Event, "x", true), 9, [0; 32]);
        assert_eq!(p.all().len(), 1);
    }
}
