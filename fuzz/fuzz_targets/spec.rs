//! A service folder from arbitrary bytes: `service.yaml`, then (after a NUL byte) its
//! `pre/config.yaml`; loaded, checked across services and resolved for `pre`. Any input may
//! be rejected with diagnostics; none may panic or hang.
#![no_main]

use berth::core::spec::load::{Repo, RepoFiles};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (service, env) = text.split_once('\0').unwrap_or((&text, ""));
    let mut files = RepoFiles::default();
    files.files.insert("services/x/deploy/service.yaml".into(), service.to_string());
    files.files.insert("services/x/deploy/pre/config.yaml".into(), env.to_string());
    files.service_files.push("services/x/deploy/service.yaml".into());
    let repo = Repo::load(&files);
    for def in &repo.services {
        let _ = def.resolve("pre");
    }
});
