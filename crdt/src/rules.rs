//! Entry rules changed after the devices went out. An organizer's bulletin may change a tier's
//! `max_entries`, `reentry` and `max_entries_per_day` ([`RuleChange`]); the event file every
//! device holds stays as it was (its fingerprint still pairs the nodes).
//!
//! The rules in force are the package's with every bulletin's changes laid over them in
//! bulletin order (version, then hash), one field at a time ([`in_force`]). A node holding the
//! same bulletins judges by the same rules whatever order they came in, and a restart builds
//! them before it reads the store, as the running node had them. A change re-judges every
//! ticket of its tier from its records (`Index::set_rules`): double entries are those of the
//! rules in force, on every replica.

use crate::bulletin::Bulletin;
use crate::event::EventConfig;
use crate::index::EntryRule;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Most rule changes in one bulletin.
pub const RULE_CHANGES_MAX: usize = 64;
/// Most entries (and entries a day) a rule may allow.
pub const RULE_ENTRIES_MAX: u32 = 10_000;

/// One tier's rule change: each field given replaces the one in force.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleChange {
    pub tier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reentry: Option<bool>,
    /// 0 lifts the daily limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries_per_day: Option<u32>,
}

impl RuleChange {
    /// A tier name (1..=128 bytes), at least one field, entries 1..=[`RULE_ENTRIES_MAX`],
    /// entries a day 0..=[`RULE_ENTRIES_MAX`].
    pub fn is_valid(&self) -> bool {
        let some = self.max_entries.is_some()
            || self.reentry.is_some()
            || self.max_entries_per_day.is_some();
        !self.tier.is_empty()
            && crate::record::field_ok(&self.tier, crate::record::FIELD_BYTES_MAX)
            && some
            && self
                .max_entries
                .is_none_or(|n| (1..=RULE_ENTRIES_MAX).contains(&n))
            && self
                .max_entries_per_day
                .is_none_or(|n| n <= RULE_ENTRIES_MAX)
    }

    fn apply(&self, rule: &mut EntryRule) {
        if let Some(n) = self.max_entries {
            rule.max_entries = n;
        }
        if let Some(r) = self.reentry {
            rule.reentry = r;
        }
        if let Some(n) = self.max_entries_per_day {
            rule.per_day = n;
        }
    }
}

/// The rules in force: the configuration's, with the changes of `bulletins` laid over them in
/// bulletin order. A change naming a tier the event does not have changes nothing.
pub fn in_force<'a>(
    config: &EventConfig,
    bulletins: impl IntoIterator<Item = &'a Bulletin>,
) -> HashMap<String, EntryRule> {
    let mut rules = config.entry_rules();
    let mut ordered: Vec<&Bulletin> = bulletins
        .into_iter()
        .filter(|b| !b.body.rules.is_empty())
        .collect();
    ordered.sort_by_key(|b| (b.version(), b.hash()));
    ordered.dedup_by_key(|b| b.hash());
    for b in ordered {
        for change in &b.body.rules {
            if let Some(rule) = rules.get_mut(&change.tier) {
                change.apply(rule);
            }
        }
    }
    rules
}
