//! Every fixture task definition, exactly as `berth render --only task-definition` prints
//! it, is a valid `aws ecs register-task-definition --cli-input-json` input: registered with
//! the real AWS CLI against moto and read back with `describe-task-definition`, it equals
//! the render field by field.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::moto::Moto;
use crate::support::{berth, fixture, stdout_ok};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One service in one environment of the fixture monorepo.
#[derive(Debug)]
struct Case {
    service: String,
    env: String,
    /// `--param NAME=VALUE` for each `ssm:` variable of the environment's config.yaml.
    params: Vec<String>,
}

/// Every service (a folder holding `deploy/service.yaml`) and every environment it
/// deploys to (a `deploy/<env>/config.yaml`).
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for service_dir in sorted_dirs(&fixture("monorepo/services")) {
        let deploy = service_dir.join("deploy");
        let Ok(service_yaml) = std::fs::read_to_string(deploy.join("service.yaml")) else {
            continue;
        };
        let service = service_yaml
            .lines()
            .find_map(|l| l.strip_prefix("name:"))
            .map(|v| unquote(v).to_string())
            .unwrap_or_else(|| panic!("{}: no top-level name", deploy.display()));
        for env_dir in sorted_dirs(&deploy) {
            let Ok(config) = std::fs::read_to_string(env_dir.join("config.yaml")) else {
                continue;
            };
            let env = env_dir.file_name().unwrap().to_string_lossy().into_owned();
            let params = ssm_variables(&config)
                .into_iter()
                .map(|name| format!("{name}=from-ssm.{}", name.trim_start_matches('/').replace('/', ".")))
                .collect();
            cases.push(Case { service: service.clone(), env, params });
        }
    }
    cases
}

fn sorted_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("cannot read a directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn unquote(v: &str) -> &str {
    let v = v.split(" #").next().unwrap_or(v).trim();
    v.trim_matches(|c| c == '\'' || c == '"')
}

/// Parameter names of the `ssm:` entries under the top-level `variables:` key (plain
/// config that render reads; `secrets:` entries are only referenced, never read).
fn ssm_variables(config_yaml: &str) -> Vec<String> {
    let mut section = "";
    let mut names = Vec::new();
    for line in config_yaml.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with([' ', '-']) {
            section = line.split(':').next().unwrap_or("").trim();
            continue;
        }
        if section == "variables"
            && let Some((_, value)) = line.split_once("value:")
            && let Some(name) = unquote(value).strip_prefix("ssm:")
        {
            names.push(name.to_string());
        }
    }
    names
}

/// `v` as a list, `[]` when absent (moto fills in `[]` for several list fields).
fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// Port mappings without `hostPort` where it only echoes `containerPort` (real ECS
/// returns it for awsvpc; moto does not).
fn port_mappings(v: &Value) -> Vec<Value> {
    list(v)
        .into_iter()
        .map(|mut m| {
            if let Some(obj) = m.as_object_mut()
                && obj.get("hostPort").is_some_and(|h| Some(h) == obj.get("containerPort"))
            {
                obj.remove("hostPort");
            }
            m
        })
        .collect()
}

/// `name` and `valueFrom` of each secret.
fn secrets(v: &Value) -> Vec<Value> {
    list(v).iter().map(|s| json!({"name": s["name"], "valueFrom": s["valueFrom"]})).collect()
}

/// Tags sorted by key.
fn tags(v: &Value) -> Vec<Value> {
    let mut tags = list(v);
    tags.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    tags
}

fn render(case: &Case) -> String {
    let repo = fixture("monorepo");
    let config = fixture("berth.yaml");
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "render".as_ref(),
        "--repo".as_ref(),
        repo.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
        "--env".as_ref(),
        case.env.as_ref(),
        "--service".as_ref(),
        case.service.as_ref(),
        "--commit".as_ref(),
        COMMIT.as_ref(),
        "--only".as_ref(),
        "task-definition".as_ref(),
    ];
    for p in &case.params {
        args.push("--param".as_ref());
        args.push(p.as_ref());
    }
    // A tag environment renders a release (the fixture's checkout has no vX.Y.Z tag).
    if case.env == "prod" {
        let version: [&std::ffi::OsStr; 2] = ["--version".as_ref(), "1.0.0".as_ref()];
        args.extend(version);
    }
    stdout_ok(&format!("berth render {}/{}", case.service, case.env), &berth(&args))
}

/// Render, register through the CLI, describe through the CLI, compare.
fn round_trip(moto: &Moto, dir: &Path, case: &Case) {
    let ctx = format!("{}/{}", case.service, case.env);
    let text = render(case);
    let want: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{ctx}: render printed bad JSON: {e}"));
    let input = dir.join(format!("{}-{}.json", case.service, case.env));
    std::fs::write(&input, &text).expect("cannot write the CLI input");

    let family = want["family"].as_str().unwrap_or_else(|| panic!("{ctx}: no family in the render"));
    let out = moto.aws(&[
        "ecs",
        "register-task-definition",
        "--cli-input-json",
        &format!("file://{}", input.display()),
        "--output",
        "json",
    ]);
    stdout_ok(&format!("{ctx}: aws ecs register-task-definition"), &out);
    let out = moto.aws(&[
        "ecs",
        "describe-task-definition",
        "--task-definition",
        family,
        "--include",
        "TAGS",
        "--output",
        "json",
    ]);
    let got: Value = serde_json::from_str(&stdout_ok(&format!("{ctx}: aws ecs describe-task-definition"), &out))
        .unwrap_or_else(|e| panic!("{ctx}: describe printed bad JSON: {e}"));
    let td = &got["taskDefinition"];

    assert_eq!(td["family"], want["family"], "{ctx}: family");
    assert_eq!(td["revision"], json!(1), "{ctx}: a fresh server gives revision 1");
    assert_eq!(td["status"], json!("ACTIVE"), "{ctx}: status");
    for field in ["cpu", "memory", "networkMode", "requiresCompatibilities", "taskRoleArn", "executionRoleArn"] {
        assert_eq!(td[field], want[field], "{ctx}: {field}");
    }
    assert!(want["cpu"].is_string() && want["memory"].is_string(), "{ctx}: task cpu/memory are strings in the API");

    let want_containers = list(&want["containerDefinitions"]);
    let got_containers = list(&td["containerDefinitions"]);
    assert!(!want_containers.is_empty(), "{ctx}: the render has no container");
    assert_eq!(got_containers.len(), want_containers.len(), "{ctx}: container count");
    for w in &want_containers {
        let name = w["name"].as_str().expect("a container without a name");
        let g = got_containers
            .iter()
            .find(|g| g["name"] == w["name"])
            .unwrap_or_else(|| panic!("{ctx}: container {name} not read back"));
        let ctx = format!("{ctx} container {name}");
        assert_eq!(g["image"], w["image"], "{ctx}: image");
        assert_eq!(g["essential"], w["essential"], "{ctx}: essential");
        assert_eq!(list(&g["environment"]), list(&w["environment"]), "{ctx}: environment");
        assert_eq!(secrets(&g["secrets"]), secrets(&w["secrets"]), "{ctx}: secrets (valueFrom)");
        assert_eq!(port_mappings(&g["portMappings"]), port_mappings(&w["portMappings"]), "{ctx}: portMappings");
        assert_eq!(g["healthCheck"], w["healthCheck"], "{ctx}: healthCheck");
        assert_eq!(g["logConfiguration"], w["logConfiguration"], "{ctx}: logConfiguration");
        assert_eq!(g["dockerLabels"], w["dockerLabels"], "{ctx}: dockerLabels");
    }
    assert!(!list(&want["tags"]).is_empty(), "{ctx}: the render has no tags");
    assert_eq!(tags(&got["tags"]), tags(&want["tags"]), "{ctx}: tags (describe --include TAGS)");
}

#[test]
fn fixture_parsing_finds_every_service_env_and_ssm_variable() {
    let cases = cases();
    let found: Vec<String> = cases.iter().map(|c| format!("{}/{}", c.service, c.env)).collect();
    for expected in ["bpg/pre", "bpg/prod", "klausapproves/pre", "klausapproves/prod", "ledger/pre", "notifier/prod"] {
        assert!(found.iter().any(|f| f == expected), "{expected} missing from {found:?}");
    }
    assert!(!found.iter().any(|f| f == "ledger/prod"), "ledger has no prod folder: {found:?}");
    let klaus_pre = cases.iter().find(|c| c.service == "klausapproves" && c.env == "pre").unwrap();
    assert_eq!(klaus_pre.params, ["/pre/klausapproves/db-host=from-ssm.pre.klausapproves.db-host"]);
}

#[test]
fn rendered_task_definitions_register_and_read_back_through_the_aws_cli() {
    let cases = cases();
    assert!(!cases.is_empty(), "no fixture services found");
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("cannot create a temp dir");
    // The CLI takes ~0.5 s to start, so run the cases side by side on the one server
    // (every case has its own family).
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            cases.iter().map(|case| (case, scope.spawn(|| round_trip(&moto, dir.path(), case)))).collect();
        handles
            .into_iter()
            .filter_map(|(case, h)| {
                h.join().err().map(|panic| {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("{}/{}: {msg}", case.service, case.env)
                })
            })
            .collect()
    });
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}
