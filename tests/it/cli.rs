//! The offline commands a new user meets first: `new service`, `schema`, `--help`.

use crate::support::{berth, stdout_ok};

#[test]
fn new_service_scaffolds_files_that_validate_and_a_ci_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().to_string_lossy().into_owned();
    let out = berth([
        "new",
        "service",
        "payments",
        "--envs",
        "pre,prod,qa",
        "--repo",
        &repo,
        "--autoscaling",
        "memory",
        "--depends-on",
        "",
    ]);
    stdout_ok("berth new service", &out);
    for f in [
        "services/payments/deploy/service.yaml",
        "services/payments/deploy/pre/config.yaml",
        "services/payments/deploy/prod/config.yaml",
        "services/payments/deploy/qa/config.yaml",
        ".github/workflows/payments.yml",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} was not created");
    }
    let out = berth(["validate", "--repo", &repo]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    // The workflow builds on develop with the service's own commit tag, and X.Y.Z on releases.
    let wf = std::fs::read_to_string(dir.path().join(".github/workflows/payments.yml")).unwrap();
    for needle in [
        "branches: [develop]",
        "tags: ['v*.*.*']",
        "paths: ['services/payments/**']",
        "git log -1 --first-parent --format=%H -- \"$SERVICE_DIR\" | cut -c1-12",
        "${GITHUB_REF_NAME#v}",
        "docker push",
    ] {
        assert!(wf.contains(needle), "workflow lacks `{needle}`:\n{wf}");
    }
    // A second run refuses to overwrite; --force does.
    let again = berth(["new", "service", "payments", "--repo", &repo]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("pass --force"));
    let bad = berth(["new", "service", "Payments!", "--repo", &repo]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid service name"));
}

#[test]
fn schema_describes_both_files_for_editors() {
    let out = berth(["schema"]);
    let v: serde_json::Value = serde_json::from_str(&stdout_ok("berth schema", &out)).unwrap();
    let service = &v["service.yaml"];
    let config = &v["config.yaml"];
    assert_eq!(service["title"], "berth service.yaml");
    for key in ["type", "name", "spec"] {
        assert!(service["properties"].get(key).is_some(), "service.yaml schema lacks {key}");
        assert!(service["required"].as_array().unwrap().iter().any(|r| r == key), "{key} not required");
    }
    for key in ["variables", "secrets", "overrides", "adopt"] {
        assert!(config["properties"].get(key).is_some(), "config.yaml schema lacks {key}");
    }
    assert_eq!(service["additionalProperties"], false, "unknown keys are errors in berth, so in the schema too");
    let one: serde_json::Value =
        serde_json::from_str(&stdout_ok("berth schema service", &berth(["schema", "service"]))).unwrap();
    assert_eq!(&one, service);
}

#[test]
fn every_command_has_help() {
    for cmd in ["validate", "render", "diff", "apply", "daemon", "status", "schema"] {
        let out = berth([cmd, "--help"]);
        let text = stdout_ok(&format!("berth {cmd} --help"), &out);
        assert!(text.contains("Usage: berth"), "{text}");
        assert!(text.contains("--log-format"), "berth {cmd} --help lacks the global --log-format:\n{text}");
    }
}
