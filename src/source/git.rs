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
    let repo = Repository::discover(dir).with_context(|| format!("{} is not inside a git repository", dir.display()))?;
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
