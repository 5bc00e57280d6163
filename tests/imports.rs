//! The import graph of a crate's own code, for the tidy rules: which file names which, read from
//! its `crate::` and `super::` paths and the crate root's re-exports, comments and tests left out.
//!
//! A file is named by its module path: `src/a.rs` and `src/a/mod.rs` are `a`, `src/a/b.rs` is
//! `a::b`, the crate root is `""`. A folder whose `mod.rs` says `pub use x::*;` has `x` as its
//! door: a path through the folder to a name that is not one of its modules goes to the door.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Module path → module paths it imports (itself and the crate root left out).
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// A file's module path under `src`.
pub fn module_path(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    match last.as_str() {
        "mod.rs" | "lib.rs" | "main.rs" => {}
        _ => parts.push(last.trim_end_matches(".rs").to_string()),
    }
    parts.join("::")
}

/// The code of a file: what `without_tests` kept, comments cut, on one line.
pub fn code_of(lines: &[String]) -> String {
    let code: Vec<&str> = lines
        .iter()
        .map(|l| l.find("//").map_or(l.as_str(), |i| &l[..i]))
        .collect();
    code.join(" ")
}

/// The paths of one use tree starting at `s` (after `crate::`), each prefixed with `base`;
/// returns how many bytes it read.
fn use_tree(s: &str, base: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let b = s.as_bytes();
    let skip = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let (mut path, mut i) = (base, 0);
    loop {
        i = skip(i);
        if b.get(i) == Some(&b'{') {
            i += 1;
            loop {
                i = skip(i);
                if i >= b.len() || b[i] == b'}' {
                    return i + 1;
                }
                i += use_tree(&s[i..], path.clone(), out);
                i = skip(i);
                match b.get(i) {
                    Some(b',') => i += 1,
                    _ => return skip(i) + usize::from(b.get(skip(i)) == Some(&b'}')),
                }
            }
        }
        let len = s[i..]
            .bytes()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
            .count();
        let ident = &s[i..i + len];
        i += len;
        if !ident.is_empty() && ident != "self" {
            path.push(ident.to_string());
        }
        if ident.is_empty() || ident == "self" || !s[skip(i)..].starts_with("::") {
            out.push(path);
            return i;
        }
        i = skip(i) + 2;
    }
}

/// Every path a file's code names from the crate root: `crate::a::B`, `super::c` (relative to
/// the file's module `at`).
pub fn paths_of(code: &str, at: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let parent: Vec<String> = match at.rsplit_once("::") {
        Some((p, _)) => p.split("::").map(str::to_string).collect(),
        None => Vec::new(),
    };
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut from = 0;
        while let Some(k) = code[from..].find(prefix) {
            let start = from + k;
            from = start + prefix.len();
            let before = code[..start].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            use_tree(&code[from..], base.clone(), &mut out);
        }
    }
    out
}

/// How names resolve in one crate: its modules, their doors and the root's re-exports.
struct Names {
    modules: BTreeSet<String>,
    doors: HashMap<String, String>,
    exports: HashMap<String, String>,
}

impl Names {
    fn new(files: &BTreeMap<String, String>) -> Names {
        let modules: BTreeSet<String> = files.keys().cloned().collect();
        let mut doors = HashMap::new();
        for (m, text) in files {
            for part in text.split("pub use ").skip(1) {
                let Some(door) = part.split(';').next().and_then(|p| p.strip_suffix("::*")) else {
                    continue;
                };
                let inner = if m.is_empty() {
                    door.trim().to_string()
                } else {
                    format!("{m}::{}", door.trim())
                };
                if modules.contains(&inner) {
                    doors.insert(m.clone(), inner);
                }
            }
        }
        let mut names = Names {
            modules,
            doors,
            exports: HashMap::new(),
        };
        let root = files.get("").map(String::as_str).unwrap_or_default();
        let mut paths = Vec::new();
        for part in root.split("pub use ").skip(1) {
            use_tree(
                part.split(';').next().unwrap_or_default(),
                Vec::new(),
                &mut paths,
            );
        }
        for p in paths {
            if let (Some(name), Some(m)) = (p.last(), names.module_of(&p)) {
                names.exports.insert(name.clone(), m);
            }
        }
        names
    }

    /// The module a path from the crate root lands in: its longest module prefix, or that
    /// module's door when the path goes on to a name that is not a module.
    fn module_of(&self, path: &[String]) -> Option<String> {
        let mut found = None;
        for n in 1..=path.len() {
            let m = path[..n].join("::");
            if self.modules.contains(&m) {
                found = Some(m);
            }
        }
        let Some(m) = found else {
            return path
                .first()
                .and_then(|first| self.exports.get(first).cloned());
        };
        Some(self.doors.get(&m).cloned().unwrap_or(m))
    }
}

/// The graph of a crate given as module path → code (comments and tests already left out).
pub fn graph(files: &BTreeMap<String, String>) -> Graph {
    let names = Names::new(files);
    let mut out = Graph::new();
    for (m, code) in files.iter().filter(|(m, _)| !m.is_empty()) {
        let entry = out.entry(m.clone()).or_default();
        for p in paths_of(code, m) {
            if let Some(t) = names.module_of(&p) {
                if t != *m && !t.is_empty() {
                    entry.insert(t);
                }
            }
        }
    }
    out
}

/// Every circle of the graph: its strongly connected parts of two modules or more (Tarjan).
pub fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
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

/// The room table: room → the rooms it may import, read from a markdown table whose rows are
/// `` | `room` | `a`, `b` | `` (or `nothing`).
pub fn room_table(markdown: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for line in markdown.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let [room, allowed] = cells[..] else {
            continue;
        };
        let Some(room) = room.strip_prefix('`').and_then(|r| r.strip_suffix('`')) else {
            continue;
        };
        let allowed = allowed
            .split(',')
            .filter_map(|a| a.trim().strip_prefix('`')?.strip_suffix('`'))
            .map(str::to_string)
            .collect();
        out.insert(room.to_string(), allowed);
    }
    out
}

/// The imports that cross into a room the table does not allow, and the rooms it lacks.
pub fn forbidden(graph: &Graph, table: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let room = |m: &str| m.split("::").next().unwrap_or_default().to_string();
    let mut out = Vec::new();
    for (m, uses) in graph {
        let Some(allowed) = table.get(&room(m)) else {
            out.push(format!("{m}: room `{}` has no row in the table", room(m)));
            continue;
        };
        for u in uses {
            if room(u) != room(m) && !allowed.contains(&room(u)) {
                out.push(format!("{m} imports {u}"));
            }
        }
    }
    out
}
