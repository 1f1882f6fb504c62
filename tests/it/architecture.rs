//! The module graph has no import circles: among the top-level modules of the crate, and among
//! the modules inside any one folder, the `use` edges form no cycle. A child using its parent's
//! items (`super::`) and a parent using its children are not edges: they are one module's
//! inside. Read from the source, so a new circle fails here before review has to find it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// Every module of the library, by path from the crate root, with its source. Unit-test modules
/// (`mod tests { .. }` at a file's end, or a `tests.rs`) are left out: test code may reach
/// anywhere.
fn modules() -> BTreeMap<Module, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<Module, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "bin" {
                    walk(&path, &[prefix, &[name]].concat(), out);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || name == "tests" || name == "main" {
                continue;
            }
            let module = if name == "mod" || name == "lib" { prefix.to_vec() } else { [prefix, &[name]].concat() };
            let text = std::fs::read_to_string(&path).unwrap();
            let code = match text.find("#[cfg(test)]\nmod tests {") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            let code: String =
                code.lines().filter(|l| !l.trim_start().starts_with("//")).map(|l| format!("{l}\n")).collect();
            out.insert(module, code);
        }
    }
    let mut out = BTreeMap::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut out);
    out
}

/// Expands one `use` tree (`a::{b, c::d as e}`) into its paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or_default();
        return vec![path.split("::").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()];
    };
    let head: Vec<String> = tree[..open].split("::").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand)
        .map(|tail| [head.clone(), tail].concat())
        .collect()
}

/// The paths a module names through `crate::` or `super::`, made absolute.
fn references(module: &Module, code: &str) -> Vec<Module> {
    let mut paths = Vec::new();
    for line in code.match_indices('\n').map(|(i, _)| &code[i + 1..]).chain([code]) {
        let stmt = line.trim_start();
        let Some(tree) =
            ["use ", "pub use ", "pub(crate) use ", "pub(super) use "].iter().find_map(|p| stmt.strip_prefix(p))
        else {
            continue;
        };
        paths.extend(expand(&tree[..tree.find(';').unwrap_or(tree.len())]));
    }
    // Paths written inline, outside `use` lines.
    for (at, _) in code.match_indices("crate::").chain(code.match_indices("super::")) {
        if code[..at].ends_with("::") || code[..at].ends_with("super::") {
            continue;
        }
        let mut path = Vec::new();
        for piece in code[at..].split("::") {
            let ident: String = piece.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            let whole = ident.len() == piece.len();
            if !ident.is_empty() {
                path.push(ident);
            }
            if !whole || path.is_empty() {
                break;
            }
        }
        paths.push(path);
    }
    paths
        .into_iter()
        .filter_map(|p| {
            let mut base: Module = match p.first().map(String::as_str) {
                Some("crate") => Vec::new(),
                Some("super") => module.clone(),
                _ => return None,
            };
            let mut segments = p.into_iter().peekable();
            if segments.peek().is_some_and(|s| s == "crate") {
                segments.next();
            }
            while segments.peek().is_some_and(|s| s == "super") {
                segments.next();
                base.pop();
            }
            let path = [base, segments.collect()].concat();
            (!path.is_empty()).then_some(path)
        })
        .collect()
}

/// Finds a cycle in `edges`, as the list of nodes around it.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == n) {
            return Some([&stack[at..], &[n.to_owned()]].concat());
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_owned());
        for next in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, edges, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|n| visit(n, edges, &mut done, &mut Vec::new()))
}

#[test]
fn no_import_circles_between_modules() {
    let modules = modules();
    assert!(modules.len() > 40, "the source walk found too few modules: {}", modules.len());
    // Per parent module, the edges between its children, each with one `use` that makes it.
    let mut graphs: BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut why: BTreeMap<(Module, String, String), String> = BTreeMap::new();
    for (from, code) in &modules {
        for path in references(from, code) {
            // The longest prefix of the path that is a module is what it reaches.
            let Some(to) = (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| modules.contains_key(m)) else {
                continue;
            };
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue;
            }
            let (a, b) = (from[common].clone(), to[common].clone());
            let parent = from[..common].to_vec();
            why.entry((parent.clone(), a.clone(), b.clone()))
                .or_insert_with(|| format!("{} uses {}", from.join("::"), path.join("::")));
            graphs.entry(parent).or_default().entry(a).or_default().insert(b);
        }
    }
    let edges: usize = graphs.values().flat_map(|g| g.values()).map(BTreeSet::len).sum();
    assert!(edges > 40, "too few edges were read to trust the check: {edges}");
    let mut circles = Vec::new();
    for (parent, graph) in &mut graphs {
        // Each circle found is reported and broken at its first edge, so every one is listed.
        while let Some(c) = cycle(graph) {
            graph.get_mut(&c[0]).map(|next| next.remove(&c[1]));
            let steps: Vec<_> =
                c.windows(2).map(|w| why[&(parent.clone(), w[0].clone(), w[1].clone())].clone()).collect();
            circles.push(format!(
                "in `crate::{}`: {}\n    {}",
                parent.join("::"),
                c.join(" -> "),
                steps.join("\n    ")
            ));
        }
    }
    assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
}

#[test]
fn the_circle_check_sees_a_circle() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    assert_eq!(cycle(&graph), None);
    graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(cycle(&graph).map(|c| c.join(" -> ")), Some("a -> b -> c -> a".to_owned()));
    let module = vec!["proxy".to_owned(), "metered".to_owned()];
    let refs = references(&module, "use super::client::Body;\nuse crate::{audit::{Slot, x}, policy};\n");
    let refs: BTreeSet<String> = refs.iter().map(|p| p.join("::")).collect();
    let want = ["proxy::client::Body", "audit::Slot", "audit::x", "policy"];
    assert_eq!(refs, want.into_iter().map(str::to_owned).collect());
}
