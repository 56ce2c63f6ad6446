//! `berth new service`: scaffold a service's deploy files and the CI workflow that builds
//! and pushes its image with the tags berth deploys.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::cli::NewServiceArgs;
use crate::commands::Exit;
use crate::core::spec::{NAME_RULE, fargate, valid_env_name, valid_service_name};

/// The `yaml-language-server` modeline of a file `depth` folders below the repository
/// root: editors with the YAML language server (VS Code's YAML extension, Neovim, Helix)
/// then check it against `.berth/<schema>`, which `berth new service` writes.
fn modeline(depth: usize, schema: &str) -> String {
    format!("# yaml-language-server: $schema={}.berth/{schema}\n", "../".repeat(depth))
}

pub fn service_yaml(args: &NewServiceArgs, image: &str) -> String {
    let mut s = String::new();
    let dir = args.dir.clone().unwrap_or_else(|| format!("services/{}", args.name));
    let depth = dir.trim_matches('/').split('/').count() + 1;
    s.push_str(&modeline(depth, "service.schema.json"));
    let _ =
        writeln!(s, "# berth service spec. Reference: README.md \"Spec reference\"; schema: `berth schema service`.");
    let _ = writeln!(s, "type: service");
    let _ = writeln!(s, "name: {}", args.name);
    let _ = writeln!(s, "spec:");
    let _ = writeln!(s, "  image: {image}");
    let _ = writeln!(s, "  resources: {{cpu: {}, memory: {}}}", args.cpu, args.memory);
    match &args.autoscaling {
        Some(resource) => {
            let _ = writeln!(s, "  autoscaling: {{resource: {resource}, target: 70, min: 1, max: 4}}");
        }
        None => {
            let _ = writeln!(s, "  count: 1");
        }
    }
    let _ = writeln!(s, "  port: 8080");
    let _ = writeln!(s, "  health: /health");
    let _ = writeln!(s, "  metrics_port: 9090");
    // With the environment's `ingress:`, every service gets its internal route and name.
    match &args.domain {
        Some(host) => {
            let _ = writeln!(s, "  ingress: {{external: true, host: {host}}}");
        }
        None => {
            let _ = writeln!(s, "  ingress: {{external: {}}}", args.external);
        }
    }
    if !args.depends_on.is_empty() || !args.data.is_empty() {
        let _ = writeln!(s, "  dependencies:");
        if !args.depends_on.is_empty() {
            let _ = writeln!(s, "    services: [{}]", args.depends_on.join(", "));
        }
        if !args.data.is_empty() {
            let _ = writeln!(s, "    data: [{}]", args.data.join(", "));
        }
    }
    let _ = writeln!(s, "  environment:");
    let _ = writeln!(s, "    - key: SERVICE_NAME");
    let _ = writeln!(s, "      value: '{{{{ .Service }}}}'");
    let _ = writeln!(s, "    - key: DEPLOY_ENV");
    let _ = writeln!(s, "      value: '{{{{ .Env }}}}'");
    let _ = writeln!(s, "    - key: LOG_LEVEL");
    let _ = writeln!(s, "      value: '{{{{ .Variables[\"logLevel\"] }}}}'");
    s
}

pub fn config_yaml(env: &str) -> String {
    let level = if env == "prod" { "info" } else { "debug" };
    format!(
        "# Values for the `{env}` environment. Delete this folder to stop deploying to `{env}`.\n\
         variables:\n  - key: logLevel\n    value: {level}\n\
         # A value `ssm:/{env}/NAME` is read from Parameter Store at deploy time.\n\
         # Secrets are references only (`ssm:/path`, `secretsmanager:NAME#field`); use one as\n\
         # the whole value of an environment entry: value: '{{{{ .Variables[\"dbPassword\"] }}}}'\n\
         secrets: []\n\
         # overrides:                # any spec field, for `{env}` only\n\
         #   resources: {{cpu: 512, memory: 1024}}\n"
    )
}

pub fn workflow_yaml(name: &str, dir: &str, image: &str, branch: &str) -> String {
    format!(
        r#"# Builds and pushes the image berth deploys for `{name}`:
# - on `{branch}`: tagged with the 12-character id of the newest commit that changed {dir}/
#   (berth computes the same id: `git log -1 --first-parent --format=%H -- {dir}`),
#   built only when a push changes that folder;
# - on a release tag vX.Y.Z: tagged X.Y.Z (every service builds on a release).
# Needs the repository variables AWS_REGION and BERTH_CI_ROLE_ARN (an IAM role for
# GitHub's OIDC provider that may push to the ECR repository `{image}`).
name: {name}
on:
  push:
    branches: [{branch}]
    tags: ['v*.*.*']
    paths: ['{dir}/**']
permissions:
  id-token: write
  contents: read
concurrency:
  group: {name}-${{{{ github.ref }}}}
  cancel-in-progress: false
env:
  SERVICE_DIR: {dir}
  ECR_REPOSITORY: {image}
jobs:
  image:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          fetch-depth: 0
      - name: Choose the image tag
        id: tag
        run: |
          if [[ "$GITHUB_REF" == refs/tags/v* ]]; then
            echo "tag=${{GITHUB_REF_NAME#v}}" >> "$GITHUB_OUTPUT"
          else
            echo "tag=$(git log -1 --first-parent --format=%H -- "$SERVICE_DIR" | cut -c1-12)" >> "$GITHUB_OUTPUT"
          fi
      - uses: aws-actions/configure-aws-credentials@v4
        with:
          role-to-assume: ${{{{ vars.BERTH_CI_ROLE_ARN }}}}
          aws-region: ${{{{ vars.AWS_REGION }}}}
      - id: ecr
        uses: aws-actions/amazon-ecr-login@v2
      - name: Build and push
        run: |
          image="${{{{ steps.ecr.outputs.registry }}}}/$ECR_REPOSITORY:${{{{ steps.tag.outputs.tag }}}}"
          docker build -t "$image" "$SERVICE_DIR"
          docker push "$image"
"#
    )
}

pub fn run(args: &NewServiceArgs) -> anyhow::Result<Exit> {
    if !valid_service_name(&args.name) {
        bail!("invalid service name `{}`: names are {NAME_RULE}", args.name);
    }
    if args.envs.is_empty() {
        bail!("--envs needs at least one environment");
    }
    for env in &args.envs {
        if !valid_env_name(env) {
            bail!("invalid environment name `{env}`: names are [a-z0-9-]{{1,32}}");
        }
    }
    fargate::check(args.cpu, args.memory).map_err(|m| anyhow::anyhow!(m))?;
    if let Some(r) = &args.autoscaling
        && r != "cpu"
        && r != "memory"
    {
        bail!("--autoscaling takes `cpu` or `memory`, got `{r}`");
    }
    if let Some(host) = &args.domain
        && !crate::core::spec::valid_host(host)
    {
        bail!("invalid --domain `{host}`: a lower-case DNS name (`pay.example.com`)");
    }
    let dir = args.dir.clone().unwrap_or_else(|| format!("services/{}", args.name));
    let dir = dir.trim_matches('/').to_string();
    let image = args.image.clone().unwrap_or_else(|| args.name.clone());
    let mut files: Vec<(PathBuf, String)> =
        vec![(args.repo.join(&dir).join("deploy/service.yaml"), service_yaml(args, &image))];
    let depth = dir.split('/').count() + 2;
    for env in &args.envs {
        let text = format!("{}{}", modeline(depth, "config.schema.json"), config_yaml(env));
        files.push((args.repo.join(&dir).join("deploy").join(env).join("config.yaml"), text));
    }
    files.push((
        args.repo.join(".github/workflows").join(format!("{}.yml", args.name)),
        workflow_yaml(&args.name, &dir, &image, &args.branch),
    ));
    if !args.force
        && let Some((existing, _)) = files.iter().find(|(p, _)| p.exists())
    {
        bail!("{} exists; pass --force to overwrite", existing.display());
    }
    // The schemas the modelines name, written afresh (they follow this berth's version).
    for (which, name) in [(crate::cli::SchemaWhich::Service, "service"), (crate::cli::SchemaWhich::Config, "config")] {
        let json = serde_json::to_string_pretty(&crate::commands::schema::schema_json(Some(which)))?;
        files.push((args.repo.join(".berth").join(format!("{name}.schema.json")), format!("{json}\n")));
    }
    for (path, content) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(path, content).with_context(|| format!("cannot write {}", path.display()))?;
        println!("created {}", path.display());
    }
    println!("next: edit the files, run `berth validate`, then commit and push.");
    Ok(Exit::Ok)
}
