//! The agent config's checks: the example, a good config, every problem with its position.

use super::*;

const GOOD: &str = r#"
repo:
  url: file:///tmp/repo
  poll_interval: 30s
aws:
  region: us-east-1
  account_id: "123456789012"
environments:
  pre:
    source: {branch: develop}
    cluster: pre
  prod:
    source: {tags: semver}
    cluster: prod
    sync: manual
    rollout: {wait: false, timeout: 2m}
"#;

#[test]
fn the_example_config_is_valid() {
    let c = Config::parse("config/berth.example.yaml", include_str!("../../../config/berth.example.yaml")).unwrap();
    assert_eq!(c.environments.len(), 2);
    assert_eq!(c.environments["prod"].source, Source::SemverTags { prereleases: false });
    assert_eq!(c.environments["pre"].rollout_poll, Duration::from_secs(5));
    assert_eq!(c.webhook.as_ref().unwrap().secret_env, "BERTH_WEBHOOK_SECRET");
    assert_eq!(c.aws.endpoint_url, None);
}

#[test]
fn parses_a_good_config() {
    let c = Config::parse("berth.yaml", GOOD).unwrap();
    assert_eq!(c.repo.poll_interval, Duration::from_secs(30));
    assert_eq!(c.environments["pre"].source, Source::Branch("develop".into()));
    assert_eq!(c.environments["prod"].sync, SyncMode::Manual);
    assert!(!c.environments["prod"].rollout_wait);
    assert_eq!(c.concurrency, 8);
    assert_eq!(c.metrics_listen.port(), 9090);
}

#[test]
fn reports_every_problem_with_its_position() {
    let bad = GOOD.replace("30s", "often").replace("cluster: prod", "cluster: prod\n    sink: x");
    let err = Config::parse("berth.yaml", &bad).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert!(err.0[0].to_string().starts_with("berth.yaml:15:5: unknown field `sink`"), "{err}");
    let bad = GOOD.replace("30s", "often").replace("semver", "calver");
    let err = Config::parse("berth.yaml", &bad).unwrap_err().to_string();
    assert!(err.contains("berth.yaml:4:18: invalid duration `often`"), "{err}");
    assert!(err.contains("berth.yaml:13:20: unknown tag scheme `calver`"), "{err}");
}
