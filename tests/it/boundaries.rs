//! The crate's boundaries, checked on its source: the pure core does no I/O and keeps no
//! hidden state, and the crate map in `src/lib.rs` names every module.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Code lines (comments left out) of the files under `src/<dir>`.
fn code_lines(dir: &str) -> Vec<(String, usize, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().to_string_lossy().into_owned();
        for (i, line) in std::fs::read_to_string(&f).unwrap().lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !code.trim().is_empty() {
                out.push((rel.clone(), i + 1, code.to_string()));
            }
        }
    }
    out
}

#[test]
fn the_core_does_no_io_and_uses_no_runtime() {
    let forbidden = [
        "tokio",
        "std::fs",
        "std::net",
        "std::process",
        "aws_sdk",
        "aws_smithy",
        "aws_config",
        "git2",
        "hyper",
        "axum",
    ];
    let offenders: Vec<String> = code_lines("core")
        .into_iter()
        .filter(|(_, _, code)| forbidden.iter().any(|f| code.contains(f)))
        .map(|(file, line, code)| format!("{file}:{line}: {}", code.trim()))
        .collect();
    assert!(offenders.is_empty(), "src/core must stay pure:\n{}", offenders.join("\n"));
}

/// No hidden state in the core: no thread-locals and no mutable statics. (The YAML position
/// tracker once handed the file name to each `At<T>` through a thread-local; the parser now
/// stamps it in after the parse.)
#[test]
fn the_core_keeps_no_thread_local_or_global_mutable_state() {
    let mutable = ["Mutex", "RwLock", "RefCell", "Cell<", "Atomic", "OnceCell", "static mut"];
    let offenders: Vec<String> = code_lines("core")
        .into_iter()
        .filter(|(_, _, code)| {
            code.contains("thread_local") || (code.contains("static ") && mutable.iter().any(|m| code.contains(m)))
        })
        .map(|(file, line, _)| format!("{file}:{line}"))
        .collect();
    assert!(offenders.is_empty(), "{offenders:?}");
}

#[test]
fn the_crate_map_names_every_module() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let (docs, code): (Vec<&str>, Vec<&str>) = lib.lines().partition(|l| l.starts_with("//!"));
    let docs = docs.join("\n");
    let modules: Vec<&str> =
        code.iter().filter_map(|l| l.strip_prefix("pub mod ")).map(|m| m.trim_end_matches(';')).collect();
    assert!(!modules.is_empty());
    for m in modules {
        assert!(docs.contains(&format!("[`{m}`]")), "src/lib.rs's map does not name `{m}`");
    }
}
