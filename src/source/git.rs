//! Git: which commit last changed each service's folder.
//!
//! The walk follows first parents, the history of the deploying branch itself: a merge
//! into `develop` is the commit CI built the image for. The generated CI workflow computes
//! the same id with `git log -1 --first-parent --format=%H -- <folder>`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use git2::{Oid, Repository, Tree};

/// The ids (tree or blob) at each of `dirs` in `tree`. Each folder tree on the way is
/// read once: libgit2 does not cache trees over 4 KiB, and a `services/` folder of
/// hundreds of entries is bigger, so looking every path up from the root re-reads it.
fn ids_at<'r>(repo: &'r Repository, tree: &Tree<'r>, dirs: &[&String]) -> BTreeMap<String, Option<Oid>> {
    let mut trees: BTreeMap<String, Option<Tree<'r>>> = BTreeMap::new();
    trees.insert(String::new(), Some(tree.clone()));
    let mut out = BTreeMap::new();
    for dir in dirs {
        if dir.is_empty() {
            out.insert(String::new(), Some(tree.id()));
            continue;
        }
        let (parent, name) = dir.rsplit_once('/').unwrap_or(("", dir.as_str()));
        let parent_tree = subtree(repo, &mut trees, parent);
        out.insert((*dir).clone(), parent_tree.and_then(|t| t.get_name(name).map(|e| e.id())));
    }
    out
}

/// The tree at `path`, memoised in `trees` (which holds the root under "").
fn subtree<'r, 'm>(
    repo: &'r Repository,
    trees: &'m mut BTreeMap<String, Option<Tree<'r>>>,
    path: &str,
) -> Option<&'m Tree<'r>> {
    if !trees.contains_key(path) {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let found = subtree(repo, trees, parent)
            .and_then(|t| t.get_name(name).map(|e| e.id()))
            .and_then(|id| repo.find_tree(id).ok());
        trees.insert(path.to_string(), found);
    }
    trees.get(path).and_then(Option::as_ref)
}

/// For each folder, the newest commit on `head`'s first-parent line whose tree differs at
/// that folder from its parent's (or the root commit).
pub fn path_commits(repo: &Repository, head: Oid, dirs: &[String]) -> anyhow::Result<BTreeMap<String, Oid>> {
    path_commits_since(repo, head, dirs, None)
}

/// [`path_commits`], told the answer at an earlier commit: when the walk reaches `since`'s
/// commit, a folder still unresolved takes its commit there instead of walking on to the
/// root (a poll after a push walks only the pushed commits).
pub fn path_commits_since(
    repo: &Repository,
    head: Oid,
    dirs: &[String],
    since: Option<(Oid, &BTreeMap<String, Oid>)>,
) -> anyhow::Result<BTreeMap<String, Oid>> {
    let mut resolved = BTreeMap::new();
    let mut pending: Vec<&String> = dirs.iter().collect();
    pending.sort();
    pending.dedup();
    let mut current = repo.find_commit(head).context("cannot find the head commit")?;
    let tree = current.tree()?;
    let mut ids = ids_at(repo, &tree, &pending);
    while !pending.is_empty() {
        if let Some((at, known)) = since
            && current.id() == at
        {
            pending.retain(|d| match known.get(*d) {
                Some(c) => {
                    resolved.insert((*d).clone(), *c);
                    false
                }
                None => true,
            });
            if pending.is_empty() {
                break;
            }
        }
        let Ok(parent) = current.parent(0) else {
            for d in pending.drain(..) {
                resolved.insert(d.clone(), current.id());
            }
            break;
        };
        let parent_tree = parent.tree()?;
        let before = ids_at(repo, &parent_tree, &pending);
        pending.retain(|d| {
            if before[d.as_str()] != ids[d.as_str()] {
                resolved.insert((*d).clone(), current.id());
                false
            } else {
                true
            }
        });
        ids = before;
        current = parent;
    }
    Ok(resolved)
}

/// The commit checked out in the repository that contains `dir` (its HEAD), and the repo.
pub fn open_head(dir: &Path) -> anyhow::Result<(Repository, Oid)> {
    let repo =
        Repository::discover(dir).with_context(|| format!("{} is not inside a git repository", dir.display()))?;
    let head = repo
        .head()
        .context("the repository has no HEAD commit")?
        .peel_to_commit()
        .context("HEAD is not a commit")?
        .id();
    Ok((repo, head))
}

/// The path of `dir` relative to the repository's work tree, `/`-separated.
pub fn prefix_in_repo(repo: &Repository, dir: &Path) -> anyhow::Result<String> {
    let workdir = repo.workdir().context("the repository is bare")?;
    let workdir = workdir.canonicalize()?;
    let dir = dir.canonicalize()?;
    let rel = dir.strip_prefix(&workdir).unwrap_or(Path::new(""));
    Ok(rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"))
}

/// How berth authenticates to the git host.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    /// An https token (GitHub: a PAT or an app installation token).
    pub token: Option<String>,
    /// A private key file for ssh.
    pub ssh_key: Option<std::path::PathBuf>,
}

impl Auth {
    /// The credentials the repo config names, read from the environment (the edge).
    pub fn from_env(repo: &crate::core::config::RepoConfig) -> Auth {
        Auth {
            token: repo.token_env.as_ref().and_then(|v| std::env::var(v).ok()),
            ssh_key: repo.ssh_key.as_ref().map(Into::into),
        }
    }
}

/// An environment's ref, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// `refs/heads/develop` or `refs/tags/v1.2.0`.
    pub ref_name: String,
    pub commit: Oid,
    /// `X.Y.Z` for a tag.
    pub version: Option<String>,
}

/// A bare mirror of the remote in the work directory: fetched, never checked out; files
/// are read straight from commit trees.
pub struct Mirror {
    pub repo: Repository,
    url: String,
    auth: Auth,
}

fn callbacks(auth: &Auth) -> git2::RemoteCallbacks<'_> {
    let mut cb = git2::RemoteCallbacks::new();
    cb.credentials(move |_url, username, allowed| {
        if allowed.contains(git2::CredentialType::SSH_KEY)
            && let Some(key) = &auth.ssh_key
        {
            return git2::Cred::ssh_key(username.unwrap_or("git"), None, key, None);
        }
        if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT)
            && let Some(token) = &auth.token
        {
            return git2::Cred::userpass_plaintext("x-access-token", token);
        }
        git2::Cred::default()
    });
    cb
}

impl Mirror {
    /// Opens the mirror in `dir`, or creates it (a bare repository with remote `origin`).
    pub fn open(url: &str, dir: &Path, auth: Auth) -> anyhow::Result<Mirror> {
        let repo = match Repository::open_bare(dir) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
                let r = Repository::init_bare(dir)
                    .with_context(|| format!("cannot create a git mirror in {}", dir.display()))?;
                r.remote("origin", url)?;
                r
            }
        };
        if repo.find_remote("origin").ok().and_then(|r| r.url().ok().map(str::to_string)).as_deref() != Some(url) {
            repo.remote_set_url("origin", url)?;
        }
        Ok(Mirror { repo, url: url.to_string(), auth })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops what libgit2 keeps from the last read (its object cache holds every small
    /// tree a walk touched: ~1.5 MiB for 1,000 service folders) by opening the repository
    /// afresh. A failed reopen keeps the old handle.
    pub fn release_caches(&mut self) {
        if let Ok(repo) = Repository::open_bare(self.repo.path()) {
            self.repo = repo;
        }
    }

    /// The remote's refs (one ref negotiation, no objects), annotated tags peeled.
    pub fn list_remote(&self) -> anyhow::Result<BTreeMap<String, Oid>> {
        let mut remote = self.repo.find_remote("origin")?;
        let conn = remote
            .connect_auth(git2::Direction::Fetch, Some(callbacks(&self.auth)), None)
            .with_context(|| format!("cannot reach {}", self.url))?;
        let mut out = BTreeMap::new();
        for head in conn.list()? {
            let name = head.name();
            if let Some(base) = name.strip_suffix("^{}") {
                out.insert(base.to_string(), head.oid());
            } else {
                out.entry(name.to_string()).or_insert(head.oid());
            }
        }
        Ok(out)
    }

    /// Fetches branches and tags.
    pub fn fetch(&self) -> anyhow::Result<()> {
        let mut remote = self.repo.find_remote("origin")?;
        let mut opts = git2::FetchOptions::new();
        opts.remote_callbacks(callbacks(&self.auth));
        opts.download_tags(git2::AutotagOption::All);
        opts.prune(git2::FetchPrune::On);
        remote
            .fetch(&["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"], Some(&mut opts), None)
            .with_context(|| format!("cannot fetch {}", self.url))?;
        Ok(())
    }

    pub fn has_commit(&self, oid: Oid) -> bool {
        self.repo.find_commit(oid).is_ok()
    }
}

/// What a tag environment has before its first release.
pub const NO_RELEASE: &str = "the remote has no release tag vX.Y.Z yet";

/// The ref an environment deploys, from the remote's ref list; `None`: a tag environment
/// with no release yet (a state, not an error).
pub fn resolve(refs: &BTreeMap<String, Oid>, source: &crate::core::config::Source) -> anyhow::Result<Option<Resolved>> {
    use crate::core::config::Source;
    match source {
        Source::Branch(b) => {
            let name = format!("refs/heads/{b}");
            let commit = *refs.get(&name).with_context(|| format!("the remote has no branch `{b}`"))?;
            Ok(Some(Resolved { ref_name: name, commit, version: None }))
        }
        Source::SemverTags { prereleases } => {
            let best = refs
                .iter()
                .filter_map(|(name, oid)| {
                    let tag = name.strip_prefix("refs/tags/v")?;
                    let v = semver::Version::parse(tag).ok()?;
                    (v.build.is_empty() && (*prereleases || v.pre.is_empty())).then_some((v, name, *oid))
                })
                .max_by(|a, b| a.0.cmp(&b.0));
            Ok(best.map(|(v, name, oid)| Resolved {
                ref_name: name.clone(),
                commit: oid,
                version: Some(v.to_string()),
            }))
        }
    }
}

/// The deploy files of a commit, read from its tree: one walk finds the service files and
/// the `config.yaml` blobs, which are then read by id.
pub fn read_commit(repo: &Repository, commit: Oid, glob: &str) -> anyhow::Result<crate::core::spec::RepoFiles> {
    use crate::core::spec::RepoFiles;
    let matcher = super::dir::matcher(glob)?;
    let tree = repo.find_commit(commit)?.tree()?;
    let mut out = RepoFiles::default();
    let mut found: Vec<(String, Oid)> = Vec::new();
    let mut configs: BTreeMap<String, Oid> = BTreeMap::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
        // Hidden folders are skipped, as when reading a directory (source::dir).
        if entry.name().is_ok_and(|n| n.starts_with('.')) {
            return git2::TreeWalkResult::Skip;
        }
        if entry.kind() == Some(git2::ObjectType::Blob) {
            let name = entry.name().unwrap_or_default();
            let path = format!("{root}{name}");
            if matcher.is_match(&path) {
                found.push((path.clone(), entry.id()));
            }
            if name == "config.yaml" {
                configs.insert(path, entry.id());
            }
        }
        git2::TreeWalkResult::Ok
    })?;
    let text = |id: Oid| -> anyhow::Result<String> {
        // One byte over the cap is enough for the parser to refuse the file (core::yaml).
        let blob = repo.find_blob(id)?;
        let content = blob.content();
        let content = &content[..content.len().min(crate::core::yaml::MAX_FILE_BYTES + 1)];
        Ok(String::from_utf8_lossy(content).into_owned())
    };
    for (path, id) in found {
        out.files.insert(path.clone(), text(id)?);
        let deploy = RepoFiles::deploy_dir(&path);
        let prefix = format!("{deploy}/");
        for (config, id) in configs.range(prefix.clone()..).take_while(|(p, _)| p.starts_with(&prefix)) {
            // `<deploy>/<env>/config.yaml`, one folder down only.
            if RepoFiles::env_of(deploy, config).is_some_and(|env| !env.contains('/')) {
                out.files.insert(config.clone(), text(*id)?);
            }
        }
        out.service_files.push(path);
    }
    out.service_files.sort();
    Ok(out)
}

/// The release version of a checkout's HEAD: a `vX.Y.Z` tag pointing at it.
pub fn head_version(repo: &Repository, head: Oid) -> Option<String> {
    let names = repo.tag_names(None).ok()?;
    names
        .iter()
        .filter_map(|n| n.ok().flatten())
        .filter_map(|n| {
            let v = semver::Version::parse(n.strip_prefix('v')?).ok()?;
            let target = repo.revparse_single(&format!("refs/tags/{n}")).ok()?.peel_to_commit().ok()?.id();
            (target == head && v.pre.is_empty()).then_some(v)
        })
        .max()
        .map(|v| v.to_string())
}
