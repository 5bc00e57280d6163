//! The seed corpus is genuine, committed and current; every committed corpus file and every
//! crasher kept in `fuzz/regressions/` runs clean through its target.

use gatemesh_fuzz_cases::world::{device_id, World};
use gatemesh_fuzz_cases::{pieces, run, seeds, NOW, TARGETS};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries.map(|e| e.expect("dir entry").path()).collect();
    out.sort();
    out
}

#[test]
fn the_seeds_are_what_a_node_takes_in() {
    use gatemesh_crdt::record::change;
    let changes = pieces(&seeds("change")[0]);
    assert_eq!(
        changes.len(),
        9,
        "one change per seed code, a gate pause and its resume, and a room gift"
    );
    for c in &changes {
        change::read(c).expect("a seed change is canonical");
    }
    for target in TARGETS {
        let s = seeds(target);
        assert!(!s.is_empty(), "{target} has seeds");
        for input in s {
            run(target, &input);
        }
    }
}

#[test]
fn the_room_ask_seed_reaches_a_gift() {
    use gatemesh_crdt::protocol::{Input, Output, KIND_HELLO};
    let w = World::new();
    let mut replica = w.replica(1);
    let from = device_id(2);
    let fingerprint = replica.gate().config().fingerprint();
    let hello = [&[KIND_HELLO][..], &fingerprint].concat();
    replica.handle(
        NOW,
        Input::SyncRequest {
            from,
            token: 6,
            data: hello,
        },
    );
    let ask = seeds("sync").into_iter().nth(4).expect("the room ask seed");
    assert_eq!(ask[0] % 6, 4, "the fifth sync seed is the room ask");
    let data = [&[gatemesh_crdt::protocol::KIND_ROOM][..], &ask[1..]].concat();
    let out = replica.handle(
        NOW,
        Input::SyncRequest {
            from,
            token: 7,
            data,
        },
    );
    let wrote = out.iter().any(|o| matches!(o, Output::Persist { .. }));
    assert!(
        wrote,
        "scanner 1 gives room to scanner 2 that asked: {out:?}"
    );
    // The ask carried scanner 2's latest changes: scanner 1 holds them beside its gift (taken in
    // or, past the gap of the earlier ones it lacks, held for the sync it starts).
    let ledger = replica.gate().ledger();
    let held = ledger.changes().count() + ledger.held();
    assert_eq!(held, 5, "four of scanner 2's changes and the gift");
}

#[test]
fn the_committed_seed_corpus_is_current() {
    let write = std::env::var_os("GATEMESH_WRITE_SEEDS").is_some();
    for target in TARGETS {
        let dir = fuzz_dir().join("corpus").join(target);
        for (i, seed) in seeds(target).iter().enumerate() {
            let path = dir.join(format!("seed-{i}"));
            if write {
                std::fs::create_dir_all(&dir).expect("corpus dir");
                std::fs::write(&path, seed).expect("write seed");
            }
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                &committed == seed,
                "{} is not the current seed (GATEMESH_WRITE_SEEDS=1 cargo test -p \
                 gatemesh-fuzz-cases rewrites the corpus)",
                path.display()
            );
        }
    }
}

#[test]
fn every_committed_input_and_crasher_runs_clean() {
    let mut ran = 0;
    for target in TARGETS {
        for kind in ["corpus", "regressions"] {
            for file in files(&fuzz_dir().join(kind).join(target)) {
                let bytes = std::fs::read(&file).expect("read input");
                run(target, &bytes);
                ran += 1;
            }
        }
    }
    assert!(
        ran >= TARGETS.len(),
        "the corpus is committed ({ran} inputs)"
    );
}
