//! `berth validate` against broken repositories.
//!
//! Every folder under `tests/fixtures/invalid/` is a small repository with one deliberate
//! problem (a few have several, to show that all are reported). Its `expected.txt` is
//! exactly the stdout of `berth validate --repo tests/fixtures/invalid/<case>`: one
//! `path:line:col: message` line per problem, paths relative to the case folder.
//!
//! To add a case, create its folder, then regenerate the expectations with
//!
//! ```text
//! BERTH_BLESS=1 cargo test --test it validate
//! ```
//!
//! which writes each case's actual output to its `expected.txt` instead of asserting.
//! Review the diff by hand: every line must point at the offending token and say what to do.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn invalid_dir() -> PathBuf {
    manifest_dir().join("tests/fixtures/invalid")
}

/// Runs `berth validate --repo <repo>` from `cwd`.
fn validate(cwd: &Path, repo: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("validate")
        .arg("--repo")
        .arg(repo)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run the berth binary")
}

fn cases() -> Vec<String> {
    let mut cases: Vec<String> = std::fs::read_dir(invalid_dir())
        .expect("tests/fixtures/invalid is missing")
        .map(|e| e.expect("cannot list tests/fixtures/invalid"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    cases
}

/// `path:line:col: message`, i.e. `^[^:]+:\d+:\d+: .+`.
fn is_diagnostic(line: &str) -> bool {
    let mut parts = line.splitn(4, ':');
    let (Some(path), Some(l), Some(c), Some(rest)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let number = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    !path.is_empty() && number(l) && number(c) && rest.len() > 1 && rest.starts_with(' ')
}

/// A line diff (longest common subsequence): `-` expected only, `+` actual only.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out += &format!("  {}\n", a[i]);
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("- {}\n", a[i]);
            i += 1;
        } else {
            out += &format!("+ {}\n", b[j]);
            j += 1;
        }
    }
    out
}

/// What is wrong with one case's run, if anything.
fn check_case(case: &str, out: &Output, expected: &str) -> Vec<String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut problems = Vec::new();
    if out.status.code() != Some(1) {
        problems.push(format!("exit status is {} (expected 1)", out.status));
    }
    if stdout != expected {
        problems.push(format!(
            "stdout differs from tests/fixtures/invalid/{case}/expected.txt (- expected, + actual):\n{}",
            diff(expected, &stdout)
        ));
    }
    if stdout.lines().count() == 0 {
        problems.push("no diagnostics on stdout".to_string());
    }
    for line in stdout.lines().filter(|l| !is_diagnostic(l)) {
        problems.push(format!("not a `path:line:col: message` line: {line:?}"));
    }
    if !problems.is_empty() {
        problems.push(format!("stderr:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    problems
}

#[test]
fn every_invalid_case_reports_its_problems() {
    let bless = std::env::var("BERTH_BLESS").is_ok_and(|v| v == "1");
    let cases = cases();
    assert!(cases.len() >= 20, "expected at least 20 cases, found {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let rel = Path::new("tests/fixtures/invalid").join(case);
        let out = validate(&manifest_dir(), &rel);
        let expected_path = invalid_dir().join(case).join("expected.txt");
        if bless {
            std::fs::write(&expected_path, &out.stdout).expect("cannot write expected.txt");
            eprintln!("blessed {}", expected_path.display());
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with BERTH_BLESS=1 to create it)", expected_path.display()));
        let problems = check_case(case, &out, &expected);
        if !problems.is_empty() {
            failures.push(format!("=== case `{case}`\n{}", problems.join("\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid cases failed (regenerate with BERTH_BLESS=1 if the change is intended):\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_valid_monorepo_passes() {
    let out = validate(&manifest_dir(), Path::new("tests/fixtures/monorepo"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "berth validate --repo tests/fixtures/monorepo failed:\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "unexpected stdout: {}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn paths_are_relative_to_the_repo() {
    let case = invalid_dir().join("duplicate-service-name");
    let expected = std::fs::read_to_string(case.join("expected.txt")).expect("expected.txt");
    // The same output whether the repo is given as an absolute path from elsewhere, or as
    // `.` from inside it.
    let from_elsewhere = validate(&std::env::temp_dir(), &case);
    let from_inside = validate(&case, Path::new("."));
    for (how, out) in [("absolute --repo", &from_elsewhere), ("--repo .", &from_inside)] {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{how}: {stdout}");
        assert_eq!(stdout, expected, "{how}:\n{}", diff(&expected, &stdout));
        for line in stdout.lines() {
            assert!(line.starts_with("services/"), "{how}: path not relative to the repo: {line}");
            assert!(!line.contains(&*case.to_string_lossy()), "{how}: absolute path in {line}");
        }
    }
    // Both files of the duplicate are named.
    assert!(expected.contains("services/api/deploy/service.yaml:2:7: duplicate service name `api`: also defined at services/api-v2/deploy/service.yaml:2:7"));
    assert!(expected.contains("services/api-v2/deploy/service.yaml:2:7: duplicate service name `api`: also defined at services/api/deploy/service.yaml:2:7"));
}

#[test]
fn line_shape_check_works() {
    assert!(is_diagnostic("services/a/deploy/service.yaml:3:14: unknown field `x`"));
    assert!(!is_diagnostic("error: 1 problem"));
    assert!(!is_diagnostic("a.yaml:3:x: m"));
    assert!(!is_diagnostic("a.yaml:3:4:"));
    assert_eq!(diff("a\nb\n", "a\nc\n"), "  a\n- b\n+ c\n");
}

/// A small valid service spec (`web`).
const WEB_SPEC: &str =
    "type: service\nname: web\nspec:\n  image: web\n  resources: {cpu: 256, memory: 512}\n  count: 1\n";

fn write_file(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Files berth would skip silently are named: `service.yml`, `config.yml`, a `service.yaml`
/// that is a symlink (dangling or not); warnings, or errors under `--strict`.
#[test]
fn near_miss_files_are_named_and_fail_under_strict() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |rel: &str, text: &str| write_file(root, rel, text);
    let spec = WEB_SPEC;
    write("services/web/deploy/service.yaml", spec);
    write("services/web/deploy/pre/config.yaml", "");
    write("services/web/deploy/prod/config.yml", "");
    write("services/api/deploy/service.yml", &spec.replace("web", "api"));
    std::fs::create_dir_all(root.join("services/gone/deploy")).unwrap();
    std::os::unix::fs::symlink(root.join("nowhere.yaml"), root.join("services/gone/deploy/service.yaml")).unwrap();
    let repo = root.to_string_lossy().into_owned();
    let out = crate::support::berth(["validate", "--repo", &repo]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for line in [
        "warning: services/api/deploy/service.yml: not read: berth reads `service.yaml`; rename it",
        "warning: services/web/deploy/prod/config.yml: not read: berth reads `config.yaml`; rename it",
        "warning: services/gone/deploy/service.yaml: not read: berth reads regular files only",
    ] {
        assert!(stderr.contains(line), "missing `{line}` in:\n{stderr}");
    }
    let strict = crate::support::berth(["validate", "--repo", &repo, "--strict"]);
    assert_eq!(strict.status.code(), Some(1), "{}", String::from_utf8_lossy(&strict.stderr));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("error: services/api/deploy/service.yml"));
}

/// A deploy file over the 1 MiB cap is refused at its first line, read no further than the
/// cap, and blocks only its own service: the other service still validates and renders.
#[test]
fn an_oversized_deploy_file_is_refused_and_blocks_only_its_service() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |rel: &str, text: &str| write_file(root, rel, text);
    let spec = WEB_SPEC;
    write("services/web/deploy/service.yaml", spec);
    write("services/web/deploy/pre/config.yaml", "");
    // Valid YAML, 8 MiB: a comment block pasted into the file.
    let huge = format!(
        "{}{}",
        spec.replace("web", "api"),
        "# padding padding padding padding padding padding\n".repeat(170_000)
    );
    write("services/api/deploy/service.yaml", &huge);
    write("services/api/deploy/pre/config.yaml", "");
    let repo = root.to_string_lossy().into_owned();
    let out = crate::support::berth(["validate", "--repo", &repo]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("services/api/deploy/service.yaml:1:1: the file is larger than 1024 KiB"), "{stdout}");
    assert!(!stdout.contains("services/web"), "{stdout}");
    for args in
        [&["init", "-q"][..], &["add", "."], &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c"]]
    {
        let st = std::process::Command::new("git").args(args).current_dir(root).status().unwrap();
        assert!(st.success(), "git {args:?}");
    }
    let render = crate::support::berth(["render", "--repo", &repo, "--env", "pre", "--service", "web"]);
    assert_eq!(render.status.code(), Some(0), "{}", String::from_utf8_lossy(&render.stderr));
}
