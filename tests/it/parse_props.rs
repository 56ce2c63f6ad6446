//! Property tests: no input, however broken, makes parsing, checking or rendering panic,
//! and every diagnostic points at a real position (line and column from 1) of a real file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use berth::aws::{Verified, VerifyRequest};
use berth::core::config::Config;
use berth::core::desired::Desired;
use berth::core::diag::Diagnostic;
use berth::core::live::{LiveService, LiveState, LiveTaskDefinition};
use berth::core::memo::{Memo, Reused};
use berth::core::plan::Plan;
use berth::core::render::{Lookups, Target, render};
use berth::core::spec::{Repo, RepoFiles};
use berth::engine::reconcile::{Decider, Stage, decide};
use proptest::prelude::*;

const SERVICE_FILE: &str = "services/app/deploy/service.yaml";
const PRE_FILE: &str = "services/app/deploy/pre/config.yaml";
const PROD_FILE: &str = "services/app/deploy/prod/config.yaml";
const FIXTURE_CONFIG: &str = include_str!("../fixtures/berth.yaml");

const GOOD_SERVICE: &str = r#"type: service
name: app
spec:
  image: app
  resources: {cpu: 256, memory: 512}
  environment:
    - key: LEVEL
      value: '{{ .Variables["level"] }}'
"#;
const GOOD_ENV: &str = "variables:\n  - key: level\n    value: debug\n";

/// 256 cases (a few seconds); `PROPTEST_CASES=20000` for a deeper run.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn repo_files(service: &str, envs: &[(&str, &str)]) -> RepoFiles {
    let mut files = BTreeMap::from([(SERVICE_FILE.to_string(), service.to_string())]);
    for (path, text) in envs {
        files.insert((*path).to_string(), (*text).to_string());
    }
    RepoFiles { files, service_files: vec![SERVICE_FILE.to_string()] }
}

fn check_positions(diags: &[Diagnostic], files: &RepoFiles) -> Result<(), TestCaseError> {
    for d in diags {
        prop_assert!(d.pos.line >= 1, "line 0 in {d}");
        prop_assert!(d.pos.column >= 1, "column 0 in {d}");
        prop_assert!(files.files.contains_key(&*d.pos.file), "diagnostic for an unknown file: {d}");
        prop_assert!(!d.message.trim().is_empty(), "empty message at {}", d.pos);
    }
    Ok(())
}

/// Loads, checks, resolves every environment and renders what resolves; checks every
/// diagnostic on the way. Panics propagate and fail the case.
fn exercise(files: &RepoFiles) -> Result<(), TestCaseError> {
    let repo = Repo::load(files);
    let diags = repo.diagnostics();
    check_positions(&diags, files)?;
    let config = Config::parse("berth.yaml", FIXTURE_CONFIG).expect("the fixture config is valid");
    let lookups = Lookups {
        ssm_values: BTreeMap::from([("/x".to_string(), "x-value".to_string())]),
        secret_arns: BTreeMap::new(),
    };
    for service in &repo.services {
        for env in service.envs.keys() {
            match service.resolve(env) {
                Ok(spec) => {
                    let Some(env_config) = config.env(env) else {
                        continue;
                    };
                    let target = Target {
                        env: env_config,
                        aws: &config.aws,
                        commit: "0123456789abcdef0123456789abcdef01234567",
                        version: (env == "prod").then_some("1.2.3"),
                        lookups: &lookups,
                    };
                    match render(&spec, &target) {
                        Ok(desired) => {
                            for secret in desired.task_definition.container_definitions.iter().flat_map(|c| &c.secrets)
                            {
                                prop_assert!(
                                    secret.value_from.starts_with("arn:") || secret.value_from.starts_with('/'),
                                    "secret {} is not a reference: {}",
                                    secret.name,
                                    secret.value_from
                                );
                            }
                        }
                        Err(errs) => check_positions(&errs, files)?,
                    }
                }
                Err(errs) => {
                    prop_assert!(!errs.is_empty(), "resolve failed without a diagnostic");
                    check_positions(&errs, files)?;
                }
            }
        }
    }
    // What `diagnostics()` calls clean must resolve, and the other way round.
    if repo.broken.is_empty() && repo.services.iter().all(|s| !s.envs.is_empty()) {
        let all_resolve = repo.services.iter().all(|s| s.envs.keys().all(|e| s.resolve(e).is_ok()));
        prop_assert_eq!(diags.is_empty(), all_resolve, "diagnostics() and resolve() disagree: {:?}", diags);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// (a) arbitrary bytes and strings

fn lossy() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 0..400).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Random text biased towards YAML punctuation, so the parser gets past the first byte.
fn yamlish_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~\n\t]{0,300}",
        "([a-z_]{1,8}: ?|- |\\{|\\}|\\[|\\]|, |'|\"|\n  |\n|&a |\\*a|!!str |---\n|#|\\{\\{|\\}\\}|%YAML 1.2\n|\\? ){0,60}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_as_service_file(text in lossy()) {
        exercise(&repo_files(&text, &[(PRE_FILE, GOOD_ENV)]))?;
    }

    #[test]
    fn arbitrary_bytes_as_env_config(text in lossy()) {
        exercise(&repo_files(GOOD_SERVICE, &[(PRE_FILE, &text)]))?;
    }

    #[test]
    fn arbitrary_strings_everywhere(service in yamlish_text(), pre in yamlish_text(), prod in yamlish_text()) {
        exercise(&repo_files(&service, &[(PRE_FILE, &pre), (PROD_FILE, &prod)]))?;
    }

    #[test]
    fn arbitrary_strings_as_agent_config(text in yamlish_text()) {
        check_config(&text)?;
    }

    #[test]
    fn arbitrary_bytes_as_agent_config(text in lossy()) {
        check_config(&text)?;
    }
}

fn check_config(text: &str) -> Result<(), TestCaseError> {
    if let Err(errs) = Config::parse("berth.yaml", text) {
        prop_assert!(!errs.0.is_empty(), "Config::parse failed without a diagnostic");
        for d in &errs.0 {
            prop_assert!(d.pos.line >= 1 && d.pos.column >= 1, "bad position in {d}");
            prop_assert_eq!(&*d.pos.file, "berth.yaml");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// (b) YAML-shaped documents

#[derive(Clone, Debug)]
enum Node {
    Scalar(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

const SPEC_KEYS: &[&str] = &[
    "type",
    "name",
    "spec",
    "image",
    "resources",
    "cpu",
    "memory",
    "count",
    "autoscaling",
    "resource",
    "target",
    "min",
    "max",
    "port",
    "health",
    "metrics_port",
    "ingress",
    "external",
    "dependencies",
    "services",
    "data",
    "environment",
    "key",
    "value",
    "variables",
    "secrets",
    "overrides",
    "adopt",
];

const CONFIG_KEYS: &[&str] = &[
    "repo",
    "url",
    "token_env",
    "ssh_key",
    "poll_interval",
    "workdir",
    "discovery",
    "aws",
    "region",
    "endpoint_url",
    "account_id",
    "registry",
    "environments",
    "pre",
    "prod",
    "source",
    "branch",
    "tags",
    "prereleases",
    "cluster",
    "sync",
    "rollout",
    "wait",
    "timeout",
    "defaults",
    "execution_role",
    "task_role",
    "subnets",
    "security_groups",
    "assign_public_ip",
    "log_group",
    "metrics",
    "listen",
    "webhook",
    "secret_env",
    "concurrency",
    "cloudwatch",
    "namespace",
];

const SCALARS: &[&str] = &[
    r#"{{ .Variables["x"] }}"#,
    r#"{{ .Variables["y"] }}"#,
    r#"{{ .Variables["s"] }}"#,
    r#"pre-{{ .Variables["s"] }}"#,
    r#"{{ index .Variables "x" }}"#,
    "{{ .Variables.x }}",
    "{{ .Service }}-{{ .Env }}@{{ .Commit }} {{ .Version }}",
    "{{ .Nope }}",
    "{{",
    "}}",
    "{{}}",
    "{{ - }}",
    "{{- .Env -}}",
    r#"{{ .Variables[x] }}"#,
    r#"{{ .Variables["x" }}"#,
    r#"{{ .Variables[""] }}"#,
    "é{{ .Variables[\"é\"] }}ü",
    "{{ .Service }}\n{{ .Nope }}",
    "ssm:/x",
    "ssm:",
    "ssm:/a b",
    "ssm://x",
    "ssm:arn:aws:ssm:us-east-1:123456789012:parameter/x",
    "ssm:arn:aws:ssm:us-east-1:123456789012:parameter",
    "secretsmanager:a#b",
    "secretsmanager:a#",
    "secretsmanager:#b",
    "secretsmanager:",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:a-AbCdEf#k",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:a:k::",
    "arn:aws:ssm:us-east-1:123456789012:parameter/p/x",
    "arn:aws:ssm:us-east-1:123:parameter/x",
    "arn:",
    "service",
    "app",
    "other",
    "x",
    "s",
    "cpu",
    "memory",
    "/health",
    "/a b",
    "pre",
    "semver",
    "develop",
    "10m",
    "0s",
    "0.0.0.0:9090",
    "[::1]:0",
    "http://127.0.0.1:5000",
    "123456789012",
    "**/deploy/service.yaml",
    "[",
    "0",
    "1",
    "-1",
    "256",
    "512",
    "1024",
    "2048",
    "70",
    "100.5",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "1e999",
    "-0.0",
    ".nan",
    ".inf",
    "-.inf",
    "0x10",
    "0o17",
    "true",
    "false",
    "null",
    "~",
    "",
    " ",
    "a: b",
    "- x",
    "#",
    "'",
    "\"",
    "\\",
    "\t",
    "\u{0}",
    "\u{feff}",
    "😀",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(SPEC_KEYS).prop_map(str::to_string),
        3 => proptest::sample::select(CONFIG_KEYS).prop_map(str::to_string),
        1 => "[a-zA-Z_][a-zA-Z0-9_-]{0,10}",
        1 => proptest::sample::select(SCALARS).prop_map(str::to_string),
    ]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(SCALARS).prop_map(str::to_string),
        1 => "[ -~]{0,20}",
        1 => any::<String>(),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    scalar().prop_map(Node::Scalar).prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Node::List),
            proptest::collection::vec((key(), inner), 0..6).prop_map(Node::Map),
        ]
    })
}

/// Whether `s` can be written unquoted and read back as the same text (or number).
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || " ._/-+@$%()".contains(c))
        && !s.starts_with([' ', '-'])
        || s.parse::<f64>().is_ok() && !s.contains(' ') && !s.ends_with(' ')
}

/// How a scalar is written: plain when that reads back as the same text, else one of the
/// quoted or block styles picked by `style`.
fn write_scalar(out: &mut String, s: &str, style: u8, indent: usize) {
    if plain(s) && style % 16 != 1 {
        out.push_str(s);
        return;
    }
    match style % 3 {
        0 if !s.contains(['\n', '\r']) => {
            let _ = write!(out, "'{}'", s.replace('\'', "''"));
        }
        1 if s.contains('\n') && !s.starts_with([' ', '\n']) && !s.contains('\r') => {
            out.push_str("|-");
            for line in s.split('\n') {
                let _ = write!(out, "\n{:indent$}{line}", "", indent = indent + 2);
            }
        }
        // A JSON string is a YAML double-quoted scalar.
        _ => out.push_str(&serde_json::to_string(s).expect("strings serialize")),
    }
}

/// Block style, with flow style mixed in for some collections.
fn emit(node: &Node, indent: usize, style: &mut impl Iterator<Item = u8>, out: &mut String) {
    let flow = style.next().unwrap_or(0).is_multiple_of(5);
    match node {
        Node::Scalar(s) => write_scalar(out, s, style.next().unwrap_or(0), indent),
        Node::List(items) if items.is_empty() => out.push_str("[]"),
        Node::Map(entries) if entries.is_empty() => out.push_str("{}"),
        Node::List(_) | Node::Map(_) if flow => emit_flow(node, out),
        Node::List(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    let _ = write!(out, "\n{:indent$}", "");
                }
                out.push_str("- ");
                emit(item, indent + 2, style, out);
            }
        }
        Node::Map(entries) => {
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    let _ = write!(out, "\n{:indent$}", "");
                }
                write_scalar(out, k, style.next().unwrap_or(0) & 1, indent);
                out.push(':');
                match v {
                    Node::Scalar(_) => {
                        out.push(' ');
                        emit(v, indent, style, out);
                    }
                    Node::List(l) if !l.is_empty() => {
                        let _ = write!(out, "\n{:indent$}", "", indent = indent + 2);
                        emit(v, indent + 2, style, out);
                    }
                    Node::Map(m) if !m.is_empty() => {
                        let _ = write!(out, "\n{:indent$}", "", indent = indent + 2);
                        emit(v, indent + 2, style, out);
                    }
                    _ => {
                        out.push(' ');
                        emit(v, indent, style, out);
                    }
                }
            }
        }
    }
}

fn emit_flow(node: &Node, out: &mut String) {
    match node {
        Node::Scalar(s) if plain(s) => out.push_str(s),
        Node::Scalar(s) => out.push_str(&serde_json::to_string(s).expect("strings serialize")),
        Node::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                emit_flow(item, out);
            }
            out.push(']');
        }
        Node::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&serde_json::to_string(k).expect("strings serialize"));
                out.push_str(": ");
                emit_flow(v, out);
            }
            out.push('}');
        }
    }
}

fn to_yaml(node: &Node, styles: &[u8]) -> String {
    let mut style = styles.iter().copied().cycle();
    let mut out = String::new();
    emit(node, 0, &mut style, &mut out);
    out.push('\n');
    out
}

fn styles() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..32)
}

/// A service.yaml that is mostly right: the real skeleton with random values, random extra
/// fields and random subtrees, so the checks past the parser get exercised too.
fn service_doc() -> impl Strategy<Value = Node> {
    let scalar_or_node = prop_oneof![4 => scalar().prop_map(Node::Scalar), 1 => node()];
    let num = |choices: &'static [&'static str]| {
        prop_oneof![
            30 => Just(Node::Scalar(choices[0].to_string())),
            6 => proptest::sample::select(choices).prop_map(|s| Node::Scalar(s.to_string())),
            1 => scalar().prop_map(Node::Scalar),
        ]
    };
    let value = prop_oneof![
        6 => proptest::sample::select(GOOD_VALUES).prop_map(str::to_string),
        1 => scalar(),
    ];
    let env_key = prop_oneof![
        8 => proptest::sample::select(&["LOG_LEVEL", "DB_HOST", "A", "_X", "port"][..]).prop_map(str::to_string),
        1 => key(),
    ];
    let env_entry = (env_key, value, proptest::option::weighted(0.02, (key(), node()))).prop_map(|(k, v, extra)| {
        let key = if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') { k.to_uppercase() } else { k };
        let mut entries = vec![("key".to_string(), Node::Scalar(key)), ("value".to_string(), Node::Scalar(v))];
        entries.extend(extra);
        Node::Map(entries)
    });
    let autoscaling = (
        num(&["cpu", "memory", "disk"]),
        num(&["70", "0", "100", "100.5", ".nan", "-1"]),
        num(&["1", "0", "2", "10"]),
        num(&["1", "10", "0", "5001"]),
    )
        .prop_map(|(r, t, min, max)| {
            Node::Map(vec![("resource".into(), r), ("target".into(), t), ("min".into(), min), ("max".into(), max)])
        });
    let spec = (
        num(&["app", "app:1.0", "ghcr.io/acme/app@sha256:00", "a b", ""]),
        num(&["256", "512", "1024", "300", "0"]),
        num(&["512", "1024", "2048", "4096", "0"]),
        proptest::option::of(autoscaling),
        proptest::option::of(num(&["8080", "9090", "0", "65535"])),
        proptest::option::of(num(&["/health", "/a b", "health", "/$(reboot)"])),
        proptest::collection::vec(env_entry, 0..4),
        proptest::option::weighted(0.15, proptest::collection::vec(num(&["app", "other", "a b", "x"]), 0..3)),
        proptest::option::weighted(0.05, (key(), scalar_or_node)),
    )
        .prop_map(|(image, cpu, memory, autoscaling, port, health, env, deps, extra)| {
            let mut m = vec![
                ("image".to_string(), image),
                ("resources".to_string(), Node::Map(vec![("cpu".into(), cpu), ("memory".into(), memory)])),
            ];
            if let Some(a) = autoscaling {
                m.push(("autoscaling".into(), a));
            }
            if let Some(p) = port {
                m.push(("port".into(), p));
            }
            if let Some(h) = health {
                m.push(("health".into(), h));
            }
            if !env.is_empty() {
                m.push(("environment".into(), Node::List(env)));
            }
            if let Some(d) = deps {
                m.push(("dependencies".into(), Node::Map(vec![("services".into(), Node::List(d))])));
            }
            m.extend(extra);
            Node::Map(m)
        });
    (
        num(&["service", "job"]),
        num(&["app", "App", "other", ""]),
        spec,
        proptest::option::weighted(0.05, (key(), node())),
    )
        .prop_map(|(kind, name, spec, extra)| {
            let mut m = vec![("type".to_string(), kind), ("name".to_string(), name), ("spec".to_string(), spec)];
            m.extend(extra);
            Node::Map(m)
        })
}

/// Environment values that resolve against the variables `env_doc` usually defines.
const GOOD_VALUES: &[&str] = &[
    r#"{{ .Variables["x"] }}"#,
    r#"{{ .Variables["y"] }}"#,
    r#"{{ .Variables["s"] }}"#,
    r#"x={{ index .Variables "x" }}"#,
    "{{ .Service }}-{{ .Env }}@{{ .Commit }} {{ .Version }}",
    "debug",
    "",
    "é{{ .Env }}ü",
];

/// `overrides:`, usually a few real spec fields.
fn overrides() -> impl Strategy<Value = Node> {
    let field = prop_oneof![
        4 => (proptest::sample::select(&["256", "512", "1024"][..]), proptest::sample::select(&["512", "1024", "2048", "3000"][..]))
            .prop_map(|(c, m)| ("resources".to_string(), Node::Map(vec![("cpu".into(), Node::Scalar(c.into())), ("memory".into(), Node::Scalar(m.into()))]))),
        4 => proptest::sample::select(&["0", "1", "3", "-1"][..]).prop_map(|c| ("count".to_string(), Node::Scalar(c.into()))),
        4 => (proptest::sample::select(&["1", "2", "30"][..]), proptest::sample::select(&["2", "20", "1"][..]))
            .prop_map(|(lo, hi)| ("autoscaling".to_string(), Node::Map(vec![("min".into(), Node::Scalar(lo.into())), ("max".into(), Node::Scalar(hi.into()))]))),
        4 => proptest::sample::select(GOOD_VALUES).prop_map(|v| ("environment".to_string(), Node::List(vec![Node::Map(vec![("key".into(), Node::Scalar("EXTRA".into())), ("value".into(), Node::Scalar(v.into()))])]))),
        1 => (key(), node()),
    ];
    prop_oneof![
        8 => proptest::collection::vec(field, 0..3).prop_map(Node::Map),
        1 => node(),
    ]
}

const REFERENCES: &[&str] = &[
    "secretsmanager:a#b",
    "secretsmanager:prod/klaus",
    "ssm:/x",
    "ssm:/p/secret",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:a-AbCdEf#k",
    "arn:aws:ssm:us-east-1:123456789012:parameter/p/x",
];

/// A config.yaml that is mostly right: variables `x`/`y`, secret `s`, random overrides.
fn env_doc() -> impl Strategy<Value = Node> {
    let kv = |key: BoxedStrategy<String>, value: BoxedStrategy<String>| {
        (key, value)
            .prop_map(|(k, v)| Node::Map(vec![("key".into(), Node::Scalar(k)), ("value".into(), Node::Scalar(v))]))
    };
    let variable_key = prop_oneof![
        1 => proptest::sample::select(&["x", "y", "s", "bad key", ""][..]).prop_map(str::to_string),
        1 => key(),
    ]
    .boxed();
    let var_value = || {
        prop_oneof![
            4 => proptest::sample::select(&["debug", "1", "true", "ssm:/x", "é", "{{ .Env }}"][..]).prop_map(str::to_string),
            1 => scalar(),
        ]
        .boxed()
    };
    let secret_key = prop_oneof![8 => Just("s".to_string()), 1 => Just("x".to_string()), 1 => key()].boxed();
    let secret_value = prop_oneof![
        8 => proptest::sample::select(REFERENCES).prop_map(str::to_string),
        1 => scalar(),
    ]
    .boxed();
    (
        proptest::option::weighted(0.9, kv(Just("x".to_string()).boxed(), var_value())),
        proptest::option::weighted(0.9, kv(Just("y".to_string()).boxed(), var_value())),
        proptest::option::weighted(0.3, kv(variable_key, var_value())),
        proptest::collection::vec(kv(secret_key, secret_value), 0..2),
        proptest::option::weighted(0.4, overrides()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(x, y, more, secrets, overrides, adopt)| {
            let vars: Vec<Node> = x.into_iter().chain(y).chain(more).collect();
            let mut m = Vec::new();
            if !vars.is_empty() {
                m.push(("variables".to_string(), Node::List(vars)));
            }
            if !secrets.is_empty() {
                m.push(("secrets".to_string(), Node::List(secrets)));
            }
            if let Some(o) = overrides {
                m.push(("overrides".to_string(), o));
            }
            if let Some(a) = adopt {
                m.push(("adopt".to_string(), Node::Scalar(a.to_string())));
            }
            Node::Map(m)
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_yaml_trees(service in node(), pre in node(), prod in node(), s in styles()) {
        let files = repo_files(&to_yaml(&service, &s), &[(PRE_FILE, &to_yaml(&pre, &s)), (PROD_FILE, &to_yaml(&prod, &s))]);
        exercise(&files)?;
    }

    #[test]
    fn nearly_valid_documents(service in service_doc(), pre in env_doc(), prod in env_doc(), s in styles()) {
        let files = repo_files(&to_yaml(&service, &s), &[(PRE_FILE, &to_yaml(&pre, &s)), (PROD_FILE, &to_yaml(&prod, &s))]);
        exercise(&files)?;
    }

    /// A load that reuses the folders an earlier load parsed gives what a fresh load gives,
    /// checks across services (duplicate names, dependencies) included.
    #[test]
    fn reloading_after_a_change_equals_a_fresh_load(
        a in service_doc(), b in service_doc(), b_pre in env_doc(), b_pre2 in env_doc(), s in styles(),
    ) {
        let two = |b_pre: &Node| {
            let mut files = BTreeMap::new();
            files.insert("a/deploy/service.yaml".to_string(), to_yaml(&a, &s));
            files.insert("a/deploy/pre/config.yaml".to_string(), GOOD_ENV.to_string());
            files.insert("b/deploy/service.yaml".to_string(), to_yaml(&b, &s));
            files.insert("b/deploy/pre/config.yaml".to_string(), to_yaml(b_pre, &s));
            RepoFiles { files, service_files: vec!["a/deploy/service.yaml".into(), "b/deploy/service.yaml".into()] }
        };
        let (before, after) = (two(&b_pre), two(&b_pre2));
        let fresh = Repo::load(&after);
        let reused = Repo::load_reusing(&after, Some(&Repo::load(&before)));
        prop_assert_eq!(fresh.diagnostics(), reused.diagnostics());
        let resolved = |r: &Repo| {
            r.services.iter().map(|s| format!("{}: {:?}", s.name, s.resolve("pre"))).collect::<Vec<_>>()
        };
        prop_assert_eq!(resolved(&fresh), resolved(&reused));
        prop_assert_eq!(fresh.broken.len(), reused.broken.len());
    }

    /// The daemon's memo gives what a fresh resolve, render and plan give, after a change
    /// to one service's folder, to the looked-up values, or to the live state.
    #[test]
    fn memoised_cycles_equal_fresh_ones(
        b in service_doc(), b_pre in env_doc(), b_pre2 in env_doc(), s in styles(),
        new_lookups in any::<bool>(), converged_live in any::<bool>(),
    ) {
        // `app` does not change, but reads an SSM value that may; `b` is random and changes.
        let two = |b_pre: &Node| {
            let mut files = BTreeMap::new();
            files.insert("a/deploy/service.yaml".to_string(), GOOD_SERVICE.to_string());
            files.insert("a/deploy/pre/config.yaml".to_string(), "variables:\n  - key: level\n    value: ssm:/x\n".to_string());
            files.insert("b/deploy/service.yaml".to_string(), to_yaml(&b, &s));
            files.insert("b/deploy/pre/config.yaml".to_string(), to_yaml(b_pre, &s));
            RepoFiles { files, service_files: vec!["a/deploy/service.yaml".into(), "b/deploy/service.yaml".into()] }
        };
        let config = Config::parse("berth.yaml", FIXTURE_CONFIG).expect("the fixture config is valid");
        let env = config.env("pre").expect("pre");
        let lookups = |v: &str| Lookups {
            ssm_values: BTreeMap::from([("/x".to_string(), v.to_string())]),
            secret_arns: BTreeMap::new(),
        };
        let mut memo = Memo::default();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let mut aws = config.aws.clone();
        aws.account_id = Some("123456789012".into());
        // One cycle of the engine's decide phase, through the memo or afresh; returns each
        // service's outcome: its rendered state (when the memo still holds it), spec hash,
        // image and plan, or why it did not get that far.
        type Outcome = Result<(Option<std::sync::Arc<Desired>>, String, String, Plan), String>;
        let run = |memo: Option<&mut Memo>, repo: &Repo, lookups: &Lookups, live: &BTreeMap<String, LiveState>, reused: &mut Reused| {
            let commits: BTreeMap<String, String> = repo.services.iter().map(|s| (s.dir.clone(), commit.to_string())).collect();
            let mut decider = Decider::new(memo, env, aws.clone(), &commits, None);
            let verify = |req: &VerifyRequest| {
                let arns = req.secret_ids.iter().map(|id| (id.clone(), format!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:{id}-AbCdEf"))).collect();
                Verified::all_found(req, &lookups.ssm_values, &arns)
            };
            let table = decide(&mut decider, repo, verify, |n| live.get(n).cloned().unwrap_or_default());
            *reused = decider.reused;
            table.rows.into_iter().map(|(n, row)| match row.stage {
                Stage::Planned { rendering, plan, .. } => (n, Ok((rendering.desired, rendering.spec_hash, rendering.image, *plan))),
                _ => (n, Err(format!("{:?}", row.report.outcome))),
            }).collect::<Vec<(String, Outcome)>>()
        };
        let mut cycle = |repo: &Repo, lookups: &Lookups, live: &BTreeMap<String, LiveState>, reused: &mut Reused| {
            run(Some(&mut memo), repo, lookups, live, reused)
        };
        let fresh = |repo: &Repo, lookups: &Lookups, live: &BTreeMap<String, LiveState>| {
            run(None, repo, lookups, live, &mut Reused::default())
        };
        // Equal outcomes; a rendered state the memo let go must have had a plan with
        // nothing to do (nothing after planning reads it then).
        let same = |memoised: &[(String, Outcome)], fresh: &[(String, Outcome)]| -> Result<(), TestCaseError> {
            prop_assert_eq!(memoised.len(), fresh.len());
            for ((n, m), (fresh_n, f)) in memoised.iter().zip(fresh) {
                prop_assert_eq!(n, fresh_n);
                match (m, f) {
                    (Ok((md, mh, mi, mp)), Ok((fd, fh, fi, fp))) => {
                        prop_assert_eq!((mh, mi, format!("{mp:?}")), (fh, fi, format!("{fp:?}")));
                        match md {
                            Some(md) => prop_assert_eq!(md, fd.as_ref().expect("fresh renders have a state")),
                            None => prop_assert!(mp.actions.is_empty(), "{n}: let go of the state of a plan with actions"),
                        }
                    }
                    (m, f) => prop_assert_eq!(format!("{m:?}"), format!("{f:?}")),
                }
            }
            Ok(())
        };
        let before = Repo::load(&two(&b_pre));
        let first_lookups = lookups("one");
        let first = cycle(&before, &first_lookups, &BTreeMap::new(), &mut Reused::default());
        same(&first, &fresh(&before, &first_lookups, &BTreeMap::new()))?;
        // Live now runs what the first cycle rendered (or is still empty).
        let live: BTreeMap<String, LiveState> = if converged_live {
            first.iter().filter_map(|(n, o)| o.as_ref().ok().and_then(|(d, ..)| d.as_ref()).map(|d| (n.clone(), converged(d)))).collect()
        } else {
            BTreeMap::new()
        };
        let after = Repo::load_reusing(&two(&b_pre2), Some(&before));
        let second_lookups = if new_lookups { lookups("two") } else { first_lookups.clone() };
        let second = cycle(&after, &second_lookups, &live, &mut Reused::default());
        same(&second, &fresh(&after, &second_lookups, &live))?;
        // And once more with nothing changed: every plan with nothing to do is reused
        // (when names are unique); those with actions are planned again.
        let mut reused = Reused::default();
        let third = cycle(&after, &second_lookups, &live, &mut reused);
        same(&third, &fresh(&after, &second_lookups, &live))?;
        if after.services.len() == 2 && after.services[0].name != after.services[1].name {
            let idle = third.iter().filter(|(_, o)| o.as_ref().is_ok_and(|(.., p)| p.actions.is_empty())).count();
            prop_assert_eq!(reused.plans, idle);
        }
        // A live state that changed after a plan with nothing to do is planned against a
        // state rendered again, as a fresh cycle would.
        let drifted: BTreeMap<String, LiveState> = live.iter().map(|(n, l)| {
            let mut l = l.clone();
            if let Some(s) = l.service.as_mut() { s.settings.desired_count = Some(s.settings.desired_count.unwrap_or(0) + 7); }
            (n.clone(), l)
        }).collect();
        let fourth = cycle(&after, &second_lookups, &drifted, &mut Reused::default());
        same(&fourth, &fresh(&after, &second_lookups, &drifted))?;
    }

    #[test]
    fn random_yaml_trees_as_agent_config(doc in node(), s in styles()) {
        check_config(&to_yaml(&doc, &s))?;
    }
}

/// What AWS answers for a service converged to `desired`.
fn converged(desired: &Desired) -> LiveState {
    let arn = format!("arn:aws:ecs:eu-west-1:123456789012:task-definition/{}:1", desired.task_definition.family);
    let mut settings = (*desired.service).clone();
    settings.task_definition = arn.clone();
    LiveState {
        service: Some(LiveService {
            arn: format!("arn:aws:ecs:eu-west-1:123456789012:service/{}/{}", settings.cluster, settings.service_name),
            status: "ACTIVE".into(),
            settings,
            ..LiveService::default()
        }),
        task_definition: Some(std::sync::Arc::new(LiveTaskDefinition {
            arn,
            definition: (*desired.task_definition).clone(),
            extras: vec![],
        })),
        ..LiveState::default()
    }
}

/// The generator itself must produce YAML that parses, or (b) tests nothing past the parser.
#[test]
fn generated_documents_mostly_parse() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut parsed, mut resolved) = (0, 0);
    for _ in 0..200 {
        let service = service_doc().new_tree(&mut runner).unwrap().current();
        let pre = env_doc().new_tree(&mut runner).unwrap().current();
        let s = styles().new_tree(&mut runner).unwrap().current();
        let files = repo_files(&to_yaml(&service, &s), &[(PRE_FILE, &to_yaml(&pre, &s))]);
        let repo = Repo::load(&files);
        if std::env::var_os("BERTH_SHOW_GENERATED").is_some() {
            eprintln!("{}\n{:?}\n", files.files[SERVICE_FILE], repo.diagnostics());
        }
        if repo.broken.is_empty() {
            parsed += 1;
            if repo.services.iter().any(|svc| svc.resolve("pre").is_ok()) {
                resolved += 1;
            }
        }
    }
    eprintln!("{parsed} of 200 parsed, {resolved} resolved in pre");
    assert!(parsed >= 60, "only {parsed} of 200 generated service files parsed");
    assert!(resolved >= 10, "only {resolved} generated services resolved ({parsed} parsed)");
}
