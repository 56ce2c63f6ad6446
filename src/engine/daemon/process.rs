//! What the daemon asks of its process and host: malloc settings, freeing memory between
//! cycles, and watching the config file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::core::config::Config;

/// One malloc arena for the whole process (glibc otherwise gives busy threads arenas of
/// their own, each keeping its freed pages): the daemon spends its time waiting on AWS,
/// not allocating, so the shared lock costs nothing measurable, and idle RSS at 1,000
/// services drops by ~4 MiB (docs/benchmarks.md). `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES`
/// in the environment still win. Call before any thread starts.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() && std::env::var_os("GLIBC_TUNABLES").is_none() {
        // SAFETY: mallopt only sets a tunable of glibc's allocator; no thread is running yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Hands the memory a cycle allocated and freed back to the system. glibc keeps freed heap
/// pages mapped for reuse; between cycles the daemon only waits, so an idle agent would
/// otherwise hold its busiest cycle's peak (measured in docs/benchmarks.md, footprint).
pub(super) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes glibc's arena locks itself and only returns free pages; it
    // touches no memory Rust owns.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if tracing::enabled!(tracing::Level::DEBUG) {
        // mallinfo, not mallinfo2 (glibc 2.33+): berth still builds on older glibc. Its
        // `int` fields wrap past 2 GiB, far above what the daemon holds.
        // SAFETY: mallinfo only reads glibc's allocator statistics.
        let m = unsafe { libc::mallinfo() };
        tracing::debug!(
            heap_in_use = m.uordblks,
            heap_free = m.fordblks,
            heap_mapped = m.hblkhd,
            heap_total = m.arena,
            "heap after the cycle"
        );
    }
}

/// Watches the config file and sends each valid new version; an invalid one is logged
/// and the running config kept.
pub fn watch_config(path: PathBuf, tx: mpsc::Sender<Arc<Config>>) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let dir = path
        .parent()
        .map(|p| if p.as_os_str().is_empty() { std::path::Path::new(".") } else { p })
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let file_name = path.file_name().map(|f| f.to_os_string());
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(ev) = event
            && ev.paths.iter().any(|p| p.file_name().map(|f| f.to_os_string()) == file_name)
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            let _ = raw_tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        let mut last: Option<String> = None;
        while raw_rx.recv().await.is_some() {
            // Editors write in several steps: settle first.
            tokio::time::sleep(Duration::from_millis(200)).await;
            while raw_rx.try_recv().is_ok() {}
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            if last.as_deref() == Some(text.as_str()) {
                continue;
            }
            last = Some(text.clone());
            match Config::parse(&path.to_string_lossy(), &text) {
                Ok(c) => {
                    if tx.send(Arc::new(c)).await.is_err() {
                        break;
                    }
                }
                Err(d) => tracing::error!(errors = %d, "the changed config is invalid; keeping the running one"),
            }
        }
    });
    Ok(watcher)
}
