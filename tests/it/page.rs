//! The status page (`GET /`) in headless Chromium, Debian's `chromium` (scripts/setup.sh
//! installs it), against a daemon on moto: what a person would see.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::support::world::World;

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

/// Chromium with what a closed network needs (no background connections) and a profile
/// of its own.
fn chrome(binary: &PathBuf, profile: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("cannot run chromium");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The page as Chromium rendered it (the DOM after parsing).
fn dom(binary: &PathBuf, profile: &std::path::Path, url: &str) -> String {
    String::from_utf8_lossy(&chrome(binary, profile, &["--dump-dom", url]).stdout).into_owned()
}

#[test]
fn the_status_page_shows_services_filters_and_a_service_page() {
    let Some(binary) = chromium() else {
        assert!(std::env::var_os("CI").is_none(), "chromium is not installed, and CI is set");
        eprintln!("SKIPPED the_status_page…: no chromium (scripts/setup.sh installs it)");
        return;
    };
    let w = World::new();
    *w.poll_interval.borrow_mut() = "1s".into();
    *w.envs.borrow_mut() = vec!["pre"];
    w.rewrite_config();
    let d = Daemon::ready(&w);
    w.commit_edit("services/notifier/deploy/service.yaml", |t| t.replace("count: 1", "count: [1"), "notifier: broken");
    let bpg = w.commit_edit("services/bpg/deploy/pre/config.yaml", |t| t.replace("debug", "info"), "bpg: info");
    w.push_images();
    w.push();
    d.wait_for("bpg applied", Duration::from_secs(30), |d| {
        d.service("pre", "bpg").is_some_and(|s| s["commit"] == bpg.as_str() && s["sync"] == "Synced")
    });
    let profile = tempfile::tempdir().unwrap();
    let base = format!("http://{}", d.metrics);

    let page = dom(&binary, profile.path(), &format!("{base}/"));
    assert!(page.contains("<caption>4 of 4 services in pre</caption>"), "{page}");
    for name in ["bpg", "klausapproves", "ledger", "notifier"] {
        assert!(page.contains(&format!("href=\"/services/pre/{name}\">{name}</a>")), "{name}: {page}");
    }
    // The broken service's row names the file, line and column.
    assert!(page.contains("services/notifier/deploy/service.yaml:7:"), "{page}");
    assert!(page.contains(&format!("<code>{}</code>", &bpg[..12])), "bpg's commit: {page}");
    assert!(page.contains("<label>Environment"), "labelled filters: {page}");

    // The filter: only what is not Synced and Healthy.
    let problems = dom(&binary, profile.path(), &format!("{base}/?state=problems"));
    assert!(problems.contains("<caption>1 of 4 services in pre</caption>"), "{problems}");
    assert!(problems.contains(">notifier</a>") && !problems.contains(">bpg</a>"), "{problems}");

    // A service's page: its status and the applies this daemon made.
    let service = dom(&binary, profile.path(), &format!("{base}/services/pre/bpg"));
    assert!(service.contains("Recent applies") && service.contains("git change"), "{service}");
    assert!(service.contains(bpg.as_str()), "{service}");

    // A screenshot, as docs/status-page.png shows it.
    let png = profile.path().join("page.png");
    chrome(
        &binary,
        profile.path(),
        &[&format!("--screenshot={}", png.display()), "--window-size=1280,720", &format!("{base}/")],
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "{} bytes", bytes.len());
    // `BERTH_SCREENSHOT=docs/status-page.png cargo test --test it page::` renews the docs' one.
    if let Some(to) = std::env::var_os("BERTH_SCREENSHOT") {
        std::fs::write(to, bytes).unwrap();
    }
}
