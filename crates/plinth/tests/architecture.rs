//! The architecture rules of `ARCHITECTURE.md`, checked against the code,
//! in the manner of rust-analyzer's tidy tests: each module's `crate::`
//! references are read from its source, and the dependency graph between
//! the top-level modules must follow the pipeline.
//!
//! Run alone with `cargo test -p plinth --test architecture`. A failure
//! names the file, the import and the rule it breaks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The formats every stage shares. They never call a stage: they may use
/// each other (in this order of dependence) and the read-only definitions.
const FORMATS: &[&str] = &[
    "support", "tarfs", "debian", "layer", "rootfs", "oci", "sbom", "sign",
];

/// What each top-level module may import besides itself; anything else is
/// a broken rule. The order is the pipeline's: a module lists only modules
/// above it.
const ALLOWED: &[(&str, &[&str])] = &[
    ("support", &[]),
    ("definitions", &["support"]),
    ("tarfs", &["support"]),
    ("debian", &["support", "definitions", "tarfs"]),
    ("layer", &["support", "tarfs"]),
    ("rootfs", &["support", "tarfs", "debian", "definitions"]),
    ("oci", &["support"]),
    ("sbom", &["support", "debian"]),
    ("sign", &["support", "oci"]),
    ("lockfile", &["support", "definitions", "debian"]),
    ("project", &["definitions", "lockfile"]),
    ("net", &["support", "definitions", "project"]),
    ("download", &["support", "definitions", "debian", "net"]),
    (
        "lock",
        &[
            "support",
            "definitions",
            "debian",
            "download",
            "lockfile",
            "project",
            "net",
        ],
    ),
    (
        "apps",
        &[
            "support",
            "definitions",
            "debian",
            "tarfs",
            "rootfs",
            "sbom",
            "layer",
        ],
    ),
    ("registry", &["support", "net", "oci"]),
    (
        "error",
        &[
            "definitions",
            "download",
            "lockfile",
            "lock",
            "apps",
            "registry",
            "net",
            "sign",
            "provenance",
        ],
    ),
    ("digests", &["support", "error"]),
    (
        "provenance",
        &[
            "support",
            "definitions",
            "debian",
            "lockfile",
            "project",
            "apps",
            "sign",
        ],
    ),
    (
        "build",
        &[
            "support",
            "definitions",
            "tarfs",
            "debian",
            "layer",
            "rootfs",
            "oci",
            "sbom",
            "lockfile",
            "project",
            "download",
            "net",
            "apps",
            "error",
            "digests",
        ],
    ),
    (
        "diff",
        &[
            "support",
            "definitions",
            "tarfs",
            "debian",
            "layer",
            "oci",
            "registry",
            "project",
            "error",
        ],
    ),
    (
        "verify",
        &[
            "support", "tarfs", "layer", "oci", "project", "download", "error", "digests", "build",
            "diff",
        ],
    ),
    (
        "publish",
        &[
            "support",
            "oci",
            "project",
            "registry",
            "error",
            "digests",
            "sign",
            "provenance",
        ],
    ),
    (
        "published",
        &[
            "support",
            "oci",
            "project",
            "registry",
            "error",
            "digests",
            "sign",
            "provenance",
        ],
    ),
    (
        "changes",
        &[
            "support",
            "definitions",
            "tarfs",
            "debian",
            "lockfile",
            "project",
            "download",
            "apps",
            "error",
            "build",
            "diff",
        ],
    ),
];

/// The named rules of `ARCHITECTURE.md`'s "must never" column, checked on
/// top of the table so that a table edit cannot quietly drop one.
const NEVER: &[(&[&str], &[&str], &str)] = &[
    (
        FORMATS,
        &[
            "lock",
            "lockfile",
            "download",
            "net",
            "build",
            "verify",
            "publish",
            "registry",
            "apps",
            "digests",
            "error",
            "project",
            "provenance",
            "published",
            "diff",
            "changes",
        ],
        "a format module never imports a stage",
    ),
    (
        &["build", "verify", "publish", "published", "diff", "changes"],
        &["lock"],
        "nothing after the lock reads archive indices or resolves",
    ),
    (
        &["registry", "apps"],
        &["build"],
        "the registry client and application discovery do not depend on the build",
    ),
];

/// Longest a non-test source file may be.
const MAX_LINES: usize = 900;

#[test]
fn imports_follow_the_pipeline() {
    let modules = read_crate(&src_dir());
    let problems = check(&modules);
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_module_says_what_it_owns() {
    let mut missing = Vec::new();
    for file in rust_files(&src_dir()) {
        let text = std::fs::read_to_string(&file).unwrap();
        if !text.trim_start().starts_with("//!") {
            missing.push(shown(&file));
        }
    }
    assert!(
        missing.is_empty(),
        "modules without a `//!` doc saying what they own:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_source_file_does_several_jobs() {
    let mut long = Vec::new();
    for file in rust_files(&src_dir()) {
        if is_test_file(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let lines = without_tests(&text).lines().count();
        if lines > MAX_LINES {
            long.push(format!("{}: {lines} lines", shown(&file)));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them along their sections):\n{}",
        long.join("\n")
    );
}

/// Docker Hub's names are the one registry host the code knows, kept in
/// one module with the reason (every other host comes from the user or the
/// server).
#[test]
fn registry_hosts_are_named_in_one_module() {
    let allowed = src_dir().join("registry").join("dockerhub.rs");
    let mut found = Vec::new();
    for file in rust_files(&src_dir()) {
        let text = std::fs::read_to_string(&file).unwrap().to_ascii_lowercase();
        if file != allowed && text.contains("docker.io") {
            found.push(shown(&file));
        }
    }
    assert!(
        found.is_empty(),
        "registry host names outside src/registry/dockerhub.rs:\n{}",
        found.join("\n")
    );
}

/// The checker must catch what it is for: a format module importing a
/// stage, a late stage importing the lock, and a circle.
#[test]
fn the_checker_catches_wrong_imports() {
    let mut modules = read_crate(&src_dir());
    let imports = |file: &str, targets: &[&str]| Module {
        file: PathBuf::from(file),
        imports: targets.iter().map(|t| t.to_string()).collect(),
    };
    modules.push(imports("src/oci/fake.rs", &["build"]));
    modules.push(imports("src/publish/fake.rs", &["lock"]));
    modules.push(imports("src/support/fake.rs", &["definitions"]));
    let problems = check(&modules).join("\n");
    for expected in [
        "src/oci/fake.rs imports `build`: a format module never imports a stage",
        "src/publish/fake.rs imports `lock`: nothing after the lock reads archive indices",
        "src/support/fake.rs imports `definitions`",
        "circle",
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} not in:\n{problems}"
        );
    }
}

/// One source file and the top-level modules it refers to.
struct Module {
    file: PathBuf,
    imports: BTreeSet<String>,
}

impl Module {
    /// The top-level module the file belongs to (`lib` for `lib.rs`).
    fn top(&self) -> String {
        let rel = self
            .file
            .strip_prefix(src_dir())
            .or_else(|_| self.file.strip_prefix("src"))
            .unwrap_or(&self.file);
        let first = rel.components().next().unwrap();
        let name = first.as_os_str().to_string_lossy();
        name.trim_end_matches(".rs").to_owned()
    }
}

/// A file's path relative to the crate, for messages.
fn shown(file: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    file.strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string()
}

fn check(modules: &[Module]) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in modules {
        let top = m.top();
        if top == "lib" {
            continue;
        }
        let Some(may) = allowed.get(top.as_str()) else {
            problems.push(format!(
                "{}: module `{top}` is not in the architecture table of tests/architecture.rs",
                shown(&m.file)
            ));
            continue;
        };
        for import in &m.imports {
            if *import == top {
                continue;
            }
            graph.entry(top.clone()).or_default().insert(import.clone());
            let rule = NEVER.iter().find(|(from, to, _)| {
                from.contains(&top.as_str()) && to.contains(&import.as_str())
            });
            if let Some((_, _, why)) = rule {
                problems.push(format!("{} imports `{import}`: {why}", shown(&m.file)));
            } else if !may.contains(&import.as_str()) {
                problems.push(format!(
                    "{} imports `{import}`, which `{top}` may not use (it may use: {})",
                    shown(&m.file),
                    may.join(", ")
                ));
            }
        }
    }
    if let Some(circle) = find_circle(&graph) {
        problems.push(format!("import circle: {}", circle.join(" → ")));
    }
    problems
}

/// A path through the module graph that comes back to where it started.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut circle = path[start..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Test modules kept in files of their own (`tests.rs`).
fn is_test_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "tests.rs")
}

fn read_crate(dir: &Path) -> Vec<Module> {
    rust_files(dir)
        .into_iter()
        .filter(|f| !is_test_file(f))
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let imports = crate_references(without_tests(&text));
            Module { file, imports }
        })
        .collect()
}

/// The text before an inline `#[cfg(test)] mod tests { ... }`, which by
/// this crate's convention is the last item of a file.
fn without_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// The first path segment of every `crate::` reference in code (comments,
/// where doc links live, are skipped), including the members of a
/// `use crate::{a::b, c::{d, e}}` group over several lines.
fn crate_references(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => out.extend(group_members(group).iter().filter_map(|m| first_segment(m))),
            None => out.extend(first_segment(rest)),
        }
    }
    out
}

/// The top-level members of a `{...}` group (the text after its `{`).
fn group_members(group: &str) -> Vec<&str> {
    let mut members = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                members.push(group[start..i].trim());
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                members.push(group[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    members
}

fn first_segment(path: &str) -> Option<String> {
    let name: String = path
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && name != "self").then_some(name)
}
