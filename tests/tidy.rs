//! The codebase's invariants, checked by Cargo (in the style of rust-analyzer's `tidy` test):
//! the pure crate stays pure and its rooms import only what ARCHITECTURE.md's room table allows,
//! no two files import each other around a circle, libp2p and sled each stay in their one room,
//! no module imports the CLI, no function outside tests grows past 70 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

mod imports;

/// Longest function, in lines from its signature to its closing brace, outside tests.
const FN_LINES_MAX: usize = 70;

/// Crates that do I/O (files, sockets, threads, runtimes, databases). The pure crate takes bytes
/// and time in and gives bytes and effects out, so none of these may enter its dependency tree.
const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "async-std",
    "libp2p",
    "libp2p-swarm",
    "quinn",
    "rustls",
    "sled",
    "axum",
    "hyper",
    "reqwest",
    "tokio-postgres",
    "postgres",
    "mdns-sd",
    "rayon",
    "crossbeam-channel",
];

/// What the pure crate's own code may not call: the clock, the file system, the network, the
/// process, threads, randomness, printing.
const IMPURE_CALLS: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::thread",
    "std::env",
    "std::io::stdin",
    "std::io::stdout",
    "SystemTime::now",
    "Instant::now",
    "rand::",
    "OsRng",
    "thread_rng",
    "println!",
    "eprintln!",
    "print!(",
    "dbg!(",
];

/// The crates whose code is held to the function-length rule, and the pure ones.
const CRATES: &[&str] = &["crdt", "transport", "node", "cloud-bridge", "simulations"];
const PURE: &[&str] = &["crdt"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources(krate: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    rust_files(&root().join(krate).join("src"), &mut out);
    out.sort();
    out
}

/// The lines of a file with `#[cfg(test)]` items blanked out.
fn without_tests(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("#[cfg(test)]") {
            let mut j = i + 1;
            while j < lines.len() && !lines[j].trim_end().ends_with('{') {
                if lines[j].trim_end().ends_with(';') {
                    break;
                }
                j += 1;
            }
            if j < lines.len() && lines[j].trim_end().ends_with('{') {
                let indent = indent_of(lines[j]);
                let close = format!("{}}}", " ".repeat(indent));
                let mut k = j + 1;
                while k < lines.len() && lines[k].trim_end() != close {
                    k += 1;
                }
                out.extend((i..=k.min(lines.len() - 1)).map(|_| String::new()));
                i = k + 1;
                continue;
            }
        }
        out.push(lines[i].to_string());
        i += 1;
    }
    out
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The name of the function a line declares, if it declares one.
fn fn_name(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    for prefix in ["const ", "async ", "unsafe "] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some(&rest[..end])
}

/// Functions longer than [`FN_LINES_MAX`]: (lines, line number, name).
fn long_functions(lines: &[String]) -> Vec<(usize, usize, String)> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = fn_name(&lines[i]) else {
            i += 1;
            continue;
        };
        let mut open = i;
        while open < lines.len()
            && !lines[open].trim_end().ends_with('{')
            && !lines[open].trim_end().ends_with(';')
        {
            open += 1;
        }
        if open >= lines.len() || lines[open].trim_end().ends_with(';') {
            i = open + 1;
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent_of(&lines[i])));
        let mut end = open + 1;
        while end < lines.len() && lines[end].trim_end() != close {
            end += 1;
        }
        let n = end - i + 1;
        if n > FN_LINES_MAX {
            found.push((n, i + 1, name.to_string()));
        }
        i = end + 1;
    }
    found
}

#[test]
fn no_function_outside_tests_is_longer_than_70_lines() {
    let mut too_long = Vec::new();
    let mut files: Vec<PathBuf> = CRATES.iter().flat_map(|c| sources(c)).collect();
    files.push(root().join("tests/procs.rs"));
    files.push(root().join("tests/lib.rs"));
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line, name) in long_functions(&without_tests(&text)) {
            too_long.push(format!(
                "{}:{line} fn {name}: {n} lines",
                file.strip_prefix(root()).unwrap_or(&file).display()
            ));
        }
    }
    assert!(
        too_long.is_empty(),
        "functions over {FN_LINES_MAX} lines (split them):\n{}",
        too_long.join("\n")
    );
}

#[test]
fn the_length_rule_sees_a_long_function_and_skips_tests() {
    let body = |n: usize| (0..n).map(|_| "    x();\n").collect::<String>();
    let long = format!("pub async fn long(a: u8) {{\n{}}}\n", body(69));
    assert_eq!(long_functions(&without_tests(&long)).len(), 1);
    let short = format!("fn short() {{\n{}}}\n", body(68));
    assert!(long_functions(&without_tests(&short)).is_empty());
    let in_tests = format!(
        "#[cfg(test)]\nmod tests {{\n    fn t() {{\n{}    }}\n}}\n",
        body(80)
    );
    assert!(long_functions(&without_tests(&in_tests)).is_empty());
}

#[test]
fn no_module_imports_the_cli() {
    let mut offenders = Vec::new();
    for krate in CRATES {
        for file in sources(krate) {
            if file.ends_with("node/src/main.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("read source");
            for (i, line) in text.lines().enumerate() {
                let l = line.trim();
                if l.contains("crate::cli")
                    || l.contains("super::cli")
                    || l.starts_with("mod cli")
                    || l.starts_with("pub mod cli")
                {
                    offenders.push(format!("{}:{}: {l}", file.display(), i + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "modules importing the CLI:\n{}",
        offenders.join("\n")
    );
}

/// A bug planted in the ledger ([`gatemesh_crdt::ledger::Planted`]) is for the simulator's
/// self-check only: no other crate names it.
#[test]
fn only_the_simulator_plants_bugs() {
    let mut offenders = Vec::new();
    for krate in CRATES.iter().filter(|k| **k != "simulations") {
        for file in sources(krate) {
            let text = std::fs::read_to_string(&file).expect("read source");
            for (i, line) in text.lines().enumerate() {
                let l = line.trim();
                let defines = file.ends_with("crdt/src/ledger/state.rs");
                if (l.contains(".plant(") || l.contains("Planted::")) && !defines {
                    offenders.push(format!("{}:{}: {l}", file.display(), i + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "planted bugs outside the simulator:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_pure_crate_calls_no_io() {
    let mut offenders = Vec::new();
    for krate in PURE {
        for file in sources(krate) {
            let text = std::fs::read_to_string(&file).expect("read source");
            for (i, line) in without_tests(&text).iter().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if let Some(call) = IMPURE_CALLS.iter().find(|c| code.contains(*c)) {
                    offenders.push(format!("{}:{}: {call}", file.display(), i + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "I/O in the pure crate:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_pure_crate_depends_on_no_io_crate() {
    for krate in PURE {
        let package = format!("gatemesh-{krate}");
        let out = Command::new(env!("CARGO"))
            .args([
                "tree",
                "--offline",
                "--locked",
                "-e",
                "normal",
                "--prefix",
                "none",
            ])
            .args(["-p", &package])
            .current_dir(root())
            .output()
            .expect("run cargo tree");
        assert!(
            out.status.success(),
            "cargo tree: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8_lossy(&out.stdout);
        let names: Vec<&str> = tree.lines().filter_map(|l| l.split(' ').next()).collect();
        assert!(
            names.contains(&"ed25519-dalek"),
            "cargo tree listed {names:?}"
        );
        let io: Vec<&&str> = IO_CRATES.iter().filter(|c| names.contains(c)).collect();
        assert!(io.is_empty(), "{package} depends on I/O crates {io:?}");
    }
}

/// `(crate, dependency)` pairs allowed in a Cargo.toml: libp2p only in the transport (and in the
/// test harness, whose attacker speaks raw libp2p); sled only in the node, whose `store` module
/// is the only one to name it.
const ROOMS: &[(&str, &[&str])] = &[("libp2p", &["transport", "tests"]), ("sled", &["node"])];

#[test]
fn libp2p_and_sled_each_stay_in_their_room() {
    let mut offenders = Vec::new();
    for krate in CRATES.iter().chain(["tests", "fuzz-cases"].iter()) {
        let toml = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).expect("toml");
        for (dep, allowed) in ROOMS {
            let listed = toml.lines().any(|l| {
                l.trim_start()
                    .strip_prefix(dep)
                    .is_some_and(|rest| rest.starts_with(['.', ' ', '=']))
            });
            if listed && !allowed.contains(krate) {
                offenders.push(format!("{krate}/Cargo.toml depends on {dep}"));
            }
        }
    }
    for krate in CRATES {
        for file in sources(krate) {
            let text = std::fs::read_to_string(&file).expect("read source");
            let names_sled = without_tests(&text)
                .iter()
                .any(|l| l.split("//").next().unwrap_or("").contains("sled::"));
            if names_sled && !file.ends_with("node/src/store.rs") {
                offenders.push(format!("{} names sled", file.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "out of their room:\n{}",
        offenders.join("\n")
    );
}

/// A crate's files by module path, their code with comments and tests left out.
fn crate_code(krate: &str) -> BTreeMap<String, String> {
    let src = root().join(krate).join("src");
    sources(krate)
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("read source");
            (
                imports::module_path(&src, f),
                imports::code_of(&without_tests(&text)),
            )
        })
        .collect()
}

#[test]
fn no_import_circle_between_files() {
    let mut found = Vec::new();
    for krate in CRATES {
        for c in imports::circles(&imports::graph(&crate_code(krate))) {
            found.push(format!("{krate}: {}", c.join(" ↔ ")));
        }
    }
    assert!(
        found.is_empty(),
        "files that import each other (move what both need into a file both may import):\n{}",
        found.join("\n")
    );
}

/// The pure crate's rooms import only the rooms ARCHITECTURE.md's table lets them.
#[test]
fn every_room_imports_only_what_the_room_table_allows() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let table = imports::room_table(&doc);
    assert!(
        table.len() >= 7,
        "the room table in ARCHITECTURE.md: {table:?}"
    );
    let graph = imports::graph(&crate_code("crdt"));
    let bad = imports::forbidden(&graph, &table);
    assert!(
        bad.is_empty(),
        "imports the room table in ARCHITECTURE.md does not allow:\n{}",
        bad.join("\n")
    );
}

/// Planted files: module path → code.
fn planted(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(m, t)| (m.to_string(), imports::code_of(&without_tests(t))))
        .collect()
}

#[test]
fn the_circle_rule_sees_a_planted_circle() {
    let files = planted(&[
        (
            "",
            "pub mod a;\npub mod c;\npub use c::{Gamma, Delta};\npub use a::b::Beta;\n",
        ),
        (
            "a",
            "pub mod b;\npub mod e;\nmod inner;\npub use inner::*;\n",
        ),
        (
            "a::inner",
            "use crate::{a::b::{self, X}, hlc};\n// crate::d in a comment\n",
        ),
        ("a::b", "fn f() -> crate::Gamma { todo!() }\n"),
        (
            "c",
            "use crate::a::Y;\n#[cfg(test)]\nmod tests {\n    use crate::d;\n}\n",
        ),
        ("d", "use crate::Beta;\n"),
        ("a::e", "fn g() { super::Door::new() }\n"),
        ("hlc", ""),
    ]);
    let graph = imports::graph(&files);
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(graph["a::inner"], set(&["a::b", "hlc"]));
    assert_eq!(graph["a::b"], set(&["c"]));
    assert_eq!(graph["a::e"], set(&["a::inner"]));
    assert_eq!(graph["c"], set(&["a::inner"]));
    assert_eq!(graph["d"], set(&["a::b"]));
    assert_eq!(
        imports::circles(&graph),
        vec![vec!["a::b", "a::inner", "c"]]
    );
    let mut broken = graph.clone();
    broken.insert("c".into(), BTreeSet::new());
    assert!(imports::circles(&broken).is_empty());
}

#[test]
fn the_room_rule_sees_a_forbidden_import() {
    let table = imports::room_table(
        "| room | may import |\n|---|---|\n| `leaf` | nothing |\n| `low` | `leaf` |\n\
         | `high` | `leaf`, `low` |\n",
    );
    assert_eq!(table["high"], BTreeSet::from(["leaf".into(), "low".into()]));
    let files = planted(&[
        (
            "",
            "pub mod leaf;\npub mod low;\npub mod high;\npub use high::Top;\n",
        ),
        ("leaf", ""),
        ("low", "pub mod part;\n"),
        (
            "low::part",
            "use crate::leaf;\nfn f() -> crate::Top { todo!() }\n",
        ),
        (
            "high",
            "use crate::low::part::{self};\nuse crate::leaf::X;\n",
        ),
        ("odd", "use crate::leaf;\n"),
    ]);
    let bad = imports::forbidden(&imports::graph(&files), &table);
    assert_eq!(
        bad,
        vec![
            "low::part imports high".to_string(),
            "odd: room `odd` has no row in the table".to_string(),
        ]
    );
}
