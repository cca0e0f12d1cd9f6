//! The workspace's layout rules, checked on the sources: no import cycle between the
//! modules of the core, the cloud crates and the bootstrap (a resource file never
//! imports from the `lib.rs` that routes to it), and no provider routes a kind it
//! does not own to an internal error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CHECKED: [&str; 6] = [
    "gitpod-refarch",
    "gitpod-refarch-aws",
    "gitpod-refarch-gcp",
    "gitpod-refarch-azure",
    "gitpod-refarch-bootstrap",
    "gitpod-refarch-selfmanaged",
];

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments and without its `#[cfg(test)]` tail.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module graph of one crate: top-level module -> top-level modules it names through
/// `crate::`. Anything `crate::` names that is not a module is defined in `lib.rs`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let module_of = |p: &Path| -> String {
        let rel = p.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let first = first.trim_end_matches(".rs").to_string();
        if first == "lib" || first == "main" {
            "lib".into()
        } else {
            first
        }
    };
    let names: BTreeSet<String> = files.iter().map(|p| module_of(p)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let from = module_of(f);
        let text = code(&std::fs::read_to_string(f).unwrap());
        let deps = graph.entry(from.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if ident.is_empty() {
                continue;
            }
            let to = if names.contains(&ident) {
                ident
            } else {
                "lib".to_string()
            };
            if to != from {
                deps.insert(to);
            }
        }
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        n: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, d, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(graph, n, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_module_imports_in_a_cycle() {
    let mut cycles = Vec::new();
    for krate in CHECKED {
        let g = module_graph(&crates_dir().join(krate).join("src"));
        assert!(g.len() > 1, "{krate}: no modules found");
        if let Some(c) = find_cycle(&g) {
            cycles.push(format!("{krate}: {}", c.join(" -> ")));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let g: BTreeMap<String, BTreeSet<String>> =
        [("lib", vec!["a"]), ("a", vec!["b"]), ("b", vec!["lib"])]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
            .collect();
    assert_eq!(
        find_cycle(&g).unwrap(),
        vec!["a", "b", "lib", "a"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    );
}

#[test]
fn no_provider_turns_a_kind_it_does_not_own_into_an_internal_error() {
    // The typed traits make such arms unnecessary; the old routers had one per verb
    // (an unknown operation id or Kubernetes kind is another matter, and allowed).
    let mut found = Vec::new();
    for krate in CHECKED {
        let mut files = Vec::new();
        rust_files(&crates_dir().join(krate).join("src"), &mut files);
        for f in files {
            let text = code(&std::fs::read_to_string(&f).unwrap());
            for needle in [
                // The old routers' arms: "the AWS provider does not know {id}",
                // "cannot observe {id} without its desired state".
                "provider does not know",
                "without its desired state",
                "observe_any",
                "ensure_any",
                "forward_provider_traits",
                "impl_provider!",
            ] {
                if text.contains(needle) {
                    found.push(format!("{}: {needle}", f.display()));
                }
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}
