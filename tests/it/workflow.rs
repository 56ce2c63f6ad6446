//! The CI workflow `berth new service` writes: for each `--image` form it handles, the push
//! target is the image berth deploys, every action is pinned by commit, and actionlint (the
//! venv's, with the venv's shellcheck on PATH so `run:` scripts are checked too) finds
//! nothing; the forms it cannot handle are refused before anything is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth::core::render::image_reference;

use crate::support::{berth, stdout_ok, venv_tool_or_skip};

/// Scaffolds service `pay` into `repo` with `args`; returns the workflow and the `image:`
/// of its service.yaml.
fn scaffold(repo: &Path, args: &[&str]) -> (String, String) {
    let mut all = vec!["new", "service", "pay", "--repo", repo.to_str().unwrap()];
    all.extend(args);
    stdout_ok("berth new service", &berth(&all));
    let workflow = std::fs::read_to_string(repo.join(".github/workflows/pay.yml")).unwrap();
    let spec = std::fs::read_to_string(repo.join("services/pay/deploy/service.yaml")).unwrap();
    let image = spec.lines().find_map(|l| l.trim().strip_prefix("image: ")).unwrap().to_string();
    (workflow, image)
}

/// The `image="…"` line of the push step with the workflow's variables filled in.
fn pushed(workflow: &str, vars: &[(&str, &str)]) -> String {
    let line = workflow.lines().find_map(|l| l.trim().strip_prefix("image=")).expect("no image= line");
    let mut out = line.trim_matches('"').to_string();
    for (k, v) in vars {
        out = out.replace(&format!("${k}"), v);
    }
    out
}

fn env_value<'a>(workflow: &'a str, key: &str) -> &'a str {
    let prefix = format!("  {key}: ");
    workflow.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no env {key}"))
}

/// Every `uses:` is `owner/name@<40 hex> # vX.Y.Z`.
fn assert_pinned(workflow: &str) {
    let uses: Vec<&str> = workflow.lines().filter_map(|l| l.split_once("uses: ").map(|(_, u)| u)).collect();
    assert!(!uses.is_empty());
    for u in uses {
        let (action, version) = u.split_once(" # ").unwrap_or_else(|| panic!("no version comment: {u}"));
        let (_, sha) = action.split_once('@').unwrap();
        assert!(sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()), "not pinned by commit: {u}");
        let v = version.strip_prefix('v').unwrap_or("");
        assert!(v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u32>().is_ok()), "{u}");
    }
}

#[test]
fn the_workflow_pushes_what_berth_deploys_and_passes_actionlint() {
    let dir = tempfile::tempdir().unwrap();
    let tag = "0123456789ab";
    let mut workflows: Vec<PathBuf> = Vec::new();

    // A bare repository name: ECR of the CI role's account; berth prepends aws.registry.
    let repo = dir.path().join("bare");
    let (wf, image) = scaffold(&repo, &["--image", "team/pay"]);
    assert_eq!(image, "team/pay");
    assert_pinned(&wf);
    for needle in [
        "aws-actions/amazon-ecr-login@",
        "role-to-assume: ${{ vars.BERTH_CI_ROLE_ARN }}",
        "aws-region: ${{ vars.AWS_REGION }}",
        "id-token: write",
        "REGISTRY: ${{ steps.ecr.outputs.registry }}",
    ] {
        assert!(wf.contains(needle), "lacks `{needle}`:\n{wf}");
    }
    let registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let vars = [("REGISTRY", registry), ("ECR_REPOSITORY", env_value(&wf, "ECR_REPOSITORY")), ("TAG", tag)];
    assert_eq!(pushed(&wf, &vars), image_reference(&image, Some(registry), tag));
    workflows.push(repo.join(".github/workflows/pay.yml"));

    // A full ECR reference: that registry and region, whatever aws.registry says.
    let repo = dir.path().join("ecr");
    let full = "222222222222.dkr.ecr.eu-west-1.amazonaws.com/pay";
    let (wf, image) = scaffold(&repo, &["--image", full]);
    assert_eq!(image, full);
    assert_pinned(&wf);
    for needle in ["aws-region: eu-west-1", "registries: \"222222222222\"", "id-token: write"] {
        assert!(wf.contains(needle), "lacks `{needle}`:\n{wf}");
    }
    assert!(!wf.contains("vars.AWS_REGION"), "{wf}");
    let vars = [("IMAGE", env_value(&wf, "IMAGE")), ("TAG", tag)];
    assert_eq!(pushed(&wf, &vars), format!("{full}:{tag}"));
    assert_eq!(pushed(&wf, &vars), image_reference(&image, Some(registry), tag));
    workflows.push(repo.join(".github/workflows/pay.yml"));

    // GitHub's registry: the workflow's token, packages: write, no AWS.
    let repo = dir.path().join("ghcr");
    let (wf, image) = scaffold(&repo, &["--image", "ghcr.io/acme/pay"]);
    assert_eq!(image, "ghcr.io/acme/pay");
    assert_pinned(&wf);
    for needle in
        ["docker/login-action@", "registry: ghcr.io", "password: ${{ secrets.GITHUB_TOKEN }}", "packages: write"]
    {
        assert!(wf.contains(needle), "lacks `{needle}`:\n{wf}");
    }
    assert!(!wf.contains("aws-actions/") && !wf.contains("id-token"), "{wf}");
    let vars = [("IMAGE", env_value(&wf, "IMAGE")), ("TAG", tag)];
    assert_eq!(pushed(&wf, &vars), image_reference(&image, Some(registry), tag));
    workflows.push(repo.join(".github/workflows/pay.yml"));

    // Least privilege: nothing at the workflow level, the job asks for what it uses.
    for wf in &workflows {
        let text = std::fs::read_to_string(wf).unwrap();
        assert!(text.contains("\npermissions: {}\n"), "{text}");
        assert!(text.contains("persist-credentials: false"), "{text}");
    }

    let Some(actionlint) = venv_tool_or_skip("actionlint", "the_workflow_pushes_what_berth_deploys…") else {
        return;
    };
    // actionlint runs shellcheck on `run:` scripts when it finds it on PATH: the venv's.
    let bin = actionlint.parent().unwrap();
    let shellcheck = bin.join("shellcheck");
    assert!(shellcheck.is_file() || std::env::var_os("CI").is_none(), "shellcheck is not beside actionlint");
    let path = std::env::join_paths(
        std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let out = Command::new(&actionlint)
        .arg("-shellcheck")
        .arg(if shellcheck.is_file() { shellcheck.as_os_str() } else { "shellcheck".as_ref() })
        .args(&workflows)
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run actionlint");
    assert!(
        out.status.success(),
        "actionlint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn images_the_workflow_cannot_push_are_refused_before_anything_is_written() {
    for (image, says) in [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/pay:1.2.3", "berth sets the tag itself"),
        ("pay:1.2.3", "pass the repository alone, e.g. `--image pay`"),
        ("ghcr.io/acme/pay@sha256:0000", "berth sets the tag itself"),
        ("docker.io/library/pay", "for `docker.io`"),
        ("quay.io/acme/pay", "`ghcr.io/OWNER/NAME`"),
        ("localhost:5000/pay", "for `localhost:5000`"),
        ("ghcr.io/pay", "`ghcr.io/OWNER/NAME`"),
        ("Pay", "invalid repository `Pay`"),
        ("team//pay", "invalid repository"),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/Pay", "invalid repository `Pay`"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = berth(["new", "service", "pay", "--repo", dir.path().to_str().unwrap(), "--image", image]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "--image {image}: {stderr}");
        assert!(stderr.contains(says), "--image {image}: expected `{says}` in:\n{stderr}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "--image {image} wrote files");
    }
}
