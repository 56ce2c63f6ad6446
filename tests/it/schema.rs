//! The JSON Schemas `berth schema` prints, checked with check-jsonschema (PyPI, pinned in
//! scripts/setup.sh; found beside `$BERTH_MOTO_SERVER` like the other venv tools):
//!
//! - every valid file (the fixture monorepo, the agent configs, what `berth new service`
//!   writes) passes;
//! - every file of `tests/fixtures/invalid/*` that `berth validate` reports is rejected,
//!   except those listed in [`UNCAUGHT`] with the reason JSON Schema cannot say it, and the
//!   ones YAML itself rejects ([`NOT_YAML`]); a file berth has nothing against passes;
//! - boundary cases (`port: 0`, `count: 99999`, each pattern's edges) get the same verdict
//!   from the schema and from `berth validate`.
//!
//! A listed case that becomes caught, or an unlisted one that passes, fails the test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{berth, fixture, stdout_ok, venv_tool_or_skip};

/// Reported files the schemas let through, and why JSON Schema cannot catch them.
const UNCAUGHT: &[(&str, &str)] = &[
    (
        "autoscaling-min-gt-max/services/api/deploy/prod/config.yaml",
        "min against max, and max is in service.yaml: JSON Schema compares no two values",
    ),
    (
        "bad-cpu-memory-prod-override/services/api/deploy/prod/config.yaml",
        "8192 MiB is valid with some CPU; the CPU it is wrong for is in service.yaml",
    ),
    ("dependency-cycle/services/a/deploy/service.yaml", "a cycle runs through three files"),
    ("dependency-cycle/services/b/deploy/service.yaml", "a cycle runs through three files"),
    ("dependency-cycle/services/c/deploy/service.yaml", "a cycle runs through three files"),
    ("dependency-self/services/api/deploy/service.yaml", "a dependency against the file's own `name`: two values"),
    ("dependency-unknown/services/api/deploy/service.yaml", "which services exist only the whole repository says"),
    (
        "duplicate-env-var/services/api/deploy/service.yaml",
        "uniqueItems compares whole items; equal keys with different values are beyond it",
    ),
    ("duplicate-service-name/services/api-v2/deploy/service.yaml", "the same name in two files"),
    ("duplicate-service-name/services/api/deploy/service.yaml", "the same name in two files"),
    ("duplicate-variable-key/services/api/deploy/pre/config.yaml", "a key unique across two lists of objects"),
    (
        "invalid-env-folder/services/api/deploy/Prod/config.yaml",
        "the environment is the folder's name, not in the file",
    ),
    ("port-equals-metrics-port/services/api/deploy/service.yaml", "port against metrics_port: two values"),
    ("rollout-invalid/services/web/deploy/service.yaml", "`bake` and `hooks` against `strategy`: two values"),
    ("secret-in-string/services/api/deploy/service.yaml", "which variables are secrets is in config.yaml"),
    ("unknown-variable/services/api/deploy/service.yaml", "the variables are declared in config.yaml"),
];

/// Reported files that are not YAML berth reads: check-jsonschema's YAML loader rejects
/// them before any schema is applied (a parse error), as an editor marks them.
const NOT_YAML: &[&str] = &[
    "all-files-reported/services/broken-yaml/deploy/service.yaml",
    "duplicate-yaml-key/services/api/deploy/service.yaml",
    "not-utf8/services/api/deploy/pre/config.yaml",
    "tabs/services/api/deploy/pre/config.yaml",
    // check-jsonschema's loader refuses a tag it does not know, as berth does.
    "unknown-yaml-tag/services/api/deploy/service.yaml",
    "yaml-syntax/services/api/deploy/service.yaml",
    "yaml-syntax-config/services/api/deploy/pre/config.yaml",
    "yaml-unclosed-bracket/services/api/deploy/service.yaml",
];

#[derive(Clone, Debug, PartialEq)]
enum Verdict {
    Valid,
    /// Rejected by the schema, with check-jsonschema's messages.
    Invalid(Vec<String>),
    NotYaml,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Which {
    Service,
    Config,
    Agent,
}

impl Which {
    fn of(path: &Path) -> Which {
        match path.file_name().and_then(|n| n.to_str()) {
            Some("service.yaml") => Which::Service,
            Some("config.yaml") => Which::Config,
            _ => Which::Agent,
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Which::Service => "service",
            Which::Config => "config",
            Which::Agent => "agent",
        }
    }
}

/// check-jsonschema with the three schemas written into a temporary folder.
struct Checker {
    tool: PathBuf,
    dir: tempfile::TempDir,
}

impl Checker {
    fn new(test: &str) -> Option<Checker> {
        let tool = venv_tool_or_skip("check-jsonschema", test)?;
        let dir = tempfile::tempdir().unwrap();
        for which in [Which::Service, Which::Config, Which::Agent] {
            let json = stdout_ok("berth schema", &berth(["schema", which.arg()]));
            std::fs::write(dir.path().join(format!("{}.schema.json", which.arg())), json).unwrap();
        }
        Some(Checker { tool, dir })
    }

    /// The verdict on each file, each checked against the schema its name calls for.
    fn check(&self, files: &[PathBuf]) -> BTreeMap<PathBuf, Verdict> {
        let mut out = BTreeMap::new();
        for which in [Which::Service, Which::Config, Which::Agent] {
            let these: Vec<&PathBuf> = files.iter().filter(|f| Which::of(f) == which).collect();
            if these.is_empty() {
                continue;
            }
            let schema = self.dir.path().join(format!("{}.schema.json", which.arg()));
            let run = Command::new(&self.tool)
                .arg("--schemafile")
                .arg(&schema)
                .args(["--output-format", "json"])
                .args(&these)
                .stdin(Stdio::null())
                .output()
                .expect("cannot run check-jsonschema");
            let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap_or_else(|e| {
                panic!("check-jsonschema: {e}\n{}", String::from_utf8_lossy(&run.stderr));
            });
            for f in &these {
                out.insert((*f).clone(), Verdict::Valid);
            }
            for e in report["errors"].as_array().into_iter().flatten() {
                let file = PathBuf::from(e["filename"].as_str().unwrap());
                let msg = format!("{}: {}", e["path"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or(""));
                match out.get_mut(&file) {
                    Some(Verdict::Invalid(msgs)) => msgs.push(msg),
                    Some(v) => *v = Verdict::Invalid(vec![msg]),
                    None => panic!("check-jsonschema names a file it was not given: {}", file.display()),
                }
            }
            for e in report["parse_errors"].as_array().into_iter().flatten() {
                out.insert(PathBuf::from(e["filename"].as_str().unwrap()), Verdict::NotYaml);
            }
        }
        out
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        walk(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
    files.sort();
    files
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

#[test]
fn valid_files_pass_the_schemas() {
    let Some(checker) = Checker::new("valid_files_pass_the_schemas") else { return };
    let mut files = yaml_files(&fixture("monorepo"));
    files.push(fixture("berth.yaml"));
    files.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/berth.example.yaml"));
    // What `berth new service` writes, modelines included.
    let scaffold = tempfile::tempdir().unwrap();
    let repo = scaffold.path().to_string_lossy().into_owned();
    stdout_ok(
        "berth new service",
        &berth(["new", "service", "pay", "--repo", &repo, "--autoscaling", "cpu", "--depends-on", "ledger"]),
    );
    files.extend(yaml_files(&scaffold.path().join("services")));
    assert!(files.len() >= 15, "{files:?}");
    let verdicts = checker.check(&files);
    let failed: Vec<String> = (verdicts.iter())
        .filter(|(_, v)| **v != Verdict::Valid)
        .map(|(f, v)| format!("{}: {v:?}", f.display()))
        .collect();
    assert!(failed.is_empty(), "valid files fail the schemas:\n{}", failed.join("\n"));
}

#[test]
fn invalid_fixtures_are_rejected_where_the_schema_can_say_it() {
    let Some(checker) = Checker::new("invalid_fixtures_are_rejected_where_the_schema_can_say_it") else { return };
    let root = fixture("invalid");
    let files = yaml_files(&root);
    let verdicts = checker.check(&files);
    let mut reported = std::collections::BTreeSet::new();
    for case in std::fs::read_dir(&root).unwrap() {
        let case = case.unwrap().path();
        let expected = std::fs::read_to_string(case.join("expected.txt")).unwrap();
        for line in expected.lines() {
            let file = line.split(':').next().unwrap();
            reported.insert(format!("{}/{file}", case.file_name().unwrap().to_string_lossy()));
        }
    }
    for (listed, _) in UNCAUGHT {
        assert!(reported.contains(*listed), "UNCAUGHT names {listed}, which berth does not report");
    }
    for listed in NOT_YAML {
        assert!(reported.contains(*listed), "NOT_YAML names {listed}, which berth does not report");
    }
    let mut wrong = Vec::new();
    let (mut caught, mut not_yaml, mut uncaught) = (0, 0, 0);
    for (file, verdict) in &verdicts {
        let rel = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        let want = if let Some((_, why)) = UNCAUGHT.iter().find(|(f, _)| *f == rel) {
            uncaught += 1;
            if *verdict != Verdict::Valid {
                wrong.push(format!("{rel}: now caught ({verdict:?}); remove it from UNCAUGHT (it said: {why})"));
            }
            continue;
        } else if NOT_YAML.contains(&rel.as_str()) {
            not_yaml += 1;
            "not YAML"
        } else if reported.contains(&rel) {
            caught += 1;
            "rejected by the schema"
        } else {
            "valid (berth reports nothing in it)"
        };
        let ok = match want {
            "not YAML" => *verdict == Verdict::NotYaml,
            "rejected by the schema" => matches!(verdict, Verdict::Invalid(_)),
            _ => *verdict == Verdict::Valid,
        };
        if !ok {
            wrong.push(format!("{rel}: want {want}, got {verdict:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    eprintln!(
        "reported files: {caught} rejected by the schema, {not_yaml} not YAML, {uncaught} beyond JSON Schema (UNCAUGHT)"
    );
}

const SERVICE: &str = "type: service\nname: api\nspec:\n  image: api\n  resources: {cpu: 256, memory: 512}\n";
const AGENT: &str = "repo: {url: https://example.com/monorepo.git}\naws: {region: us-east-1}\nenvironments:\n  pre: {source: {branch: develop}, cluster: pre}\n";

/// Each case is `(valid, text)` for one file; the rest of its repository is valid.
fn service_cases() -> Vec<(bool, String)> {
    let spec = |extra: &str| format!("{SERVICE}{extra}");
    let resources = |cpu: u32, memory: u32| {
        format!("type: service\nname: api\nspec:\n  image: api\n  resources: {{cpu: {cpu}, memory: {memory}}}\n")
    };
    let env = |value: &str| spec(&format!("  environment:\n    - key: A\n      value: {value}\n"));
    let mut cases = vec![
        (true, SERVICE.to_string()),
        (false, spec("  port: 0\n")),
        (false, spec("  count: 99999\n")),
        (false, spec("  count: 5001\n")),
        (true, spec("  count: 0\n")),
        (true, spec("  count: 5000\n")),
        (false, spec("  metrics_port: 0\n")),
        (false, spec("  port: 65536\n")),
        (true, spec("  port: 1\n  metrics_port: 65535\n")),
        (true, spec("  autoscaling: {resource: cpu, target: 100, min: 0, max: 5000}\n")),
        (true, spec("  autoscaling: {resource: memory, target: 0.5, min: 1, max: 1}\n")),
        (false, spec("  autoscaling: {resource: cpu, target: 0, min: 1, max: 2}\n")),
        (false, spec("  autoscaling: {resource: cpu, target: 100.5, min: 1, max: 2}\n")),
        (false, spec("  autoscaling: {resource: cpu, min: 1, max: 0}\n")),
        (false, spec("  autoscaling: {resource: cpu, min: 1, max: 5001}\n")),
        (false, spec("  autoscaling: {resource: cpu, max: 3}\n")),
        (true, resources(4096, 30720)),
        (true, resources(16384, 122880)),
        (true, resources(512, 3072)),
        (false, resources(512, 512)),
        (false, resources(8192, 18432)),
        (false, resources(300, 512)),
        (true, spec("  health: /\n")),
        (true, spec("  health: /a-b_c.d~e%20=+,/x\n")),
        (false, spec("  health: health\n")),
        (false, spec("  health: /a b\n")),
        (false, spec(&format!("  health: /{}\n", "a".repeat(200)))),
        (true, spec("  dependencies: {services: [], data: [db.main_2]}\n")),
        (false, spec("  dependencies: {data: [db/main]}\n")),
        (false, spec("  dependencies: {services: [Api]}\n")),
        (true, env("plain")),
        (true, env("3")),
        (true, env("true")),
        (true, env("''")),
        (true, env("'{{ .Service }}-{{.Env}}/{{ .Commit }}:{{ .Version }}'")),
        (true, env(r#"'{{ index .Variables "x" }}'"#)),
        (true, env("'{{.Variables.x.y}}'")),
        (true, env("'a { b } }} {'")),
        (true, env("\"|\\n  {{ .Service }}\\n\"")),
        (false, env("'{{ .Variables.x- }}'")),
        (false, env("'{{- .Service }}'")),
        (false, env("'{{ .Service'")),
        (false, env("'{{ upper .Service }}'")),
        (false, env("'{{ .Variables[x] }}'")),
        (false, env("'{{ }}'")),
        (false, env("'{{{ .Service }}'")),
        (false, spec("  environment:\n    - key: A-B\n      value: x\n")),
        (true, spec("  environment:\n    - key: _A1\n      value: x\n")),
        (false, spec(&format!("  environment:\n    - key: {}\n      value: x\n", "A".repeat(256)))),
        (false, SERVICE.replace("image: api", "image: 'a b'")),
        (false, SERVICE.replace("image: api", "image: ''")),
        (false, SERVICE.replace("image: api", "image: ~")),
        (true, SERVICE.replace("image: api", "image: ghcr.io/acme/api@sha256:00")),
        (false, SERVICE.replace("type: service", "type: cronjob")),
        (false, SERVICE.replace("name: api", "name: A")),
        (false, "type: service\nname: api\nspec:\n  image: api\n".to_string()),
        (false, "# only comments\n".to_string()),
    ];
    cases.push((true, spec("  count: ~\n  ingress: {external: true}\n")));
    cases
}

fn config_cases() -> Vec<(bool, String)> {
    let secret = |v: &str| format!("secrets:\n  - key: s\n    value: {v}\n");
    let variable = |v: &str| format!("variables:\n  - key: v\n    value: {v}\n");
    vec![
        (true, "# comments only\n".to_string()),
        (true, String::new()),
        (true, "variables: []\nsecrets: []\nadopt: false\n".to_string()),
        (true, "variables:\n  - key: a.b-c_D\n    value: 3\n".to_string()),
        (false, "variables:\n  - key: a b\n    value: 3\n".to_string()),
        (true, variable("ssm:/a/b")),
        (true, variable("ssm:pre/a")),
        (true, variable("ssm:arn:aws:ssm:us-east-1:123456789012:parameter/a/b")),
        (true, variable("'not ssm: /x'")),
        (false, variable("ssm:/a/")),
        (false, variable("'ssm:/a b'")),
        (false, variable("ssm:arn:aws:ssm:us-east-1:123:parameter/a")),
        (true, secret("ssm:/prod/db-password")),
        (true, secret("secretsmanager:prod/klaus")),
        (true, secret("secretsmanager:prod/klaus#api_key")),
        (true, secret("arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/klaus-AbCdEf#api_key")),
        (true, secret("arn:aws:ssm:us-east-1:123456789012:parameter/prod/x")),
        (true, secret("arn:aws-us-gov:ssm:us-gov-west-1:123456789012:parameter/x")),
        (true, secret("' ssm:/padded '")),
        (false, secret("3")),
        (false, secret("vault:/x")),
        (false, secret("secretsmanager:x#")),
        (false, secret("secretsmanager:x#a:b")),
        (false, secret("arn:aws:secretsmanager:us-east-1:1234:secret:x")),
        (false, secret("arn:aws:s3:::bucket")),
        (false, secret("ssm:arn:aws:secretsmanager:us-east-1:123456789012:secret:x")),
        (
            true,
            "overrides:\n  resources: {memory: 1024}\n  autoscaling: {resource: cpu, min: 1, max: 2}\n  count: ~\n"
                .to_string(),
        ),
        (false, "overrides:\n  port: 0\n".to_string()),
        (false, "overrides:\n  count: 99999\n".to_string()),
        (false, "overrides:\n  resources: {cpu: 300}\n".to_string()),
        (false, "overrides:\n  resources: {cpu: 512, memory: 512}\n".to_string()),
        (false, "overrides:\n  resources: {memory: 100}\n".to_string()),
        (false, "adopt: maybe\n".to_string()),
    ]
}

fn agent_cases() -> Vec<(bool, String)> {
    let with = |extra: &str| format!("{AGENT}{extra}");
    let env = |body: &str| AGENT.replace("{source: {branch: develop}, cluster: pre}", body);
    vec![
        (true, AGENT.to_string()),
        (false, "# comments only\n".to_string()),
        (false, AGENT.replace("url: https://example.com/monorepo.git", "workdir: /tmp")),
        (false, AGENT.replace("region: us-east-1", "account_id: \"123456789012\"")),
        (true, AGENT.replace("region: us-east-1", "region: us-east-1, account_id: \"123456789012\"")),
        (true, AGENT.replace("region: us-east-1", "region: us-east-1, account_id: 123456789012")),
        (false, AGENT.replace("region: us-east-1", "region: us-east-1, account_id: \"1234\"")),
        (false, AGENT.replace("region: us-east-1", "region: us-east-1, endpoint_url: localhost:5000")),
        (true, AGENT.replace("region: us-east-1", "region: us-east-1, timeout: 1h 30m, connect_timeout: 250ms")),
        (false, AGENT.replace("region: us-east-1", "region: us-east-1, timeout: 0s")),
        (false, AGENT.replace("region: us-east-1", "region: us-east-1, timeout: soon")),
        (false, AGENT.replace(".git}", ".git, token_env: T, ssh_key: /k}")),
        (true, with("concurrency: 256\n")),
        (false, with("concurrency: 0\n")),
        (false, with("concurrency: 257\n")),
        (true, with("metrics: {listen: '127.0.0.1:9090'}\nwebhook: {listen: '[::]:8080'}\n")),
        (false, with("metrics: {listen: 'localhost'}\n")),
        (true, env("{source: {tags: semver, prereleases: true}, cluster: prod}")),
        (false, env("{source: {tags: newest}, cluster: prod}")),
        (false, env("{source: {branch: main, tags: semver}, cluster: prod}")),
        (false, env("{source: {branch: main, prereleases: true}, cluster: prod}")),
        (false, env("{source: {branch: 'a..b'}, cluster: prod}")),
        (false, env("{source: {branch: main}}")),
        (true, env("{source: {branch: main}, cluster: c, sync: manual, prune_limit: 3}")),
        (true, env("{source: {branch: main}, cluster: c, prune_limit: 12.5%}")),
        (false, env("{source: {branch: main}, cluster: c, prune_limit: 0}")),
        (false, env("{source: {branch: main}, cluster: c, sync: sometimes}")),
        (
            true,
            env(
                "{source: {branch: main}, cluster: c, aws: {role_arn: 'arn:aws:iam::222222222222:role/berth', external_id: x}}",
            ),
        ),
        (false, env("{source: {branch: main}, cluster: c, aws: {external_id: x}}")),
        (false, env("{source: {branch: main}, cluster: c, aws: {role_arn: berth}}")),
        (false, env("{source: {branch: main}, cluster: c, defaults: {task_role: berth}}")),
        (false, AGENT.replace("  pre:", "  Pre:")),
        (
            true,
            with("state: {table: berth-state, ttl: 30d}\nha: {table: berth-leases, lease: 15s}\napi: {token_env: T}\n"),
        ),
        (false, with("state: {ttl: 30d}\n")),
        (false, with("state: {table: ab}\n")),
        (
            true,
            with(
                "notifications:\n  - {type: slack, url_env: U, events: [failed], envs: [pre]}\n  - {type: webhook, url: 'https://h.example.com/x'}\n  - {type: github, token_env: T, repo: acme/m}\n",
            ),
        ),
        (false, with("notifications:\n  - {type: pager, url_env: U}\n")),
        (false, with("notifications:\n  - {type: slack}\n")),
        (false, with("notifications:\n  - {type: webhook, url: 'https://h.example.com/x', url_env: U}\n")),
        (false, with("notifications:\n  - {type: github, repo: acme/m}\n")),
        (false, with("notifications:\n  - {type: slack, url_env: U, events: [exploded]}\n")),
        (false, with("cloudwatch: {namespace: AWS/ECS}\n")),
    ]
}

/// What `berth validate` says of a repository holding one service (and, for the agent
/// cases, of the config): `true` when it exits 0.
fn berth_accepts(dir: &Path, which: Which, text: &str) -> bool {
    let repo = dir.join("repo");
    let deploy = repo.join("services/api/deploy");
    std::fs::create_dir_all(deploy.join("pre")).unwrap();
    let (service, config) = match which {
        Which::Service => (text, "variables:\n  - {key: x, value: 1}\n  - {key: x.y, value: 2}\n"),
        Which::Config => (SERVICE, text),
        Which::Agent => (SERVICE, ""),
    };
    std::fs::write(deploy.join("service.yaml"), service).unwrap();
    std::fs::write(deploy.join("pre/config.yaml"), config).unwrap();
    let mut args = vec!["validate".to_string(), "--repo".into(), repo.to_string_lossy().into_owned()];
    if which == Which::Agent {
        let path = dir.join("berth.yaml");
        std::fs::write(&path, text).unwrap();
        args.extend(["--config".into(), path.to_string_lossy().into_owned()]);
    }
    berth(&args).status.success()
}

#[test]
fn boundaries_get_the_same_verdict_from_the_schema_and_from_berth() {
    let Some(checker) = Checker::new("boundaries_get_the_same_verdict_from_the_schema_and_from_berth") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut cases = Vec::new();
    let mut berth_disagrees = Vec::new();
    for (which, list) in
        [(Which::Service, service_cases()), (Which::Config, config_cases()), (Which::Agent, agent_cases())]
    {
        for (i, (valid, text)) in list.into_iter().enumerate() {
            let case_dir = dir.path().join(format!("{}-{i}", which.arg()));
            std::fs::create_dir_all(&case_dir).unwrap();
            if berth_accepts(&case_dir, which, &text) != valid {
                berth_disagrees.push(format!("--- {which:?}, valid: {valid}\n{text}"));
            }
            let name = match which {
                Which::Service => "service.yaml",
                Which::Config => "config.yaml",
                Which::Agent => "berth.yaml",
            };
            let file = case_dir.join(name);
            std::fs::write(&file, &text).unwrap();
            files.push(file.clone());
            cases.push((file, valid, text));
        }
    }
    assert!(berth_disagrees.is_empty(), "berth validate disagrees with the cases:\n{}", berth_disagrees.join("\n"));
    let verdicts = checker.check(&files);
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(file, valid, _)| (verdicts[file] == Verdict::Valid) != *valid)
        .map(|(file, valid, text)| {
            format!("--- {} (berth: valid {valid}), schema: {:?}\n{text}", file.display(), verdicts[file])
        })
        .collect();
    assert!(wrong.is_empty(), "the schema and berth disagree:\n{}", wrong.join("\n"));
}

/// `$schema` 2020-12, an `$id`, a title, and a description on every property.
#[test]
fn every_schema_has_an_id_a_title_and_every_field_a_description() {
    fn undescribed(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                if let Some(serde_json::Value::Object(props)) = o.get("properties") {
                    for (k, p) in props {
                        if p.get("description").is_none() {
                            out.push(format!("{path}.{k}"));
                        }
                    }
                }
                for (k, child) in o {
                    undescribed(child, &format!("{path}/{k}"), out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| undescribed(c, path, out)),
            _ => {}
        }
    }
    for (which, id, title) in [
        ("service", "https://berth.dev/schema/service.schema.json", "berth service spec (deploy/service.yaml)"),
        (
            "config",
            "https://berth.dev/schema/config.schema.json",
            "berth environment config (deploy/<env>/config.yaml)",
        ),
        ("agent", "https://berth.dev/schema/agent.schema.json", "berth agent configuration (config/berth.yaml)"),
    ] {
        let v: serde_json::Value = serde_json::from_str(&stdout_ok("berth schema", &berth(["schema", which]))).unwrap();
        assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(v["$id"], id);
        assert_eq!(v["title"], title);
        assert!(v["description"].is_string(), "{which}: no description");
        let mut missing = Vec::new();
        // Sub-schemas inside `if`/`then` constrain fields described elsewhere.
        let mut described = v.clone();
        strip_conditions(&mut described);
        undescribed(&described, which, &mut missing);
        assert!(missing.is_empty(), "{which}: fields without a description: {missing:?}");
    }
}

/// Removes `if`, `then`, `oneOf`, `not` and `allOf` (conditions over fields that are
/// described where they are declared).
fn strip_conditions(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(o) => {
            for k in ["if", "then", "oneOf", "not", "allOf"] {
                o.remove(k);
            }
            if let Some(serde_json::Value::Object(items)) = o.get_mut("items") {
                // An array field's item constraints (`properties.value` of secrets).
                if items.contains_key("$ref") {
                    items.remove("properties");
                }
            }
            o.values_mut().for_each(strip_conditions);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_conditions),
        _ => {}
    }
}

/// An editor finds the schemas through the modeline `berth new service` writes: the YAML
/// language server (`$BERTH_YAML_LS`, which scripts/setup.sh installs from npm) reports
/// nothing in the scaffolded files, the schema's errors once they are broken, and nothing
/// in the same broken file without its modeline.
#[test]
fn editors_find_the_schema_through_the_modeline() {
    let test = "editors_find_the_schema_through_the_modeline";
    let server = std::env::var_os("BERTH_YAML_LS").map(PathBuf::from).filter(|p| p.is_file());
    let Some(server) = server else {
        let msg = "yaml-language-server is not installed (scripts/setup.sh sets BERTH_YAML_LS)";
        assert!(std::env::var_os("CI").is_none(), "{msg}, and CI is set");
        eprintln!("SKIPPED {test}: {msg}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().to_string_lossy().into_owned();
    stdout_ok("berth new service", &berth(["new", "service", "pay", "--repo", &repo]));
    let deploy = dir.path().join("services/pay/deploy");
    let service = deploy.join("service.yaml");
    let config = deploy.join("pre/config.yaml");
    let diagnostics = |files: &[&Path]| -> String {
        let out = Command::new(crate::support::moto::python_binary())
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/yaml-ls-check.py"))
            .arg(&server)
            .args(files)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run scripts/yaml-ls-check.py");
        assert!(out.status.code().is_some_and(|c| c <= 1), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(diagnostics(&[&service, &config]), "", "the scaffolded files have problems");

    let text = std::fs::read_to_string(&service).unwrap();
    let broken = text.replace("port: 8080", "port: 0").replace("cpu: 256", "cpu: 300");
    std::fs::write(&service, &broken).unwrap();
    let env =
        std::fs::read_to_string(&config).unwrap().replace("secrets: []", "secrets:\n  - {key: a, value: 'vault:/x'}");
    std::fs::write(&config, env).unwrap();
    let found = diagnostics(&[&service, &config]);
    let lines: Vec<&str> = found.lines().collect();
    assert!(lines.iter().any(|l| l.contains("service.yaml:") && l.contains("256, 512, 1024")), "{found}");
    assert!(lines.iter().any(|l| l.contains("service.yaml:") && l.contains("minimum of 1")), "{found}");
    assert!(lines.iter().any(|l| l.contains("config.yaml:") && l.contains("does not match the pattern")), "{found}");

    let bare = dir.path().join("no-modeline.yaml");
    std::fs::write(&bare, broken.lines().skip(1).collect::<Vec<_>>().join("\n")).unwrap();
    assert_eq!(diagnostics(&[&bare]), "", "without the modeline no schema applies");
}
