//! The pure core at monorepo scale: 1,000 services, each with a `service.yaml` and `pre` and
//! `prod` configs (templates, variables, `ssm:` variables, secrets, autoscaling on some,
//! dependencies), parsed, checked and rendered entirely in memory.
//!
//! `cargo bench --bench render`; figures are recorded in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use berth::aws::Verified;
use berth::core::config::Config;
use berth::core::desired::Desired;
use berth::core::diff::NormContext;
use berth::core::live::{LivePolicy, LiveScalableTarget, LiveService, LiveState, LiveTaskDefinition};
use berth::core::memo::{Memo, Reused};
use berth::core::plan::plan;
use berth::core::render::{Lookups, Target, render};
use berth::core::spec::{Repo, RepoFiles};
use berth::engine::Outcome;
use berth::engine::reconcile::{Decider, decide};
use criterion::{Criterion, criterion_group, criterion_main};

const SERVICES: usize = 1_000;
const ENVS: [&str; 2] = ["pre", "prod"];
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const CONFIG: &str = include_str!("../tests/fixtures/berth.yaml");

fn name(i: usize) -> String {
    format!("svc-{i:04}")
}

fn service_yaml(i: usize) -> String {
    let mut s = format!(
        r#"# Service {i}: generated for the benchmark.
type: service
name: {name}
spec:
  image: {name}
  resources: {{cpu: 512, memory: 1024}}
  count: 2
  port: 8080
  health: /health
  metrics_port: 9090
  ingress: {{external: {external}}}
"#,
        name = name(i),
        external = i.is_multiple_of(7),
    );
    if i.is_multiple_of(3) {
        s.push_str("  autoscaling:\n    resource: cpu\n    target: 70\n    min: 1\n    max: 10\n");
    }
    // Chains of ten: svc-0001 depends on svc-0000, ..., svc-0009 on svc-0008.
    if !i.is_multiple_of(10) {
        s.push_str(&format!(
            "  dependencies:\n    services: [{}]\n    data: [{}-rds, {}-cache]\n",
            name(i - 1),
            name(i),
            name(i)
        ));
    }
    s.push_str(
        r#"  environment:
    - key: LOG_LEVEL
      value: '{{ .Variables["logLevel"] }}'
    - key: DB_HOST
      value: '{{ index .Variables "dbHost" }}'
    - key: DB_URL
      value: 'postgres://{{ .Variables["dbHost"] }}:5432/{{ .Service }}_{{ .Env }}'
    - key: RELEASE
      value: '{{ .Service }}@{{ .Commit }} {{ .Version }}'
    - key: FEATURE_FLAGS
      value: '{{ .Variables.flags }}'
    - key: API_KEY
      value: '{{ .Variables["apiKey"] }}'
    - key: DB_PASSWORD
      value: '{{ .Variables["dbPassword"] }}'
    - key: STATIC
      value: plain text
"#,
    );
    s
}

fn env_yaml(i: usize, env: &str) -> String {
    let name = name(i);
    let mut s = format!(
        r#"variables:
  - key: logLevel
    value: {level}
  - key: dbHost
    value: ssm:/{env}/{name}/db-host
  - key: flags
    value: "a,b,c"
secrets:
  - key: apiKey
    value: secretsmanager:{env}/{name}#api_key
  - key: dbPassword
    value: ssm:/{env}/{name}/db-password
"#,
        level = if env == "prod" { "info" } else { "debug" },
    );
    if env == "prod" {
        s.push_str("overrides:\n  resources: {cpu: 1024, memory: 2048}\n");
        if i.is_multiple_of(3) {
            s.push_str("  autoscaling: {min: 2, max: 20}\n");
        } else {
            s.push_str("  count: 3\n");
        }
    }
    s
}

fn repo_files() -> RepoFiles {
    let mut files = RepoFiles::default();
    for i in 0..SERVICES {
        let dir = format!("services/{}/deploy", name(i));
        let service = format!("{dir}/service.yaml");
        files.files.insert(service.clone(), service_yaml(i));
        for env in ENVS {
            files.files.insert(format!("{dir}/{env}/config.yaml"), env_yaml(i, env));
        }
        files.service_files.push(service);
    }
    files
}

fn lookups() -> Lookups {
    let (mut ssm_values, mut secret_arns) = (BTreeMap::new(), BTreeMap::new());
    for i in 0..SERVICES {
        for env in ENVS {
            ssm_values.insert(format!("/{env}/{}/db-host", name(i)), format!("db.{env}.internal"));
            let id = format!("{env}/{}", name(i));
            secret_arns.insert(id.clone(), format!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:{id}-AbCdEf"));
        }
    }
    Lookups { ssm_values, secret_arns }
}

/// What AWS would answer for a service converged to `desired`.
fn converged(desired: &Desired) -> LiveState {
    let family = &desired.task_definition.family;
    let arn = format!("arn:aws:ecs:eu-west-1:123456789012:task-definition/{family}:1");
    let mut settings = (*desired.service).clone();
    settings.task_definition = arn.clone();
    let service = LiveService {
        arn: format!("arn:aws:ecs:eu-west-1:123456789012:service/{}/{}", settings.cluster, settings.service_name),
        status: "ACTIVE".into(),
        settings,
        ..LiveService::default()
    };
    LiveState {
        service: Some(service),
        task_definition: Some(Arc::new(LiveTaskDefinition {
            arn,
            definition: (*desired.task_definition).clone(),
            extras: vec![],
        })),
        recent_revisions: Vec::new(),
        scalable_target: desired
            .scaling
            .as_ref()
            .map(|s| LiveScalableTarget { target: s.scalable_target.clone(), role_arn: None }),
        policies: desired
            .scaling
            .iter()
            .map(|s| LivePolicy { arn: "arn:aws:autoscaling:policy".into(), policy: s.scaling_policy.clone() })
            .collect(),
        held: None,
        pinned: None,
        paused: None,
        routing: None,
        dashboard: None,
    }
}

fn ctx() -> NormContext {
    NormContext { partition: "aws".into(), region: "eu-west-1".into(), account_id: Some("123456789012".into()) }
}

/// What a service of the fixture config renders against in `env`.
fn target<'a>(config: &'a Config, env: &str, lookups: &'a Lookups) -> Target<'a> {
    Target {
        env: config.env(env).expect("the fixture config has pre and prod"),
        aws: &config.aws,
        commit: COMMIT,
        version: (env == "prod").then_some("1.4.2"),
        lookups,
    }
}

/// The commit of every service folder of `repo`.
fn commits(repo: &Repo) -> BTreeMap<String, String> {
    repo.services.iter().map(|s| (s.dir.clone(), COMMIT.to_string())).collect()
}

/// The engine's decide phase for every service of `repo` in both environments, against
/// `live` (by service and environment), through each environment's memo when given:
/// exactly what the daemon runs between its lookups. Returns how many plans are in sync
/// and how much the memos reused.
fn decide_all(
    repo: &Repo,
    config: &Config,
    lookups: &Lookups,
    live: &BTreeMap<(String, &str), LiveState>,
    mut memos: Option<&mut [Memo; 2]>,
) -> (usize, Reused) {
    let commits = commits(repo);
    let mut aws = config.aws.clone();
    aws.account_id.get_or_insert_with(|| "123456789012".into());
    let mut in_sync = 0;
    let mut reused = Reused::default();
    for (i, env) in ENVS.into_iter().enumerate() {
        let env_config = config.env(env).expect("the fixture config has pre and prod");
        let version = (env == "prod").then_some("1.4.2");
        let memo = memos.as_deref_mut().map(|m| &mut m[i]);
        let mut decider = Decider::new(memo, env_config, aws.clone(), &commits, version);
        let table = decide(
            &mut decider,
            repo,
            |req| Verified::all_found(req, &lookups.ssm_values, &lookups.secret_arns),
            |name| live[&(name.to_string(), env)].clone(),
        );
        for row in table.rows.values() {
            assert!(matches!(row.report.outcome, Outcome::Synced | Outcome::OutOfSync), "{:?}", row.report.outcome);
            in_sync += usize::from(row.report.outcome == Outcome::Synced);
        }
        let r = decider.reused;
        (reused.resolves, reused.renders, reused.plans) =
            (reused.resolves + r.resolves, reused.renders + r.renders, reused.plans + r.plans);
    }
    (in_sync, reused)
}

/// Resolve, render, diff and plan every service afresh; returns how many plans are in sync.
fn cycle(repo: &Repo, config: &Config, lookups: &Lookups, live: &BTreeMap<(String, &str), LiveState>) -> usize {
    decide_all(repo, config, lookups, live, None).0
}

/// [`cycle`] as the daemon runs it: through each environment's [`Memo`], which reuses the
/// resolve, render and plan of a service whose folder, inputs and live state are the
/// same as in the memo's last cycle.
fn memo_cycle(
    repo: &Repo,
    config: &Config,
    lookups: &Lookups,
    live: &BTreeMap<(String, &str), LiveState>,
    memos: &mut [Memo; 2],
) -> (usize, Reused) {
    decide_all(repo, config, lookups, live, Some(memos))
}

/// A copy of `files` in which `k` services' `service.yaml` changed (one more environment
/// variable), as a commit touching `k` folders would.
fn change_services(files: &RepoFiles, k: usize) -> RepoFiles {
    let mut out = files.clone();
    for i in (0..SERVICES).step_by(SERVICES / k).take(k) {
        let path = format!("services/{}/deploy/service.yaml", name(i));
        let text = out.files.get_mut(&path).expect("generated");
        *text = text.replacen("  environment:\n", "  environment:\n    - {key: CHANGED, value: \"yes\"}\n", 1);
    }
    out
}

/// Load, resolve and render everything; returns how many renders succeeded.
fn render_all(files: &RepoFiles, config: &Config, lookups: &Lookups) -> usize {
    let repo = Repo::load(files);
    let mut rendered = 0;
    for service in &repo.services {
        for env in ENVS {
            let spec = service.resolve(env).expect("generated services are valid");
            let target = target(config, env, lookups);
            let desired = render(&spec, &target).expect("generated services render");
            black_box(&desired);
            rendered += 1;
        }
    }
    rendered
}

fn bench(c: &mut Criterion) {
    let files = repo_files();
    let config = Config::parse("tests/fixtures/berth.yaml", CONFIG).expect("the fixture config is valid");
    let lookups = lookups();

    // The generated repository must be clean, or the benchmark measures error paths.
    let repo = Repo::load(&files);
    assert_eq!(repo.services.len(), SERVICES);
    let diags = repo.diagnostics();
    assert!(diags.is_empty(), "generated repository has problems: {:?}", &diags[..diags.len().min(5)]);
    assert_eq!(render_all(&files, &config, &lookups), SERVICES * ENVS.len());
    let bytes: usize = files.files.values().map(String::len).sum();
    eprintln!("{} files, {} KiB of YAML", files.files.len(), bytes / 1024);

    // Live state equal to git for every service and environment: diff + plan must find
    // nothing to do (the steady state of a poll).
    let mut live = BTreeMap::new();
    for service in &repo.services {
        for env in ENVS {
            let spec = service.resolve(env).expect("valid");
            let target = target(&config, env, &lookups);
            live.insert((service.name.clone(), env), converged(&render(&spec, &target).expect("renders")));
        }
    }
    assert_eq!(cycle(&repo, &config, &lookups, &live), SERVICES * ENVS.len(), "a converged service planned work");
    let changed = change_services(&files, 10);
    let reloaded = Repo::load_reusing(&changed, Some(&repo));
    assert_eq!(cycle(&reloaded, &config, &lookups, &live), (SERVICES - 10) * ENVS.len());

    // The memo: a first cycle fills it, an unchanged second reuses every step, and a
    // commit changing 10 services redoes exactly those 20 pairs.
    let mut memos = [Memo::default(), Memo::default()];
    assert_eq!(memo_cycle(&repo, &config, &lookups, &live, &mut memos).0, SERVICES * ENVS.len());
    let (in_sync, reused) = memo_cycle(&repo, &config, &lookups, &live, &mut memos);
    assert_eq!((in_sync, reused.plans), (SERVICES * ENVS.len(), SERVICES * ENVS.len()));
    let (in_sync, reused) = memo_cycle(&reloaded, &config, &lookups, &live, &mut memos);
    assert_eq!((in_sync, reused.resolves), ((SERVICES - 10) * ENVS.len(), (SERVICES - 10) * ENVS.len()));
    assert_eq!(reused.plans, (SERVICES - 10) * ENVS.len());

    let mut group = c.benchmark_group("1000 services");
    group.sample_size(20).measurement_time(Duration::from_secs(15));
    group.bench_function("load + resolve + render + diff + plan x 2 envs", |b| {
        b.iter(|| black_box(cycle(&Repo::load(black_box(&files)), &config, &lookups, &live)))
    });
    group.bench_function("reload after 10 services changed + resolve + render + diff + plan x 2 envs", |b| {
        b.iter(|| {
            let repo = Repo::load_reusing(black_box(&changed), Some(&repo));
            black_box(cycle(&repo, &config, &lookups, &live))
        })
    });
    // The daemon's path for a commit: each iteration loads the other of the two commits
    // (10 services differ) reusing the last load, and reconciles through the memo.
    group.bench_function(
        "daemon: reload after 10 services changed + memoised resolve + render + diff + plan x 2 envs",
        |b| {
            let commits = [&files, &changed];
            let mut current = Repo::load_reusing(&changed, Some(&repo));
            let mut memos = [Memo::default(), Memo::default()];
            memo_cycle(&current, &config, &lookups, &live, &mut memos);
            let mut next = 0;
            b.iter(|| {
                current = Repo::load_reusing(black_box(commits[next]), Some(&current));
                next = 1 - next;
                black_box(memo_cycle(&current, &config, &lookups, &live, &mut memos))
            })
        },
    );
    group.bench_function("daemon: poll with nothing changed, memoised x 2 envs", |b| {
        let mut memos = [Memo::default(), Memo::default()];
        memo_cycle(&repo, &config, &lookups, &live, &mut memos);
        b.iter(|| black_box(memo_cycle(&repo, &config, &lookups, &live, &mut memos)))
    });
    group.bench_function("reload after 10 services changed", |b| {
        b.iter(|| black_box(Repo::load_reusing(black_box(&changed), Some(&repo))))
    });
    let specs: Vec<_> = repo.services.iter().flat_map(|s| ENVS.map(|e| s.resolve(e).expect("valid"))).collect();
    let desired: Vec<_> = specs
        .iter()
        .map(|spec| {
            let target = target(&config, &spec.env, &lookups);
            (spec.name.clone(), spec.env.clone(), render(spec, &target).expect("renders"))
        })
        .collect();
    let ctx = ctx();
    group.bench_function("diff + plan only (2,000 converged)", |b| {
        b.iter(|| {
            for (name, env, d) in &desired {
                let state = &live[&(name.clone(), if env == "pre" { "pre" } else { "prod" })];
                black_box(plan(d, state, false, &ctx));
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("1000 services (parts)");
    group.sample_size(20).measurement_time(Duration::from_secs(15));
    group.bench_function("load + diagnostics", |b| {
        b.iter(|| {
            let repo = Repo::load(black_box(&files));
            black_box(repo.diagnostics())
        })
    });
    group.bench_function("load + resolve + render x 2 envs", |b| {
        b.iter(|| black_box(render_all(black_box(&files), &config, &lookups)))
    });
    group.bench_function("load only", |b| b.iter(|| black_box(Repo::load(black_box(&files)))));
    group.bench_function("render only (2,000 resolved specs)", |b| {
        b.iter(|| {
            for spec in &specs {
                black_box(render(spec, &target(&config, &spec.env, &lookups)).expect("renders"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
