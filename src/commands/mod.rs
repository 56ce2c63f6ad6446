//! One module per subcommand: glue between the CLI, the shell (files, git, AWS) and the core.

pub mod converge;
pub mod daemon;
pub mod new;
pub mod operate;
pub mod render;
pub mod run;
pub mod schema;
pub mod status;
pub mod validate;

use std::path::Path;

use anyhow::Context as _;

use crate::core::config::{Config, DEFAULT_DISCOVERY};
use crate::core::spec::{Repo, RepoFiles};

/// The contract's exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Ok,
    Failed,
    Drift,
    /// A usage error (EX_USAGE): never 2, which means drift for `berth diff`.
    Usage,
    /// `berth run`: the exit code of the task's container.
    Task(u8),
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Drift => 2,
            Exit::Usage => 64,
            Exit::Task(c) => c,
        }
    }
}

/// Writes a command's output to stdout. A closed pipe (`berth schema | head`) is not an
/// error: the reader has what it wanted.
pub fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Loads an agent config, turning its diagnostics into one error.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    crate::source::dir::config(path).map_err(|d| anyhow::anyhow!("invalid config:\n{d}"))
}

/// Loads an agent config and one of its environments (an error naming the file when the
/// environment is not in it).
pub fn load_env(path: &Path, env: &str) -> anyhow::Result<(Config, crate::core::config::EnvConfig)> {
    let config = load_config(path)?;
    let found =
        config.env(env).cloned().with_context(|| format!("environment `{env}` is not in {}", path.display()))?;
    Ok((config, found))
}

/// Reads and loads the services of a directory.
pub fn load_dir(root: &Path, glob: Option<&str>) -> anyhow::Result<(RepoFiles, Repo)> {
    let files = crate::source::dir::read(root, glob.unwrap_or(DEFAULT_DISCOVERY))
        .with_context(|| format!("cannot read the repository at {}", root.display()))?;
    let repo = Repo::load(&files);
    Ok((files, repo))
}
