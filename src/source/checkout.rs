//! What an environment deploys: the services of one commit, each with its own commit
//! (the newest that changed its folder), from a local checkout or the remote.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;

use crate::core::config::{Config, EnvConfig, Source};
use crate::core::spec::{Repo, RepoFiles};
use crate::source::git;

/// The repository content an environment deploys.
#[derive(Clone, Debug)]
pub struct Checkout {
    pub repo: Repo,
    pub commits: BTreeMap<String, String>,
    pub version: Option<String>,
    pub ref_name: String,
    pub commit: String,
}

pub fn commits_for(
    repo_git: &git2::Repository,
    head: git2::Oid,
    prefix: &str,
    repo: &Repo,
) -> anyhow::Result<BTreeMap<String, String>> {
    commits_since(repo_git, head, prefix, repo, None)
}

/// [`commits_for`], reusing an earlier checkout's answers: only the commits between it and
/// `head` are walked when it is on `head`'s first-parent line.
fn commits_since(
    repo_git: &git2::Repository,
    head: git2::Oid,
    prefix: &str,
    repo: &Repo,
    previous: Option<&Checkout>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let join = |d: &str| [prefix, d].iter().filter(|s| !s.is_empty()).cloned().collect::<Vec<_>>().join("/");
    let dirs: Vec<String> = repo.services.iter().map(|s| join(&s.dir)).collect();
    let known: Option<(git2::Oid, BTreeMap<String, git2::Oid>)> = previous.and_then(|p| {
        let at = git2::Oid::from_str(&p.commit).ok()?;
        let map = p.commits.iter().filter_map(|(d, c)| Some((join(d), git2::Oid::from_str(c).ok()?))).collect();
        Some((at, map))
    });
    let found = git::path_commits_since(repo_git, head, &dirs, known.as_ref().map(|(at, m)| (*at, m)))?;
    Ok(repo
        .services
        .iter()
        .map(|s| (s.dir.clone(), found.get(&join(&s.dir)).map_or_else(|| head.to_string(), |c| c.to_string())))
        .collect())
}

/// Reads a local checkout (`--repo DIR`, its HEAD).
pub fn local_checkout(dir: &Path, config: &Config, env: &EnvConfig) -> anyhow::Result<Checkout> {
    let files = crate::source::dir::read(dir, &config.repo.discovery)?;
    let repo = Repo::load(&files);
    let (git_repo, head) = git::open_head(dir)?;
    let prefix = git::prefix_in_repo(&git_repo, dir)?;
    let commits = commits_for(&git_repo, head, &prefix, &repo)?;
    let version = match env.source {
        Source::Branch(_) => None,
        Source::SemverTags { .. } => Some(git::head_version(&git_repo, head).with_context(|| {
            format!("environment `{}` deploys release tags, and HEAD of {} has no vX.Y.Z tag", env.name, dir.display())
        })?),
    };
    let ref_name =
        git_repo.head().ok().and_then(|h| h.name().ok().map(str::to_string)).unwrap_or_else(|| "HEAD".into());
    Ok(Checkout { repo, commits, version, ref_name, commit: head.to_string() })
}

/// Resolves the environment's ref on `repo.url`, fetching into the work directory.
pub fn remote_checkout(config: &Config, env: &EnvConfig) -> anyhow::Result<Checkout> {
    let auth = git::Auth::from_env(&config.repo);
    let mirror = git::Mirror::open(&config.repo.url, &Path::new(&config.repo.workdir).join("mirror.git"), auth)?;
    let refs = mirror.list_remote()?;
    let resolved = git::resolve(&refs, &env.source)?.context(git::NO_RELEASE)?;
    if !mirror.has_commit(resolved.commit) {
        mirror.fetch()?;
    }
    let files: RepoFiles = git::read_commit(&mirror.repo, resolved.commit, &config.repo.discovery)?;
    let repo = Repo::load(&files);
    let commits = commits_for(&mirror.repo, resolved.commit, "", &repo)?;
    Ok(Checkout {
        repo,
        commits,
        version: resolved.version,
        ref_name: resolved.ref_name,
        commit: resolved.commit.to_string(),
    })
}

/// The daemon's view of the remote: one mirror, and the checkout each environment had at
/// its last poll.
pub struct Poller {
    mirror: git::Mirror,
    checkouts: BTreeMap<String, std::sync::Arc<Checkout>>,
}

/// One environment's poll result.
pub struct Polled {
    pub checkout: std::sync::Arc<Checkout>,
    /// The environment's commit moved since the last poll.
    pub changed: bool,
    /// Reading, parsing and dating the services of a new commit (zero when unchanged).
    pub read: std::time::Duration,
}

impl Poller {
    pub fn open(config: &Config, auth: git::Auth) -> anyhow::Result<Poller> {
        let mirror = git::Mirror::open(&config.repo.url, &Path::new(&config.repo.workdir).join("mirror.git"), auth)?;
        Ok(Poller { mirror, checkouts: BTreeMap::new() })
    }

    pub fn url(&self) -> &str {
        self.mirror.url()
    }

    /// Polls the remote once (one ref negotiation) for all of `envs`. An environment whose
    /// commit did not move reuses its checkout with no further git work; a fetch happens
    /// only when a wanted commit is missing locally. On failure the environment keeps its
    /// last good checkout and gets the error. `Ok(None)`: a tag environment with no release
    /// yet (nothing to deploy, and nothing wrong).
    pub fn poll(&mut self, config: &Config, envs: &[&EnvConfig]) -> BTreeMap<String, Result<Option<Polled>, String>> {
        let mut out = BTreeMap::new();
        let refs = match self.mirror.list_remote() {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("{e:#}");
                for env in envs {
                    out.insert(env.name.clone(), Err(msg.clone()));
                }
                return out;
            }
        };
        let mut fetched = false;
        for env in envs {
            let result = (|| -> anyhow::Result<Option<Polled>> {
                let Some(resolved) = git::resolve(&refs, &env.source)? else { return Ok(None) };
                if let Some(c) = self.checkouts.get(&env.name)
                    && c.commit == resolved.commit.to_string()
                    && c.ref_name == resolved.ref_name
                {
                    return Ok(Some(Polled { checkout: c.clone(), changed: false, read: std::time::Duration::ZERO }));
                }
                if !self.mirror.has_commit(resolved.commit) && !fetched {
                    self.mirror.fetch()?;
                    fetched = true;
                }
                let started = std::time::Instant::now();
                let files: RepoFiles = git::read_commit(&self.mirror.repo, resolved.commit, &config.repo.discovery)?;
                // Folders whose files did not change since the last checkout (this
                // environment's, else any other's) are not parsed again.
                let previous = self.checkouts.get(&env.name).or_else(|| self.checkouts.values().next());
                let repo = Repo::load_reusing(&files, previous.map(|c| &c.repo));
                let commits = commits_since(&self.mirror.repo, resolved.commit, "", &repo, previous.map(|c| &**c))?;
                let checkout = std::sync::Arc::new(Checkout {
                    repo,
                    commits,
                    version: resolved.version,
                    ref_name: resolved.ref_name,
                    commit: resolved.commit.to_string(),
                });
                self.checkouts.insert(env.name.clone(), checkout.clone());
                Ok(Some(Polled { checkout, changed: true, read: started.elapsed() }))
            })();
            out.insert(env.name.clone(), result.map_err(|e| format!("{e:#}")));
        }
        if out.values().any(|r| r.as_ref().is_ok_and(|p| p.as_ref().is_some_and(|p| p.changed))) {
            self.mirror.release_caches();
        }
        out
    }

    /// The last good checkout of an environment.
    pub fn last(&self, env: &str) -> Option<std::sync::Arc<Checkout>> {
        self.checkouts.get(env).cloned()
    }

    pub fn forget(&mut self, env: &str) {
        self.checkouts.remove(env);
    }
}
