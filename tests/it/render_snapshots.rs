//! `berth render` through the binary: a snapshot of every fixture service in every
//! environment it deploys to, of `--only task-definition`, of a render without `--config`,
//! of the errors users meet first, and the image tag taken from git history.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const VERSION: &str = "1.4.2";
const FIXTURE: &str = "tests/fixtures/monorepo";
const CONFIG: &str = "tests/fixtures/berth.yaml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn berth(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .current_dir(root())
        .env("RUST_LOG", "error")
        .output()
        .expect("berth runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// The (service, env) pairs of the fixture: every `deploy/<env>/config.yaml`.
fn fixture_pairs() -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let services = root().join(FIXTURE).join("services");
    for service in std::fs::read_dir(&services).unwrap().map(|e| e.unwrap().path()) {
        let deploy = service.join("deploy");
        for env in std::fs::read_dir(&deploy).unwrap().map(|e| e.unwrap().path()) {
            if env.join("config.yaml").is_file() {
                let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
                pairs.push((name(&service), name(&env)));
            }
        }
    }
    pairs.sort();
    pairs
}

/// `--param` answers for the fixture's `ssm:` variables.
fn params(service: &str, env: &str) -> Vec<String> {
    match service {
        "klausapproves" => vec!["--param".into(), format!("/{env}/klausapproves/db-host=db.{env}.internal")],
        _ => Vec::new(),
    }
}

/// The fixture monorepo committed to a git repository of its own (so that nothing depends
/// on the history of the checkout the tests run in, or on there being one).
fn fixture_git() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join(FIXTURE), tmp.path());
    git(tmp.path(), &["init", "-q", "-b", "develop"]);
    commit_all(tmp.path(), "fixture");
    tmp
}

/// Renders one pair with the fixture config: `--commit` in branch environments, `--version`
/// in tag environments (the two flags exclude each other; the commit then comes from git,
/// here the fixture's own repository `repo`).
fn render_pair_in(repo: &Path, service: &str, env: &str, extra: &[&str]) -> Run {
    let repo = repo.to_string_lossy().into_owned();
    let mut args: Vec<String> =
        ["render", "--config", CONFIG, "--repo", &repo, "--env", env, "--service", service].map(String::from).to_vec();
    if env == "prod" {
        args.extend(["--version".into(), VERSION.into()]);
    } else {
        args.extend(["--commit".into(), COMMIT.into()]);
    }
    args.extend(params(service, env));
    args.extend(extra.iter().map(|s| s.to_string()));
    berth(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn render_pair(service: &str, env: &str, extra: &[&str]) -> Run {
    render_pair_in(&root().join(FIXTURE), service, env, extra)
}

/// Secrets are references only: every `valueFrom` is an ARN or a parameter path, and no
/// plain environment value is a reference (which would mean a secret became a variable).
fn assert_no_secret_values(json: &Value, what: &str) {
    let task = json.get("taskDefinition").unwrap_or(json);
    for container in task["containerDefinitions"].as_array().expect("containerDefinitions") {
        let secrets = container["secrets"].as_array().cloned().unwrap_or_default();
        let env = container["environment"].as_array().cloned().unwrap_or_default();
        for s in &secrets {
            let from = s["valueFrom"].as_str().expect("valueFrom is a string");
            assert!(
                from.starts_with("arn:") || from.starts_with('/'),
                "{what}: secret {} is not a reference: {from}",
                s["name"]
            );
            assert!(
                !env.iter().any(|e| e["name"] == s["name"]),
                "{what}: {} is both a secret and a plain variable",
                s["name"]
            );
        }
        for e in &env {
            let value = e["value"].as_str().expect("value is a string");
            for prefix in ["ssm:", "secretsmanager:", "arn:aws:secretsmanager:", "arn:aws:ssm:"] {
                assert!(!value.starts_with(prefix), "{what}: environment {} holds a reference: {value}", e["name"]);
            }
        }
    }
}

/// The commit git reports as the newest that changed `dir` of `repo`, following first
/// parents as berth does.
fn git_last_commit(repo: &Path, dir: &str) -> String {
    git(repo, &["log", "-1", "--first-parent", "--format=%H", "--", dir])
}

#[test]
fn every_fixture_service_in_every_environment() {
    let pairs = fixture_pairs();
    let listed: Vec<String> = pairs.iter().map(|(s, e)| format!("{s}/{e}")).collect();
    assert_eq!(
        listed,
        [
            "bpg/pre",
            "bpg/prod",
            "klausapproves/pre",
            "klausapproves/prod",
            "ledger/pre",
            "notifier/pre",
            "notifier/prod"
        ],
        "the fixture changed: add or remove snapshots"
    );
    let repo = fixture_git();
    for (service, env) in &pairs {
        let run = render_pair_in(repo.path(), service, env, &[]);
        assert_eq!(run.code, 0, "{service}/{env}:\n{}{}", run.stdout, run.stderr);
        let json: Value = serde_json::from_str(&run.stdout).expect("render prints JSON");
        assert_no_secret_values(&json, &format!("{service}/{env}"));
        if env == "prod" {
            // A tag environment: the image is the release, and the commit is the newest one
            // that changed the service's folder in this checkout, which moves with the repo:
            // check it against git, then keep it (and the hash it feeds) out of the snapshot.
            let image = json["taskDefinition"]["containerDefinitions"][0]["image"].as_str().unwrap();
            assert!(image.ends_with(&format!(":{VERSION}")), "{image}");
            let commit = json["taskDefinition"]["tags"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["key"] == "berth:commit")
                .and_then(|t| t["value"].as_str())
                .unwrap();
            let expected = git_last_commit(repo.path(), &format!("services/{service}"));
            assert_eq!(commit, expected, "{service}/{env}: the commit of the service's folder");
            insta::with_settings!({
                filters => vec![
                    (r"\b[0-9a-f]{40}\b", "[commit]"),
                    (r#"("key": "berth:spec-hash",\s+"value": )"[0-9a-f]{16}""#, r#"$1"[spec-hash]""#),
                ],
            }, {
                insta::assert_snapshot!(format!("{service}_{env}"), run.stdout);
            });
        } else {
            insta::assert_snapshot!(format!("{service}_{env}"), run.stdout);
        }
    }
}

#[test]
fn only_the_task_definition() {
    let run = render_pair("klausapproves", "pre", &["--only", "task-definition"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(json.get("family").is_some() && json.get("service").is_none(), "not a bare task definition");
    assert_no_secret_values(&json, "--only task-definition");
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn bare_render_without_config() {
    // No registry, account or defaults: the image is the bare repository name, SSM secrets
    // are parameter names, and the cluster is named after the environment.
    let run = berth(&["render", "--repo", FIXTURE, "--env", "pre", "--service", "notifier", "--commit", COMMIT]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_no_secret_values(&json, "bare notifier/pre");
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn bare_render_needs_the_account_for_secrets_manager() {
    let run = berth(&[
        "render",
        "--repo",
        FIXTURE,
        "--env",
        "pre",
        "--service",
        "klausapproves",
        "--commit",
        COMMIT,
        "--param",
        "/pre/klausapproves/db-host=db",
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn render_errors() {
    let run = render_pair("ledger", "prod", &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    insta::assert_snapshot!("ledger_not_in_prod", run.stdout);

    let run = berth(&[
        "render",
        "--config",
        CONFIG,
        "--repo",
        FIXTURE,
        "--env",
        "pre",
        "--service",
        "klausapproves",
        "--commit",
        COMMIT,
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    insta::assert_snapshot!("missing_ssm_param", run.stdout);
}

// ---------------------------------------------------------------------------------------
// The image tag from git history

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "berth tests")
        .env("GIT_AUTHOR_EMAIL", "tests@berth.invalid")
        .env("GIT_COMMITTER_NAME", "berth tests")
        .env("GIT_COMMITTER_EMAIL", "tests@berth.invalid")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().map(Result::unwrap) {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn commit_all(repo: &Path, message: &str) -> String {
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

fn image_and_commit(repo: &Path, service: &str) -> (String, String) {
    let config = root().join(CONFIG);
    let run = berth(&[
        "render",
        "--config",
        config.to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
        "--env",
        "pre",
        "--service",
        service,
    ]);
    assert_eq!(run.code, 0, "{service}: {}{}", run.stdout, run.stderr);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    let image = json["taskDefinition"]["containerDefinitions"][0]["image"].as_str().unwrap().to_string();
    let commit = json["taskDefinition"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == "berth:commit")
        .and_then(|t| t["value"].as_str())
        .unwrap()
        .to_string();
    (image, commit)
}

#[test]
fn image_tag_is_the_last_commit_that_changed_the_service_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path();
    git(repo, &["init", "-q", "-b", "develop"]);
    let fixture = root().join(FIXTURE).join("services");
    // 1: service A (bpg).
    copy_dir(&fixture.join("bpg"), &repo.join("services/bpg"));
    let _first = commit_all(repo, "add bpg");
    // 2: service B (notifier).
    copy_dir(&fixture.join("notifier"), &repo.join("services/notifier"));
    let second = commit_all(repo, "add notifier");
    // 3: A again, outside its deploy/ folder: the service's folder is what counts.
    std::fs::write(repo.join("services/bpg/README.md"), "bpg\n").unwrap();
    let third = commit_all(repo, "bpg: readme");
    // 4: neither service.
    std::fs::write(repo.join("README.md"), "monorepo\n").unwrap();
    let fourth = commit_all(repo, "root readme");
    assert_ne!(third, fourth);

    let registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let (image, commit) = image_and_commit(repo, "bpg");
    assert_eq!(image, format!("{registry}/bpg:{}", &third[..12]));
    assert_eq!(commit, third);
    let (image, commit) = image_and_commit(repo, "notifier");
    assert_eq!(image, format!("{registry}/notifier:{}", &second[..12]));
    assert_eq!(commit, second);
}

/// In a tag environment `render` takes the release from HEAD's `vX.Y.Z` tag, as the daemon
/// deploys it; without one it asks for `--version`.
#[test]
fn a_tag_environment_renders_the_release_of_heads_tag() {
    let repo = fixture_git();
    let path = repo.path().to_string_lossy().into_owned();
    let mut args: Vec<String> = [
        "render",
        "--config",
        CONFIG,
        "--repo",
        &path,
        "--env",
        "prod",
        "--service",
        "notifier",
        "--only",
        "task-definition",
    ]
    .map(String::from)
    .to_vec();
    args.extend(params("notifier", "prod"));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let untagged = berth(&argv);
    assert_eq!(untagged.code, 1, "{}", untagged.stderr);
    assert!(untagged.stderr.contains("HEAD has no vX.Y.Z tag: pass --version X.Y.Z"), "{}", untagged.stderr);
    git(repo.path(), &["tag", "v2.3.4"]);
    let tagged = berth(&argv);
    assert_eq!(tagged.code, 0, "{}", tagged.stderr);
    let td: Value = serde_json::from_str(&tagged.stdout).unwrap();
    let image = td["containerDefinitions"][0]["image"].as_str().unwrap();
    assert!(image.ends_with(":2.3.4"), "{image}");
}
