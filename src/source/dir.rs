//! Reading a repository's deploy files from a directory (a checkout, or any folder).

use std::path::Path;

use anyhow::Context as _;
use globset::GlobMatcher;

use crate::core::spec::RepoFiles;

/// Reads and checks the agent config file at `path`.
pub fn config(path: &Path) -> Result<crate::core::config::Config, crate::core::diag::Diagnostics> {
    use crate::core::diag::{Diagnostic, Diagnostics, Pos};
    let name = path.to_string_lossy();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::new(Pos::file_start(&*name), format!("cannot read the config: {e}"))])
    })?;
    crate::core::config::Config::parse(&name, &text)
}

pub fn matcher(glob: &str) -> anyhow::Result<GlobMatcher> {
    Ok(globset::GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .with_context(|| format!("invalid discovery glob `{glob}`"))?
        .compile_matcher())
}

/// Finds every file under `root` matching `glob` and reads it with the
/// `deploy/<env>/config.yaml` files beside it. Hidden folders (`.git`, …) are skipped.
pub fn read(root: &Path, glob: &str) -> anyhow::Result<RepoFiles> {
    let matcher = matcher(glob)?;
    let mut out = RepoFiles::default();
    let walk = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walk {
        let entry = entry.with_context(|| format!("cannot read {}", root.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = relative(root, entry.path());
        if !matcher.is_match(&rel) {
            continue;
        }
        out.files.insert(rel.clone(), read_text(entry.path())?);
        let deploy = entry.path().parent().unwrap_or(root);
        let Ok(children) = std::fs::read_dir(deploy) else { continue };
        for child in children.flatten() {
            let config = child.path().join("config.yaml");
            if child.path().is_dir() && config.is_file() {
                out.files.insert(relative(root, &config), read_text(&config)?);
            }
        }
        out.service_files.push(rel);
    }
    Ok(out)
}

/// Files berth does not read though their author likely meant it to: `service.yml` or
/// `config.yml` where berth reads `.yaml`, and a `service.yaml` or `config.yaml` that is
/// not a regular file (a folder, a symlink). Each is `(path, what to do)`.
pub fn near_misses(root: &Path, glob: &str) -> anyhow::Result<Vec<(String, String)>> {
    let matcher = matcher(glob)?;
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walk.flatten() {
        let rel = relative(root, entry.path());
        let name = entry.file_name().to_string_lossy();
        let in_deploy = rel.split('/').any(|c| c == "deploy");
        // As `read` sees it: a symlink is not followed.
        let is_file = entry.file_type().is_file();
        if let Some(stem) = name.strip_suffix(".yml").filter(|s| *s == "service" || *s == "config")
            && in_deploy
        {
            out.push((rel.clone(), format!("not read: berth reads `{stem}.yaml`; rename it")));
        } else if !is_file && (matcher.is_match(&rel) || (name == "config.yaml" && in_deploy)) {
            out.push((
                rel.clone(),
                "not read: berth reads regular files only (this is a folder or a symlink)".to_string(),
            ));
        }
    }
    Ok(out)
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    // One byte over the cap is enough for the parser to refuse the file (core::yaml).
    let cap = crate::core::yaml::MAX_FILE_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(cap).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {}", path.display()))?;
    // A file that is not UTF-8 is reported by the YAML parser with its position.
    Ok(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}
