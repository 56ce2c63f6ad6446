//! Git: which commit last changed each service's folder.
//!
//! The walk follows first parents, the history of the deploying branch itself: a merge
//! into `develop` is the commit CI built the image for. The generated CI workflow computes
//! the same id with `git log -1 --first-parent --format=%H -- <folder>`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use git2::{Oid, Repository, Tree};

/// The tree (or blob) id at `dir` in `tree`; the root tree for "".
fn id_at(tree: &Tree<'_>, dir: &str) -> Option<Oid> {
    if dir.is_empty() {
        return Some(tree.id());
    }
    tree.get_path(Path::new(dir)).ok().map(|e| e.id())
}

/// For each folder, the newest commit on `head`'s first-parent line whose tree differs at
/// that folder from its parent's (or the root commit).
pub fn path_commits(repo: &Repository, head: Oid, dirs: &[String]) -> anyhow::Result<BTreeMap<String, Oid>> {
    let mut resolved = BTreeMap::new();
    let mut pending: Vec<&String> = dirs.iter().collect();
    pending.sort();
    pending.dedup();
    let mut current = repo.find_commit(head).context("cannot find the head commit")?;
    let tree = current.tree()?;
    let mut ids: BTreeMap<&String, Option<Oid>> = pending.iter().map(|d| (*d, id_at(&tree, d))).collect();
    while !pending.is_empty() {
        let Ok(parent) = current.parent(0) else {
            for d in pending.drain(..) {
                resolved.insert(d.clone(), current.id());
            }
            break;
        };
        let parent_tree = parent.tree()?;
        let mut next_ids = BTreeMap::new();
        pending.retain(|d| {
            let before = id_at(&parent_tree, d);
            if before != ids[d] {
                resolved.insert((*d).clone(), current.id());
                false
            } else {
                next_ids.insert(*d, before);
                true
            }
        });
        ids = next_ids;
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

/// The ref an environment deploys, from the remote's ref list.
pub fn resolve(refs: &BTreeMap<String, Oid>, source: &crate::core::config::Source) -> anyhow::Result<Resolved> {
    use crate::core::config::Source;
    match source {
        Source::Branch(b) => {
            let name = format!("refs/heads/{b}");
            let commit = *refs.get(&name).with_context(|| format!("the remote has no branch `{b}`"))?;
            Ok(Resolved { ref_name: name, commit, version: None })
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
            let (v, name, oid) = best.context("the remote has no release tag vX.Y.Z yet")?;
            Ok(Resolved { ref_name: name.clone(), commit: oid, version: Some(v.to_string()) })
        }
    }
}

/// The deploy files of a commit, read from its tree.
pub fn read_commit(repo: &Repository, commit: Oid, glob: &str) -> anyhow::Result<crate::core::spec::RepoFiles> {
    let matcher = super::dir::matcher(glob)?;
    let tree = repo.find_commit(commit)?.tree()?;
    let mut out = crate::core::spec::RepoFiles::default();
    let mut found = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
        // Hidden folders are skipped, as when reading a directory (source::dir).
        if entry.name().is_ok_and(|n| n.starts_with('.')) {
            return git2::TreeWalkResult::Skip;
        }
        if entry.kind() == Some(git2::ObjectType::Blob) {
            let path = format!("{root}{}", entry.name().unwrap_or_default());
            if matcher.is_match(&path) {
                found.push(path);
            }
        }
        git2::TreeWalkResult::Ok
    })?;
    for path in found {
        let blob = tree.get_path(Path::new(&path))?.to_object(repo)?.peel_to_blob()?;
        out.files.insert(path.clone(), String::from_utf8_lossy(blob.content()).into_owned());
        let deploy = crate::core::spec::RepoFiles::deploy_dir(&path);
        if let Ok(entry) = tree.get_path(Path::new(deploy))
            && let Ok(deploy_tree) = entry.to_object(repo).and_then(|o| o.peel_to_tree())
        {
            for env in deploy_tree.iter() {
                if env.kind() != Some(git2::ObjectType::Tree) {
                    continue;
                }
                let config = format!("{deploy}/{}/config.yaml", env.name().unwrap_or_default());
                if let Ok(e) = tree.get_path(Path::new(&config))
                    && let Ok(blob) = e.to_object(repo).and_then(|o| o.peel_to_blob())
                {
                    out.files.insert(config, String::from_utf8_lossy(blob.content()).into_owned());
                }
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
