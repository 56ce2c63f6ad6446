//! A whole world for converge tests: moto behind the fault-injecting proxy, seeded with
//! clusters, parameters, secrets and ECR images; a real git repository made from the
//! fixture monorepo; and an agent config pointing berth at both.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::fixture;
use super::moto::Moto;
use super::proxy::Proxy;

/// Secret values seeded into moto. berth must never print, log or store any of them.
pub const SECRET_VALUES: &[&str] = &[
    "hunter2-pre-db-password",
    "sekrit-pre-api-key",
    "sekrit-pre-signing-key",
    "hunter2-prod-db-password",
    "sekrit-prod-api-key",
    "sekrit-prod-signing-key",
];

pub const REGISTRY: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

pub struct World {
    pub moto: Moto,
    pub proxy: Proxy,
    /// The working clone tests commit in (CLI tests use it as `--repo`).
    pub repo: PathBuf,
    /// The bare "remote" the daemon polls (`repo.url`); `push` publishes to it.
    pub origin: PathBuf,
    pub config: PathBuf,
    pub subnets: Vec<String>,
    pub security_group: String,
    /// `repo.poll_interval` written by `write_config`.
    pub poll_interval: std::cell::RefCell<String>,
    /// Extra top-level YAML written by `write_config` (listeners, …).
    pub top_level: std::cell::RefCell<String>,
    /// More top-level YAML, kept when a daemon rewrites `top_level` (`state:`, `api:`, …).
    pub top_extra: std::cell::RefCell<String>,
    /// Extra YAML for every environment, from the last `write_config`.
    env_extra: std::cell::RefCell<String>,
    /// Only these environments go into the config (default: pre and prod).
    pub envs: std::cell::RefCell<Vec<&'static str>>,
    dir: tempfile::TempDir,
}

const SEED: &str = r#"
import boto3, json
ec2 = boto3.client("ec2"); ecs = boto3.client("ecs"); ssm = boto3.client("ssm"); sm = boto3.client("secretsmanager")
subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
sg = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
for c in ["pre", "prod"]:
    ecs.create_cluster(clusterName=c)
for env in ["pre", "prod"]:
    ssm.put_parameter(Name=f"/{env}/klausapproves/db-host", Value=f"db.{env}.internal", Type="String")
    ssm.put_parameter(Name=f"/{env}/klausapproves/db-password", Value=f"hunter2-{env}-db-password", Type="SecureString")
    sm.create_secret(Name=f"{env}/klaus", SecretString=json.dumps({"api_key": f"sekrit-{env}-api-key"}))
    sm.create_secret(Name=f"{env}/klaus-signing", SecretString=f"sekrit-{env}-signing-key")
print(json.dumps({"subnets": subnets, "sg": sg}))
"#;

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "berth tests")
        .env("GIT_AUTHOR_EMAIL", "tests@berth.invalid")
        .env("GIT_COMMITTER_NAME", "berth tests")
        .env("GIT_COMMITTER_EMAIL", "tests@berth.invalid")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run git");
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

impl World {
    /// moto + proxy + the fixture monorepo committed on `develop` and tagged `v1.0.0`,
    /// with every service's image pushed for both.
    pub fn new() -> World {
        Self::with_repo(&fixture("monorepo"))
    }

    pub fn with_repo(source: &Path) -> World {
        let moto = Moto::start();
        let proxy = Proxy::start(&moto.endpoint);
        let seeded: Value = serde_json::from_str(moto.python(SEED).trim()).expect("seed output");
        let subnets: Vec<String> =
            seeded["subnets"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
        let security_group = seeded["sg"].as_str().unwrap().to_string();
        let dir = tempfile::Builder::new().prefix("berth-world-").tempdir().unwrap();
        let repo = dir.path().join("monorepo");
        copy_dir(source, &repo);
        git(&repo, &["init", "-q", "-b", "develop"]);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "services"]);
        git(&repo, &["tag", "v1.0.0"]);
        let origin = dir.path().join("origin.git");
        git(dir.path(), &["clone", "-q", "--bare", &repo.to_string_lossy(), &origin.to_string_lossy()]);
        git(&repo, &["remote", "add", "origin", &origin.to_string_lossy()]);
        let config = dir.path().join("berth.yaml");
        let world = World {
            moto,
            proxy,
            repo,
            origin,
            config,
            subnets,
            security_group,
            poll_interval: std::cell::RefCell::new("60s".into()),
            top_level: std::cell::RefCell::new(String::new()),
            top_extra: std::cell::RefCell::new(String::new()),
            env_extra: std::cell::RefCell::new(String::new()),
            envs: std::cell::RefCell::new(vec!["pre", "prod"]),
            dir,
        };
        world.write_config("");
        world.push_images();
        world
    }

    /// Writes the agent config; `extra_env` is YAML added to both environments (indented
    /// four spaces), e.g. `"    rollout: {wait: true, timeout: 5s, poll: 100ms}\n"`.
    pub fn write_config(&self, extra_env: &str) {
        *self.env_extra.borrow_mut() = extra_env.to_string();
        self.rewrite_config();
    }

    /// Writes the config again from the current settings.
    pub fn rewrite_config(&self) {
        let extra_env = self.env_extra.borrow().clone();
        let defaults = format!(
            "    defaults:\n      execution_role: arn:aws:iam::123456789012:role/ecs-execution-{{env}}\n      task_role: arn:aws:iam::123456789012:role/{{service}}-{{env}}\n      subnets: [{}]\n      security_groups: [{}]\n",
            self.subnets.join(", "),
            self.security_group
        );
        let rollout =
            if extra_env.contains("rollout:") { String::new() } else { "    rollout: {wait: false}\n".to_string() };
        let mut envs = String::new();
        for env in self.envs.borrow().iter() {
            let source = if *env == "prod" { "{tags: semver}" } else { "{branch: develop}" };
            envs.push_str(&format!(
                "  {env}:\n    source: {source}\n    cluster: {env}\n{defaults}{rollout}{extra_env}"
            ));
        }
        let text = format!(
            "repo:\n  url: file://{repo}\n  workdir: {work}\n  poll_interval: {poll}\naws:\n  region: us-east-1\n  endpoint_url: {endpoint}\n  account_id: \"123456789012\"\n  registry: {REGISTRY}\n  max_attempts: 4\nenvironments:\n{envs}{top}{top_extra}",
            repo = self.origin.display(),
            work = self.dir.path().join("work").display(),
            poll = self.poll_interval.borrow(),
            endpoint = self.proxy.endpoint,
            top = self.top_level.borrow(),
            top_extra = self.top_extra.borrow(),
        );
        // Write-then-rename, as editors and config management do: a watcher never sees half a file.
        let tmp = self.config.with_extension("yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    /// Publishes the working clone's branches and tags to `origin`.
    pub fn push(&self) {
        git(&self.repo, &["push", "-q", "--force", "origin", "--all"]);
        git(&self.repo, &["push", "-q", "--force", "origin", "--tags"]);
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The service folders of the repository.
    pub fn service_dirs(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.repo.join("services")).unwrap() {
            out.push(format!("services/{}", e.unwrap().file_name().to_string_lossy()));
        }
        out.sort();
        out
    }

    /// The 12-character id of the newest commit that changed `dir` (what CI tags images with).
    pub fn service_tag(&self, dir: &str) -> String {
        git(&self.repo, &["log", "-1", "--first-parent", "--format=%H", "--", dir])[..12].to_string()
    }

    /// Pushes an image for every service: its commit tag, and the release tags `X.Y.Z`.
    pub fn push_images(&self) {
        let versions: Vec<String> = git(&self.repo, &["tag", "--list", "v*"])
            .lines()
            .filter_map(|t| t.strip_prefix('v').map(str::to_string))
            .collect();
        let mut images = Vec::new();
        for dir in self.service_dirs() {
            let name = dir.rsplit('/').next().unwrap().to_string();
            images.push((name.clone(), self.service_tag(&dir)));
            for v in &versions {
                images.push((name.clone(), v.clone()));
            }
        }
        let list: Vec<String> = images.iter().map(|(r, t)| format!("({r:?}, {t:?})")).collect();
        self.moto.python(&format!(
            r#"
import boto3, json
ecr = boto3.client("ecr")
have = {{r["repositoryName"] for r in ecr.describe_repositories()["repositories"]}}
for repo, tag in [{}]:
    if repo not in have:
        ecr.create_repository(repositoryName=repo); have.add(repo)
    manifest = json.dumps({{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": {{"digest": "sha256:" + ("%064x" % abs(hash(repo + tag)))}}, "layers": []}})
    try:
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag)
    except ecr.exceptions.ImageAlreadyExistsException:
        pass
"#,
            list.join(", ")
        ));
    }

    /// Runs berth with moto's client environment (credentials; the endpoint comes from the config).
    pub fn berth(&self, args: &[&str]) -> Output {
        let mut cmd = self.moto.command(env!("CARGO_BIN_EXE_berth"));
        cmd.env_remove("AWS_ENDPOINT_URL");
        cmd.env("RUST_LOG", "berth=debug,info");
        let out = cmd.args(args).output().expect("cannot run berth");
        assert_no_secret(&out);
        out
    }

    pub fn apply(&self, env: &str, extra: &[&str]) -> Output {
        let config = self.config.to_string_lossy().into_owned();
        let repo = self.repo.to_string_lossy().into_owned();
        let mut args = vec!["apply", "--config", &config, "--env", env, "--repo", &repo];
        args.extend_from_slice(extra);
        self.berth(&args)
    }

    pub fn diff(&self, env: &str, extra: &[&str]) -> Output {
        let config = self.config.to_string_lossy().into_owned();
        let repo = self.repo.to_string_lossy().into_owned();
        let mut args = vec!["diff", "--config", &config, "--env", env, "--repo", &repo];
        args.extend_from_slice(extra);
        self.berth(&args)
    }

    /// `diff --output json` parsed.
    pub fn diff_json(&self, env: &str) -> (i32, Value) {
        let out = self.diff(env, &["--output", "json"]);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("diff json: {e}\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        });
        (out.status.code().unwrap_or(-1), v)
    }

    /// Edits a file of the repository and commits it; returns the commit id.
    pub fn commit_edit(&self, rel: &str, edit: impl FnOnce(String) -> String, message: &str) -> String {
        let path = self.repo.join(rel);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, edit(text)).unwrap();
        git(&self.repo, &["add", "-A"]);
        git(&self.repo, &["commit", "-q", "-m", message]);
        git(&self.repo, &["rev-parse", "HEAD"])
    }

    /// boto3 against moto directly (the "console").
    /// The ACTIVE revisions of a task definition family, on the moto side.
    pub fn revisions(&self, family: &str) -> usize {
        let out = self.console(&format!(
            "import boto3; print(len(boto3.client('ecs').list_task_definitions(familyPrefix='{family}')['taskDefinitionArns']))"
        ));
        out.trim().parse().expect("a count")
    }

    pub fn console(&self, script: &str) -> String {
        self.moto.python(script)
    }
}

/// Panics if any seeded secret value appears in the output.
pub fn assert_no_secret(out: &Output) {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for v in SECRET_VALUES {
        assert!(!text.contains(v), "secret value {v:?} leaked into berth's output:\n{text}");
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "--- exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
