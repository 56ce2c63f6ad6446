//! The pure core at monorepo scale: 1,000 services, each with a `service.yaml` and `pre` and
//! `prod` configs (templates, variables, `ssm:` variables, secrets, autoscaling on some,
//! dependencies), parsed, checked and rendered entirely in memory.
//!
//! `cargo bench --bench render`; figures are recorded in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use berth::core::config::Config;
use berth::core::render::{Lookups, Target, render};
use berth::core::spec::{Repo, RepoFiles};
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
    let mut ssm_values = BTreeMap::new();
    for i in 0..SERVICES {
        for env in ENVS {
            ssm_values.insert(format!("/{env}/{}/db-host", name(i)), format!("db.{env}.internal"));
        }
    }
    Lookups { ssm_values, secret_arns: BTreeMap::new() }
}

/// Load, resolve and render everything; returns how many renders succeeded.
fn render_all(files: &RepoFiles, config: &Config, lookups: &Lookups) -> usize {
    let repo = Repo::load(files);
    let mut rendered = 0;
    for service in &repo.services {
        for env in ENVS {
            let spec = service.resolve(env).expect("generated services are valid");
            let env_config = config.env(env).expect("the fixture config has pre and prod");
            let target = Target {
                env: env_config,
                aws: &config.aws,
                commit: COMMIT,
                version: (env == "prod").then_some("1.4.2"),
                lookups,
            };
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

    let mut group = c.benchmark_group("1000 services");
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
    // The parts, to see where the time goes.
    group.bench_function("load only", |b| b.iter(|| black_box(Repo::load(black_box(&files)))));
    let specs: Vec<_> = repo.services.iter().flat_map(|s| ENVS.map(|e| s.resolve(e).expect("valid"))).collect();
    group.bench_function("render only (2,000 resolved specs)", |b| {
        b.iter(|| {
            for spec in &specs {
                let env = config.env(&spec.env).expect("env");
                let target = Target {
                    env,
                    aws: &config.aws,
                    commit: COMMIT,
                    version: (spec.env == "prod").then_some("1.4.2"),
                    lookups: &lookups,
                };
                black_box(render(spec, &target).expect("renders"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
