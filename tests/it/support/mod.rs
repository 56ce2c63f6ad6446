//! Shared test helpers.
//!
//! - [`berth`] runs the built `berth` binary.
//! - [`fixture`] names a file under `tests/fixtures`.
//! - [`moto::Moto`] starts a private moto server on loopback for one test.

// Each test module uses a different subset of these helpers.
#![allow(dead_code)]

pub mod cloud;
pub mod moto;
pub mod proxy;
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
