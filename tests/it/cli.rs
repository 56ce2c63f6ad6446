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
    // Each file names its schema for the YAML language server, by a path that exists.
    for (f, schema) in [
        ("services/payments/deploy/service.yaml", "service.schema.json"),
        ("services/payments/deploy/qa/config.yaml", "config.schema.json"),
    ] {
        let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
        let first = text.lines().next().unwrap();
        let rel = first.strip_prefix("# yaml-language-server: $schema=").unwrap_or_else(|| panic!("{f}: {first}"));
        assert!(rel.ends_with(schema), "{f}: {rel}");
        let target = dir.path().join(f).parent().unwrap().join(rel);
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
        assert!(json.get("$schema").is_some() || json.get("properties").is_some(), "{}", target.display());
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
    assert_eq!(service["title"], "berth service spec (deploy/service.yaml)");
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

/// Usage errors exit 64, never 2 (which means drift for `diff`); help and version exit 0,
/// on every command.
#[test]
fn usage_errors_exit_64_and_every_command_has_a_version() {
    for args in [vec!["diff", "--outptu", "json"], vec!["bogus"], vec!["apply"], vec!["status", "--output", "yaml"]] {
        let out = berth(&args);
        assert_eq!(out.status.code(), Some(64), "berth {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    let out = berth(["diff", "--outptu", "json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("a similar argument exists: '--output'"));
    for cmd in ["validate", "diff", "apply", "daemon", "status", "schema"] {
        let text = stdout_ok(&format!("berth {cmd} --version"), &berth([cmd, "--version"]));
        assert!(text.starts_with(&format!("berth-{cmd} ")), "{text}");
    }
}

/// Shell completions for the four shells and the man page, generated from the command line.
#[test]
fn completions_and_the_man_page() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef berth"),
        ("fish", "complete -c berth"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let text = stdout_ok(&format!("berth completions {shell}"), &berth(["completions", shell]));
        assert!(text.contains(marker), "{shell}: {text}");
        assert!(text.contains("daemon"), "{shell}: no subcommands");
    }
    let page = stdout_ok("berth man", &berth(["man"]));
    assert!(page.contains(".TH berth 1"), "{page}");
    for section in ["validate", "diff", "apply", "daemon", "status", "completions"] {
        assert!(page.contains(section), "the man page does not mention {section}");
    }
}

/// `validate --output json`: every problem as `{file, line, column, message}`, and exit 1.
#[test]
fn validate_prints_json_on_request() {
    let repo = crate::support::fixture("invalid/bad-cpu-value");
    let out = berth(["validate", "--repo", &repo.to_string_lossy(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let problems: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let first = &problems[0];
    assert!(first["file"].as_str().unwrap().ends_with("service.yaml"), "{problems:#}");
    assert!(first["line"].as_u64().unwrap() > 0 && first["column"].as_u64().unwrap() > 0, "{problems:#}");
    assert!(first["message"].as_str().unwrap().contains("cpu"), "{problems:#}");
}

/// `berth status` reads a chunked answer (what a proxy in front of the daemon may send).
#[test]
fn status_reads_a_chunked_answer() {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let body = r#"{"environments":[{"name":"pre","ref":"refs/heads/develop","commit":"abc","services":[{"name":"web","sync":"Synced","health":"Healthy","commit":"abc","task_definition":"arn:aws:ecs:us-east-1:1:task-definition/web-pre:3","drift":[],"last_error":null}]}]}"#;
        let (a, b) = body.split_at(40);
        let mut out = conn;
        write!(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        for part in [a, b] {
            write!(out, "{:x}\r\n{part}\r\n", part.len()).unwrap();
        }
        write!(out, "0\r\n\r\n").unwrap();
    });
    let out = berth(["status", "--url", &format!("http://127.0.0.1:{port}")]);
    server.join().unwrap();
    let table = stdout_ok("berth status", &out);
    assert!(table.lines().any(|l| l.starts_with("pre ") && l.contains("web") && l.contains("web-pre:3")), "{table}");
}

/// `--external --domain` scaffold the public route (the Lemon CLI's `-external -domain`); a
/// bad domain is refused before anything is written.
#[test]
fn new_service_scaffolds_the_external_route() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().to_string_lossy().into_owned();
    let out = berth(["new", "service", "pay", "--repo", &repo, "--external", "--domain", "pay.example.com"]);
    stdout_ok("berth new service --external --domain", &out);
    let spec = std::fs::read_to_string(dir.path().join("services/pay/deploy/service.yaml")).unwrap();
    assert!(spec.contains("  ingress: {external: true, host: pay.example.com}"), "{spec}");
    let out = berth(["validate", "--repo", &repo]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let bad = berth(["new", "service", "shop", "--repo", &repo, "--external", "--domain", "Shop_Example"]);
    assert_eq!(bad.status.code(), Some(1), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid --domain `Shop_Example`"));
    assert!(!dir.path().join("services/shop").exists());
}
