//! The hash maps of the index and its totals (a leaf).

use std::collections::HashMap;

/// The index's maps: keyed by what records say (ticket ids, names, scan refs), hashed with
/// foldhash's quality hasher, seeded per map (several times faster than SipHash on short keys;
/// a restart re-indexes every record through these maps).
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::quality::RandomState>;
