//! The import direction of docs/architecture.md, checked: every room (a top-level module
//! of `src/`) imports only the rooms below it in [`LAYERS`], so the rooms form no cycle.
//! Read from the source text, as `grep -rn 'crate::ROOM' src/OTHER` would: a `use` line,
//! a path in code or a path in a type all count; comments (`//`, `///`, `//!`) do not,
//! since a doc link is not a dependency.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The rooms from the bottom up: each may import those before it, never those after.
/// A new room gets its place here (the test fails until it has one).
const LAYERS: &[&str] = &[
    // Leaves: values and rules every room may use.
    "duration",
    "exit",
    "config_error",
    "flavour",
    // What the tool reads and how it reaches nodes.
    "dns",
    "inventory",
    "secrets",
    "playbook",
    "ssh",
    // What a Carbonio node is: its commands and the parsers of their output.
    "carbonio",
    // The report model and its file formats.
    "report",
    // Gather, verdicts, plan, apply.
    "engine",
    // How things look on a terminal: fed by the engine's events and the report.
    "ui",
    // The command line: the only room that talks to people.
    "cli",
];

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The room a file belongs to: `src/engine/apply/gate.rs` → `engine`, `src/exit.rs` →
/// `exit`; `None` for the crate roots (`lib.rs` declares the rooms, `main.rs` calls `cli`).
fn room_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(stem) => Some(stem.to_string()),
        None => Some(first),
    }
}

/// The rooms `text` names as `crate::ROOM`, each with the first line that does, skipping
/// comments.
fn rooms_named(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let preceded_by_ident = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !preceded_by_ident && !name.is_empty() {
                out.entry(name).or_insert(i + 1);
            }
            rest = after;
        }
    }
    out
}

/// Every import of one room by another: (from, to) → the first `file:line` that shows it.
fn room_imports(src: &Path) -> BTreeMap<(String, String), String> {
    let mut edges = BTreeMap::new();
    for file in rust_files(src) {
        let Some(from) = room_of(src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (to, line) in rooms_named(&text) {
            if to != from {
                let at = format!("{}:{line}", file.strip_prefix(src).unwrap().display());
                edges.entry((from.clone(), to)).or_insert(at);
            }
        }
    }
    edges
}

fn tool_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_room_imports_only_the_rooms_below_it() {
    let rank = |room: &str| LAYERS.iter().position(|r| *r == room);
    let mut wrong = Vec::new();
    for ((from, to), at) in room_imports(&tool_src()) {
        match (rank(&from), rank(&to)) {
            (Some(f), Some(t)) if t < f => {}
            (Some(_), Some(_)) => wrong.push(format!("{from} → {to} (src/{at})")),
            // An unknown room is reported by the test below.
            _ => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the direction of docs/architecture.md (a room may only import \
         the rooms listed before it in LAYERS):\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn every_room_has_its_place_in_the_layers() {
    let src = tool_src();
    let rooms: BTreeSet<String> = rust_files(&src)
        .iter()
        .filter_map(|f| room_of(&src, f))
        .collect();
    let placed: BTreeSet<String> = LAYERS.iter().map(|r| r.to_string()).collect();
    let unplaced: Vec<_> = rooms.difference(&placed).collect();
    let gone: Vec<_> = placed.difference(&rooms).collect();
    assert!(
        unplaced.is_empty() && gone.is_empty(),
        "LAYERS and src/ disagree: rooms without a place {unplaced:?}, places without a room {gone:?}"
    );
}

#[test]
fn the_scanner_sees_paths_in_code_and_skips_comments() {
    let text = "use crate::report::model::Report;\n\
                /// see [`crate::ui::term`]\n\
                let x = crate::engine::run::operator(); // crate::cli\n\
                let y = my_crate::dns::x;\n";
    let named: Vec<_> = rooms_named(text).into_iter().collect();
    assert_eq!(
        named,
        vec![("engine".to_string(), 3), ("report".to_string(), 1)]
    );
}

/// The check would also catch a room that moved up: a lower room importing a higher one
/// is reported with the file and line that does it.
#[test]
fn a_back_edge_is_reported_with_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir(src.join("report")).unwrap();
    std::fs::write(
        src.join("report/summary.rs"),
        "\n\nuse crate::ui::term::Layout;\n",
    )
    .unwrap();
    std::fs::write(src.join("ui.rs"), "use crate::report::model::Report;\n").unwrap();
    let edges = room_imports(src);
    assert_eq!(
        edges.get(&("report".to_string(), "ui".to_string())),
        Some(&"report/summary.rs:3".to_string())
    );
    assert_eq!(
        edges.get(&("ui".to_string(), "report".to_string())),
        Some(&"ui.rs:1".to_string())
    );
}
