//! Shared test helpers.
//!
//! - [`berth`] runs the built `berth` binary.
//! - [`fixture`] names a file under `tests/fixtures`.
//! - [`moto::Moto`] starts a private moto server on loopback for one test.

// Each test module uses a different subset of these helpers.
#![allow(dead_code)]

pub mod adapter;
pub mod cloud;
pub mod moto;
pub mod proxy;
pub mod rewrites;
pub mod world;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Runs the `berth` binary built for these tests with `args`, and returns its output
/// (whatever the exit status).
pub fn berth<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run the berth binary")
}

/// `path` under `tests/fixtures`, e.g. `fixture("monorepo")` or `fixture("berth.yaml")`.
pub fn fixture(path: impl AsRef<std::path::Path>) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

/// Stdout of a successful command; panics with its stderr otherwise.
pub fn stdout_ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("stdout is not UTF-8")
}

/// A command-line tool of the test venv (`scripts/setup.sh` pins it): beside
/// `$BERTH_MOTO_SERVER` (the venv's `bin/`), else on PATH; `None` when neither has it.
pub fn venv_tool(name: &str) -> Option<PathBuf> {
    let beside = std::env::var_os("BERTH_MOTO_SERVER")
        .filter(|v| !v.is_empty())
        .and_then(|server| PathBuf::from(server).parent().map(|dir| dir.join(name)));
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    beside.into_iter().chain(on_path.map(|dir| dir.join(name))).find(|p| p.is_file())
}

/// `tool` (a [`venv_tool`]), or `None` after a skip notice; with `CI` set, a missing tool
/// fails the test instead.
pub fn venv_tool_or_skip(name: &str, test: &str) -> Option<PathBuf> {
    let found = venv_tool(name);
    if found.is_none() {
        let msg = format!("{name} is not installed (scripts/setup.sh installs it in the venv)");
        assert!(std::env::var_os("CI").is_none(), "{msg}, and CI is set");
        eprintln!("SKIPPED {test}: {msg}");
    }
    found
}
