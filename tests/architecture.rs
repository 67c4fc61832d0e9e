//! The import direction of docs/architecture.md, checked: every room (a top-level module
//! of `src/`) imports only the rooms below it in [`LAYERS`], so the rooms form no cycle.
//! Read from the source text, as `grep -rn 'crate::ROOM' src/OTHER` would, with
//! `super::` paths that climb to the crate root counted too: a `use` line, a path in
//! code or a path in a type all count; comments (`//`, `///`, `//!`) do not, since a doc
//! link is not a dependency.

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

/// The simulator crate's modules from the bottom up, a layer per line; modules of one
/// layer may import each other. `shell` and `programs` are one layer by design: the
/// interpreter runs programs, and `su -c`, `sh -c` and `bash -l` interpret scripts.
/// Test modules are not checked here (a test may build a whole fleet to try one program).
const SIM_LAYERS: &[&[&str]] = &[
    &["attrs", "duration", "error", "flavour", "restarts"],
    &["postfix"],
    &["node"],
    &["policyd", "zmconfigd", "realmta", "profiles"],
    &["smtp", "dns"],
    &["shell", "programs"],
    &["server"],
    &["fleet"],
    &["exec", "simulate"],
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

/// How many `super::` reach the crate root from a file: 1 from `src/x.rs` and
/// `src/x/mod.rs`, 2 from `src/x/y.rs`, and so on.
fn depth_of(src: &Path, file: &Path) -> usize {
    let rel = file.strip_prefix(src).unwrap();
    let parts = rel.components().count();
    match rel.file_name().and_then(|n| n.to_str()) {
        Some("mod.rs") => parts - 1,
        _ => parts,
    }
}

/// The rooms `text` names as `crate::ROOM` (or as `super::…::ROOM` from a file `depth`
/// modules below the root), each with the first line that does, skipping comments.
fn rooms_named(text: &str, depth: usize) -> BTreeMap<String, usize> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let code = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        for (at, _) in code
            .match_indices("crate::")
            .chain(code.match_indices("super::"))
        {
            let preceded_by_path = code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if preceded_by_path {
                continue;
            }
            let mut rest = &code[at..];
            let room = if let Some(after) = rest.strip_prefix("crate::") {
                ident(after)
            } else {
                let mut ups = 0;
                while let Some(after) = rest.strip_prefix("super::") {
                    ups += 1;
                    rest = after;
                }
                if ups < depth {
                    continue;
                }
                ident(rest)
            };
            if !room.is_empty() {
                out.entry(room).or_insert(i + 1);
            }
        }
    }
    out
}

/// Every import of one room by another: (from, to) → the first `file:line` that shows it.
/// With `code_only`, a file is read up to its `#[cfg(test)]` module (which this codebase
/// keeps at the end of each file).
fn room_imports(src: &Path, code_only: bool) -> BTreeMap<(String, String), String> {
    let mut edges = BTreeMap::new();
    for file in rust_files(src) {
        let Some(from) = room_of(src, &file) else {
            continue;
        };
        let mut text = std::fs::read_to_string(&file).unwrap();
        if code_only && let Some(at) = text.find("\n#[cfg(test)]") {
            text.truncate(at);
        }
        for (to, line) in rooms_named(&text, depth_of(src, &file)) {
            if to != from {
                let crate_root = src.parent().unwrap();
                let at = format!(
                    "{}:{line}",
                    file.strip_prefix(crate_root).unwrap().display()
                );
                edges.entry((from.clone(), to)).or_insert(at);
            }
        }
    }
    edges
}

fn tool_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn sim_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/carbonio-sim/src")
}

/// The imports in `src` against `layers` (a room may import its own layer's and lower
/// layers' rooms), each as `from → to (file:line)`.
fn against_the_layers(src: &Path, layers: &[&[&str]], code_only: bool) -> Vec<String> {
    let rank = |room: &str| layers.iter().position(|l| l.contains(&room));
    let mut wrong = Vec::new();
    for ((from, to), at) in room_imports(src, code_only) {
        match (rank(&from), rank(&to)) {
            (Some(f), Some(t)) if t <= f => {}
            (Some(_), Some(_)) => wrong.push(format!("{from} → {to} ({at})")),
            // An unknown room is reported by `unplaced`.
            _ => {}
        }
    }
    wrong
}

/// The rooms of `src` that `layers` does not place, and the places without a room.
fn unplaced(src: &Path, layers: &[&[&str]]) -> (Vec<String>, Vec<String>) {
    let rooms: BTreeSet<String> = rust_files(src)
        .iter()
        .filter_map(|f| room_of(src, f))
        .collect();
    let placed: BTreeSet<String> = layers
        .iter()
        .flat_map(|l| l.iter())
        .map(|r| r.to_string())
        .collect();
    (
        rooms.difference(&placed).cloned().collect(),
        placed.difference(&rooms).cloned().collect(),
    )
}

/// The tool's layers: one room each, so two rooms never import each other.
fn tool_layers() -> Vec<&'static [&'static str]> {
    LAYERS.iter().map(std::slice::from_ref).collect()
}

#[test]
fn every_room_imports_only_the_rooms_below_it() {
    // Test modules included: a test of a lower room may not reach up either.
    let wrong = against_the_layers(&tool_src(), &tool_layers(), false);
    assert!(
        wrong.is_empty(),
        "imports against the direction of docs/architecture.md (a room may only import \
         the rooms listed before it in LAYERS):\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn every_room_has_its_place_in_the_layers() {
    let (unplaced, gone) = unplaced(&tool_src(), &tool_layers());
    assert!(
        unplaced.is_empty() && gone.is_empty(),
        "LAYERS and src/ disagree: rooms without a place {unplaced:?}, places without a room {gone:?}"
    );
}

#[test]
fn simulator_modules_import_only_their_layer_and_below() {
    let wrong = against_the_layers(&sim_src(), SIM_LAYERS, true);
    assert!(
        wrong.is_empty(),
        "crates/carbonio-sim imports against SIM_LAYERS:\n  {}",
        wrong.join("\n  ")
    );
    let (unplaced, gone) = unplaced(&sim_src(), SIM_LAYERS);
    assert!(
        unplaced.is_empty() && gone.is_empty(),
        "SIM_LAYERS and crates/carbonio-sim/src disagree: without a place {unplaced:?}, \
         places without a module {gone:?}"
    );
}

#[test]
fn super_paths_that_reach_the_root_name_a_room() {
    // From src/ui/summary.rs (depth 2): `super::term` stays in ui, `super::super::report`
    // is the report room.
    let text = "use super::term::Layout;\nuse super::super::report::model::Report;\n";
    let named: Vec<_> = rooms_named(text, 2).into_iter().collect();
    assert_eq!(named, vec![("report".to_string(), 2)]);
    // From src/ui/mod.rs or src/ui.rs (depth 1) one `super` is the root.
    let named: Vec<_> = rooms_named("use super::engine::events::Event;\n", 1)
        .into_iter()
        .collect();
    assert_eq!(named, vec![("engine".to_string(), 1)]);
    let dir = Path::new("/r/src");
    assert_eq!(depth_of(dir, &dir.join("exit.rs")), 1);
    assert_eq!(depth_of(dir, &dir.join("ui/mod.rs")), 1);
    assert_eq!(depth_of(dir, &dir.join("ui/summary.rs")), 2);
    assert_eq!(depth_of(dir, &dir.join("engine/apply/mod.rs")), 2);
}

#[test]
fn the_scanner_sees_paths_in_code_and_skips_comments() {
    let text = "use crate::report::model::Report;\n\
                /// see [`crate::ui::term`]\n\
                let x = crate::engine::run::operator(); // crate::cli\n\
                let y = my_crate::dns::x;\n";
    let named: Vec<_> = rooms_named(text, 2).into_iter().collect();
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
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("report")).unwrap();
    std::fs::write(
        src.join("report/summary.rs"),
        "\n\nuse crate::ui::term::Layout;\n",
    )
    .unwrap();
    std::fs::write(src.join("ui.rs"), "use crate::report::model::Report;\n").unwrap();
    let layers: &[&[&str]] = &[&["report"], &["ui"]];
    assert_eq!(
        against_the_layers(&src, layers, false),
        vec!["report → ui (src/report/summary.rs:3)".to_string()]
    );
    // A test module's import counts unless only code is checked.
    std::fs::write(
        src.join("report/summary.rs"),
        "fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::ui::term::Layout;\n}\n",
    )
    .unwrap();
    assert_eq!(against_the_layers(&src, layers, true), Vec::<String>::new());
    assert_eq!(
        against_the_layers(&src, layers, false),
        vec!["report → ui (src/report/summary.rs:4)".to_string()]
    );
}
