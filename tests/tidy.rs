//! The codebase's invariants, checked by Cargo (in the style of rust-analyzer's `tidy` test):
//! the pure crate stays pure, libp2p and sled each stay in their one room, no module imports the
//! CLI, no function outside tests grows past 70 lines.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The crate's top-level modules (files and folders under `src`).
fn modules_of(krate: &str) -> BTreeSet<String> {
    let src = root().join(krate).join("src");
    sources(krate)
        .iter()
        .map(|f| top_module(&src, f))
        .filter(|m| m != "lib" && m != "main")
        .collect()
}

/// `src/a.rs`, `src/a/mod.rs` and `src/a/b.rs` are all module `a`.
fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let first = rel.components().next().expect("a path under src");
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_string()
}

/// What the crate root re-exports: `pub use m::{A, B};` and `pub use m::A;` make `crate::A`
/// an import of `m`.
fn root_exports(lib: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let text = lib.replace('\n', " ");
    for part in text.split("pub use ").skip(1) {
        let stmt = part.split(';').next().unwrap_or_default();
        let Some((module, rest)) = stmt.split_once("::") else {
            continue;
        };
        let names = rest.trim().trim_start_matches('{').trim_end_matches('}');
        for n in names.split(',') {
            let n = n.trim().rsplit("::").next().unwrap_or_default();
            if !n.is_empty() {
                out.insert(n.to_string(), module.trim().to_string());
            }
        }
    }
    out
}

/// The modules one file's code (comments and tests left out) names through `crate::`.
fn imports_of(text: &str, exports: &HashMap<String, String>) -> BTreeSet<String> {
    let code: Vec<String> = without_tests(text)
        .into_iter()
        .map(|l| match l.find("//") {
            Some(i) => l[..i].to_string(),
            None => l,
        })
        .collect();
    let code = code.join(" ");
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut name = |n: String| {
        if n.starts_with(|c: char| c.is_ascii_uppercase()) {
            out.extend(exports.get(&n).cloned());
        } else if !n.is_empty() {
            out.insert(n);
        }
    };
    for part in code.split("crate::").skip(1) {
        let Some(group) = part.strip_prefix('{') else {
            name(ident(part));
            continue;
        };
        // The heads of a group: the names at its top level.
        let (mut depth, mut head) = (0, String::new());
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => name(ident(std::mem::take(&mut head).trim())),
                _ if depth == 0 => head.push(c),
                _ => {}
            }
        }
        name(ident(head.trim()));
    }
    out
}

/// Module → the crate's modules it imports.
fn import_graph(krate: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join(krate).join("src");
    let modules = modules_of(krate);
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let exports = root_exports(&lib);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in sources(krate) {
        let m = top_module(&src, &file);
        if !modules.contains(&m) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let uses = imports_of(&text, &exports);
        let entry = graph.entry(m.clone()).or_default();
        entry.extend(uses.into_iter().filter(|u| *u != m && modules.contains(u)));
    }
    graph
}

/// Every circle of the graph: its strongly connected parts of two modules or more (Tarjan).
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: HashMap<&'g str, (usize, usize)>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(w: &mut Walk<'g>, v: &'g str) {
        let n = w.index.len();
        w.index.insert(v, (n, n));
        w.stack.push(v);
        for u in w.graph.get(v).into_iter().flatten() {
            let u = u.as_str();
            let low = match w.index.get(u) {
                None => {
                    visit(w, u);
                    w.index[u].1
                }
                Some(&(i, _)) if w.stack.contains(&u) => i,
                Some(_) => continue,
            };
            let e = w.index.get_mut(v).expect("visited");
            e.1 = e.1.min(low);
        }
        if w.index[v].0 == w.index[v].1 {
            let at = w.stack.iter().rposition(|x| *x == v).expect("on the stack");
            let part: Vec<String> = w.stack.drain(at..).map(str::to_string).collect();
            if part.len() > 1 {
                w.found.push(part);
            }
        }
    }
    let mut w = Walk {
        graph,
        index: HashMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !w.index.contains_key(v.as_str()) {
            visit(&mut w, v);
        }
    }
    for c in &mut w.found {
        c.sort();
    }
    w.found
}

#[test]
fn no_import_circle_between_modules() {
    let mut found = Vec::new();
    for krate in CRATES {
        for c in circles(&import_graph(krate)) {
            found.push(format!("{krate}: {}", c.join(" ↔ ")));
        }
    }
    assert!(
        found.is_empty(),
        "modules that import each other (move what both need into a module both may \
         import):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_circle_rule_sees_a_planted_circle() {
    let exports = root_exports("pub use c::{Gamma, Delta};\npub use b::Beta;");
    let texts = [
        (
            "a",
            "use crate::{b::{self, X}, hlc};\n// crate::d in a comment\n",
        ),
        ("b", "fn f() -> crate::Gamma { todo!() }\n"),
        (
            "c",
            "use crate::a::Y;\n#[cfg(test)]\nmod tests {\n    use crate::d;\n}\n",
        ),
        ("d", "use crate::Beta;\n"),
    ];
    let graph: BTreeMap<String, BTreeSet<String>> = texts
        .iter()
        .map(|(m, t)| (m.to_string(), imports_of(t, &exports)))
        .collect();
    assert_eq!(graph["a"], BTreeSet::from(["b".into(), "hlc".into()]));
    assert_eq!(circles(&graph), vec![vec!["a", "b", "c"]]);
    let mut broken = graph.clone();
    broken.insert("c".into(), BTreeSet::new());
    assert!(circles(&broken).is_empty());
}
