//! Where specs come from: a directory on disk, or a commit of a git repository.

pub mod checkout;
pub mod dir;
pub mod git;
