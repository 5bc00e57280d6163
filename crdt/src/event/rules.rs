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

use crate::event::EventConfig;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Most rule changes in one bulletin.
pub const RULE_CHANGES_MAX: usize = 64;
/// Most entries (and entries a day) a rule may allow.
pub const RULE_ENTRIES_MAX: u32 = 10_000;

/// What the policy allows for one tier, as far as the ledger's replay needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRule {
    /// How many `in` admits a ticket gets (credits).
    pub max_entries: u32,
    /// An `out` scan while inside gives one credit back.
    pub reentry: bool,
    /// Most `in` admits in one festival day (a weekend pass: one a day); 0, no daily limit.
    pub per_day: u32,
    /// When the festival day named by a date starts, in ms after that date's midnight UTC
    /// (06:00 local at UTC+2: 4 h; 00:00 local at UTC+2: -2 h).
    pub day_start_ms: i64,
}

impl Default for EntryRule {
    fn default() -> Self {
        EntryRule {
            max_entries: 1,
            reentry: false,
            per_day: 0,
            day_start_ms: 0,
        }
    }
}

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

/// The entry rules of the event file, per tier.
pub fn of_config(config: &EventConfig) -> HashMap<String, EntryRule> {
    config
        .tiers
        .iter()
        .map(|t| {
            let rule = EntryRule {
                max_entries: t.max_entries,
                reentry: t.reentry,
                per_day: t.max_entries_per_day.unwrap_or(0),
                day_start_ms: config.day_start_ms(),
            };
            (t.name.clone(), rule)
        })
        .collect()
}

/// Which bulletin a rule change came in: its version, then its hash.
pub type BulletinKey = (u64, [u8; 32]);

/// The rules in force: the configuration's, with `changes` (each bulletin's, keyed by the
/// bulletin) laid over them in bulletin order. A change naming a tier the event does not have
/// changes nothing.
pub fn in_force<'a>(
    config: &EventConfig,
    changes: impl IntoIterator<Item = (BulletinKey, &'a [RuleChange])>,
) -> HashMap<String, EntryRule> {
    let mut rules = of_config(config);
    let mut ordered: Vec<(BulletinKey, &[RuleChange])> =
        changes.into_iter().filter(|(_, c)| !c.is_empty()).collect();
    ordered.sort_by_key(|(key, _)| *key);
    ordered.dedup_by_key(|(key, _)| *key);
    for (_, changes) in ordered {
        for change in changes {
            if let Some(rule) = rules.get_mut(&change.tier) {
                change.apply(rule);
            }
        }
    }
    rules
}
