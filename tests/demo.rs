//! `gatemesh demo --short` runs to its summary on this machine, and the summary tells the truth:
//! the split's double entries are reported identically by every node.

use std::process::Command;

#[test]
fn the_demo_runs_to_its_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = Command::new(gatemesh_tests::gatemesh_bin())
        .args([
            "demo",
            "--short",
            "--no-wait",
            "--http",
            "127.0.0.1:0",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key:?} in:\n{text}"))
            .to_string()
    };
    assert!(
        line("duplicates stopped across gates").ends_with(" 3"),
        "{text}"
    );
    assert!(
        line("double entries during the split")
            .contains("3 (on 3 tickets, the same list on 4 of 4 nodes)"),
        "{text}"
    );
    assert!(line("denied invalid_signature").ends_with(" 1"), "{text}");
    // 15 at the doors + 3 tickets admitted once on each side of the split.
    assert!(line("admitted").ends_with(" 21"), "{text}");
    assert!(dir.join("event/event.json").exists());
    assert!(line("dashboard").contains("/dashboard#token="), "{text}");
}
