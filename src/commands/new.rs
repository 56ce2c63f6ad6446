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

/// The actions the workflow uses, each at its current major version and pinned by the
/// commit of its release tag (a tag can be moved, a commit cannot). Where these came from
/// and how to bump them: docs/ci.md.
const CHECKOUT: &str = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1";
const AWS_CREDENTIALS: &str = "aws-actions/configure-aws-credentials@e6de054238d6b7531b4efff3b6587d9aade6a06c # v6.2.3";
const ECR_LOGIN: &str = "aws-actions/amazon-ecr-login@03f1aad4c6c7ffd436567f42f9384779290529bd # v2.1.7";
const DOCKER_LOGIN: &str = "docker/login-action@dbcb813823bdd20940b903addbd779551569679f # v4.6.0";

/// Where the workflow pushes the image, from `--image`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registry {
    /// A bare repository name: berth prepends `aws.registry`; the workflow pushes to the ECR
    /// registry of the CI role's account in `vars.AWS_REGION`.
    EcrDefault { repository: String },
    /// `ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO`: that registry, whatever the role's account.
    Ecr { account: String, region: String, image: String },
    /// `ghcr.io/OWNER/NAME`: GitHub's registry, with the workflow's own token.
    Ghcr { image: String },
}

const SUPPORTED: &str = "an ECR repository name (`pay`, `team/pay`), a full ECR reference \
     (`123456789012.dkr.ecr.eu-west-1.amazonaws.com/pay`) or `ghcr.io/OWNER/NAME`";

/// A repository path as registries take it: `/`-separated parts of lowercase letters and
/// digits, with `.`, `_` or `-` only between them.
fn valid_repository(path: &str) -> bool {
    path.split('/').all(|part| {
        let b = part.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
    })
}

impl Registry {
    /// What `--image` means for the workflow, or why berth cannot write one for it.
    pub fn of(image: &str) -> Result<Registry, String> {
        if crate::core::render::image_is_pinned(image) {
            let bare = image.split('@').next().unwrap_or(image);
            let bare = match bare.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => repo,
                _ => bare,
            };
            return Err(format!(
                "`--image {image}` has a tag or digest: berth sets the tag itself (the service's commit \
                 on a branch, X.Y.Z on a release); pass the repository alone, e.g. `--image {bare}`"
            ));
        }
        let Some(host) = crate::core::render::image_registry(image) else {
            if !valid_repository(image) {
                return Err(format!(
                    "invalid repository `{image}`: lowercase letters and digits, `.`, `_` or `-` between \
                     them, `/` between parts"
                ));
            }
            return Ok(Registry::EcrDefault { repository: image.to_string() });
        };
        let path = &image[host.len() + 1..];
        if !valid_repository(path) {
            return Err(format!(
                "invalid repository `{path}` in `{image}`: lowercase letters and digits, `.`, `_` or `-` \
                 between them, `/` between parts"
            ));
        }
        let labels: Vec<&str> = host.split('.').collect();
        match labels[..] {
            [account, "dkr", "ecr", region, "amazonaws", "com", ..]
                if account.len() == 12
                    && account.chars().all(|c| c.is_ascii_digit())
                    && (labels.len() == 6 || labels[6..] == ["cn"])
                    && !region.is_empty() =>
            {
                Ok(Registry::Ecr { account: account.to_string(), region: region.to_string(), image: image.to_string() })
            }
            ["ghcr", "io"] if path.contains('/') => Ok(Registry::Ghcr { image: image.to_string() }),
            ["ghcr", "io"] => Err(format!("`--image {image}`: a GitHub registry image is `ghcr.io/OWNER/NAME`")),
            _ => Err(format!(
                "`--image {image}`: berth new service writes the push for {SUPPORTED}; for `{host}` pass \
                 one of those, or write the workflow's login and push yourself (berth deploys `{image}:<tag>`)"
            )),
        }
    }
}

pub fn workflow_yaml(name: &str, dir: &str, registry: &Registry, branch: &str) -> String {
    let (needs, permissions, env, login, push) = match registry {
        Registry::EcrDefault { repository } => (
            format!(
                "# Needs the repository variables AWS_REGION and BERTH_CI_ROLE_ARN: an IAM role for GitHub's\n\
                 # OIDC provider that may push to the ECR repository `{repository}` of its account. berth\n\
                 # deploys `<aws.registry>/{repository}:<tag>`: set `aws.registry` to that account's registry\n\
                 # in that region (ACCOUNT.dkr.ecr.REGION.amazonaws.com).\n"
            ),
            "      contents: read\n      id-token: write\n",
            format!("  ECR_REPOSITORY: {repository}\n"),
            format!(
                "      - uses: {AWS_CREDENTIALS}\n\
                 \x20       with:\n\
                 \x20         role-to-assume: ${{{{ vars.BERTH_CI_ROLE_ARN }}}}\n\
                 \x20         aws-region: ${{{{ vars.AWS_REGION }}}}\n\
                 \x20     - id: ecr\n\
                 \x20       uses: {ECR_LOGIN}\n"
            ),
            "          REGISTRY: ${{ steps.ecr.outputs.registry }}\n        run: |\n          image=\"$REGISTRY/$ECR_REPOSITORY:$TAG\"\n",
        ),
        Registry::Ecr { account, region, image } => (
            format!(
                "# Needs the repository variable BERTH_CI_ROLE_ARN: an IAM role for GitHub's OIDC provider\n\
                 # that may push to `{image}` (ECR in account {account}, region {region}).\n"
            ),
            "      contents: read\n      id-token: write\n",
            format!("  IMAGE: {image}\n"),
            format!(
                "      - uses: {AWS_CREDENTIALS}\n\
                 \x20       with:\n\
                 \x20         role-to-assume: ${{{{ vars.BERTH_CI_ROLE_ARN }}}}\n\
                 \x20         aws-region: {region}\n\
                 \x20     - uses: {ECR_LOGIN}\n\
                 \x20       with:\n\
                 \x20         registries: \"{account}\"\n"
            ),
            "        run: |\n          image=\"$IMAGE:$TAG\"\n",
        ),
        Registry::Ghcr { image } => (
            format!(
                "# Pushes to GitHub's registry with the workflow's own token: the package `{image}` must\n\
                 # belong to this repository's owner. ECS pulls it without credentials (berth sets no\n\
                 # repositoryCredentials), so make the package public; berth does not check that an\n\
                 # image outside ECR exists before it deploys.\n"
            ),
            "      contents: read\n      packages: write\n",
            format!("  IMAGE: {image}\n"),
            format!(
                "      - uses: {DOCKER_LOGIN}\n\
                 \x20       with:\n\
                 \x20         registry: ghcr.io\n\
                 \x20         username: ${{{{ github.actor }}}}\n\
                 \x20         password: ${{{{ secrets.GITHUB_TOKEN }}}}\n"
            ),
            "        run: |\n          image=\"$IMAGE:$TAG\"\n",
        ),
    };
    format!(
        r#"# Builds and pushes the image berth deploys for `{name}`:
# - on `{branch}`: tagged with the 12-character id of the newest commit that changed {dir}/
#   (berth computes the same id: `git log -1 --first-parent --format=%H -- {dir}`),
#   built only when a push changes that folder;
# - on a release tag vX.Y.Z: tagged X.Y.Z (every service builds on a release).
{needs}# Actions are pinned by commit (the version in the comment); see berth's docs/ci.md.
name: {name}
on:
  push:
    branches: [{branch}]
    tags: ['v*.*.*']
    paths: ['{dir}/**']
permissions: {{}}
concurrency:
  group: {name}-${{{{ github.ref }}}}
  cancel-in-progress: false
env:
  SERVICE_DIR: {dir}
{env}jobs:
  image:
    runs-on: ubuntu-latest
    timeout-minutes: 30
    permissions:
{permissions}    steps:
      - uses: {CHECKOUT}
        with:
          fetch-depth: 0
          persist-credentials: false
      - name: Choose the image tag
        id: tag
        run: |
          if [[ "$GITHUB_REF" == refs/tags/v* ]]; then
            echo "tag=${{GITHUB_REF_NAME#v}}" >> "$GITHUB_OUTPUT"
          else
            echo "tag=$(git log -1 --first-parent --format=%H -- "$SERVICE_DIR" | cut -c1-12)" >> "$GITHUB_OUTPUT"
          fi
{login}      - name: Build and push
        env:
          TAG: ${{{{ steps.tag.outputs.tag }}}}
{push}          docker build -t "$image" "$SERVICE_DIR"
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
    let registry = Registry::of(&image).map_err(|m| anyhow::anyhow!(m))?;
    let mut files: Vec<(PathBuf, String)> =
        vec![(args.repo.join(&dir).join("deploy/service.yaml"), service_yaml(args, &image))];
    let depth = dir.split('/').count() + 2;
    for env in &args.envs {
        let text = format!("{}{}", modeline(depth, "config.schema.json"), config_yaml(env));
        files.push((args.repo.join(&dir).join("deploy").join(env).join("config.yaml"), text));
    }
    files.push((
        args.repo.join(".github/workflows").join(format!("{}.yml", args.name)),
        workflow_yaml(&args.name, &dir, &registry, &args.branch),
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
