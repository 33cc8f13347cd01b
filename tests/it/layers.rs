//! The dependency rule of ARCHITECTURE.md, checked on the source: modules of `src/` form no
//! import cycle (top-level modules nor the submodules within them), and lower layers never
//! import the layers above them.
//!
//! The check reads every file of the `parley` crate, resolves each `crate::...` and
//! `super::...` path to the module it names, and builds the module graph. A parent module's
//! `mod`/`pub use` of its own children is not counted as a dependency (a re-export is not a
//! use), and test code (`#[cfg(test)]` to the end of a file) is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path of a file: `src/actors/conversation/commit.rs` -> `actors::conversation::commit`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            if p.file_name().unwrap() != "protocol" {
                files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") && p.file_name().unwrap() != "main.rs" {
            out.push(p);
        }
    }
}

/// Every `crate::a::b` / `super::a` path in `code`, resolved against `me`, as written.
fn paths(code: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let rest: String = code[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let segs: Vec<&str> = rest.split("::").filter(|s| !s.is_empty()).collect();
            let mut base: Vec<String> = if segs[0] == "crate" {
                Vec::new()
            } else {
                // `super` is the parent module (of a mod.rs too: its module is the directory).
                let mut b = me.to_vec();
                b.pop();
                b
            };
            for s in &segs[1..] {
                if *s == "super" {
                    base.pop();
                } else {
                    base.push(s.to_string());
                }
            }
            out.push(base);
        }
    }
    out
}

fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let modules: BTreeSet<Vec<String>> = all
        .iter()
        .map(|p| module_of(p.strip_prefix(&src).unwrap()))
        .collect();
    let mut g: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for p in &all {
        let rel = p.strip_prefix(&src).unwrap();
        let me = module_of(rel);
        let text = std::fs::read_to_string(p).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        // Comments name modules without depending on them.
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        if me.is_empty() {
            continue; // lib.rs declares the modules
        }
        for path in paths(&code, &me) {
            // The longest prefix that is a module of the crate.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|m| modules.contains(m));
            let Some(target) = target else { continue };
            // A parent naming its own children (declarations, re-exports) is no use of them;
            // a child using an ancestor's (re-exported) items is an edge to the ancestor.
            if target != me && !target.starts_with(&me) {
                g.entry(me.clone()).or_default().insert(target);
            }
        }
        g.entry(me).or_default();
    }
    g
}

/// A cycle in `g`, if any, as the list of modules on it.
fn cycle(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        n: &Vec<String>,
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let i = stack.iter().position(|m| m == n).unwrap();
                return Some(stack[i..].iter().map(|m| m.join("::")).collect());
            }
            _ => {}
        }
        state.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn m(s: &str) -> Vec<String> {
    s.split("::").map(String::from).collect()
}

#[test]
fn the_checker_sees_imports_and_finds_cycles() {
    let g = graph();
    // Edges the code is known to have, by `crate::` and by `super::` paths.
    for (from, to) in [
        ("cluster", "actors::routing"),
        ("actors::session::inbound", "actors::routing"),
        ("actors::conversation::commit", "actors::conversation"),
        ("storage::sqlite::messages", "storage"),
    ] {
        assert!(g[&m(from)].contains(&m(to)), "{from} -> {to} not seen");
    }
    let mut with_cycle = g.clone();
    with_cycle
        .entry(m("actors::hub"))
        .or_default()
        .insert(m("actors::session::inbound"));
    assert!(
        cycle(&with_cycle).is_some(),
        "a cycle through hub must be found"
    );
}

#[test]
fn no_module_imports_in_a_cycle() {
    let g = graph();
    assert!(g.len() > 40, "found only {} modules", g.len());
    // Submodules, each file its own module (an ancestor's re-exports count as the ancestor).
    if let Some(c) = cycle(&g) {
        panic!("import cycle: {}", c.join(" -> "));
    }
    // Top-level modules.
    let mut top: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (from, tos) in &g {
        let f = vec![from[0].clone()];
        let e = top.entry(f.clone()).or_default();
        for t in tos {
            if t[0] != f[0] {
                e.insert(vec![t[0].clone()]);
            }
        }
    }
    if let Some(c) = cycle(&top) {
        panic!("import cycle between top-level modules: {}", c.join(" -> "));
    }
}

#[test]
fn lower_layers_never_import_upper_ones() {
    let g = graph();
    let upper = |m: &str| -> &'static [&'static str] {
        match m {
            "ids" | "blobs" | "media" | "error" | "domain" | "storage" | "bus" | "push"
            | "config" | "metrics" | "auth" => &["actors", "cluster", "gateway", "server"],
            "actors" => &["cluster", "gateway", "server"],
            "cluster" | "gateway" => &["server"],
            _ => &[],
        }
    };
    let mut wrong = Vec::new();
    for (from, tos) in &g {
        for t in tos {
            if upper(&from[0]).contains(&t[0].as_str()) {
                wrong.push(format!("{} -> {}", from.join("::"), t.join("::")));
            }
        }
    }
    assert!(wrong.is_empty(), "upward imports: {wrong:#?}");
}
