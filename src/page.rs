//! The status page on the metrics listener: `GET /` (environments × services, with
//! filters) and `GET /services/{env}/{name}` (one service, with its recent applies).
//! Server-rendered HTML (maud): no script, no external assets (it runs in VPCs without
//! internet), a table per environment with a caption and column headers, labelled
//! filters, text next to every colour. It refreshes itself every 10 s. The same data as
//! `/status`.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::engine::history::Entry;
use crate::engine::status::{EnvStatus, Health, ServiceStatus, Status, Sync};

/// What the page's filters ask for (`?env=&service=&state=`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub env: String,
    #[serde(default)]
    pub service: String,
    /// `problems` (anything but Synced and Healthy), a sync or a health value, or empty.
    #[serde(default)]
    pub state: String,
}

impl Filter {
    fn keeps(&self, env: &EnvStatus, s: &ServiceStatus) -> bool {
        let state = self.state.as_str();
        (self.env.is_empty() || env.name == self.env)
            && (self.service.is_empty() || s.name.contains(self.service.as_str()))
            && match state {
                "" => true,
                "problems" => !(s.sync == Sync::Synced && s.health == Health::Healthy),
                other => s.sync.as_str() == other || s.health.as_str() == other,
            }
    }
}

const CSS: &str = r#"
body{font:15px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1b1b;background:#fff}
header{background:#12304a;color:#fff;padding:.6rem 1rem}header a{color:#fff}
main{padding:0 1rem 2rem}h1{font-size:1.2rem;margin:0}h2{font-size:1.05rem;margin:1.4rem 0 .3rem}
form{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;margin:1rem 0}
label{display:flex;flex-direction:column;font-size:.85rem}input,select,button{font:inherit;padding:.3rem}
.wrap{overflow-x:auto}table{border-collapse:collapse;width:100%;min-width:48rem}
caption{text-align:left;font-size:.85rem;color:#3d3d3d;padding:.2rem 0}
th,td{border-bottom:1px solid #d0d0d0;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#eef2f5}code{font-size:.85rem}
.ok{background:#e3f4e6;color:#0b4d1c}.warn{background:#fff4d6;color:#5c3d00}
.bad{background:#fde4e4;color:#7a0b0b}.info{background:#e6eefc;color:#12306b}
.badge{display:inline-block;padding:0 .4rem;border-radius:.3rem;font-weight:600}
.note{color:#3d3d3d;font-size:.85rem}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
dt{font-weight:600}
"#;

fn class_of_sync(s: Sync) -> &'static str {
    match s {
        Sync::Synced => "ok",
        Sync::OutOfSync => "warn",
        Sync::Unknown => "bad",
    }
}

fn class_of_health(h: Health) -> &'static str {
    match h {
        Health::Healthy => "ok",
        Health::Progressing | Health::Missing => "warn",
        Health::Pinned | Health::Paused | Health::Orphaned | Health::Unmanaged => "info",
        Health::Degraded | Health::Unknown => "bad",
    }
}

fn short(text: Option<&str>, n: usize) -> String {
    text.map_or_else(|| "-".to_string(), |t| t.chars().take(n).collect())
}

fn revision(s: &ServiceStatus) -> String {
    s.task_definition.as_deref().and_then(|t| t.rsplit('/').next()).unwrap_or("-").to_string()
}

fn image_tag(s: &ServiceStatus) -> String {
    s.image_tag.clone().unwrap_or_else(|| "-".into())
}

/// What the row says besides sync and health: the hold, pin or pause, and the error's
/// first problem (an invalid spec's `path:line:col`).
fn state_note(s: &ServiceStatus) -> String {
    if let Some(p) = &s.pinned {
        return p.to_string();
    }
    if let Some(p) = &s.paused {
        return p.to_string();
    }
    let held = if s.held { "held: the rollout of this spec failed" } else { "" };
    match &s.last_error {
        Some(e) => crate::commands::status::first_problem(e),
        None => held.to_string(),
    }
}

fn layout(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content="10";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                header { h1 { a href="/" { "berth" } " · " (title) } }
                main { (body) }
            }
        }
    }
    .into_string()
}

/// `GET /`.
pub fn index(status: &Status, filter: &Filter) -> String {
    let envs: Vec<&EnvStatus> = status.environments.iter().collect();
    let body = html! {
        form method="get" action="/" aria-label="Filter the services" {
            label { "Environment"
                select name="env" {
                    option value="" selected[filter.env.is_empty()] { "all" }
                    @for e in &envs { option value=(e.name) selected[filter.env == e.name] { (e.name) } }
                }
            }
            label { "Service" input type="search" name="service" value=(filter.service) placeholder="name contains"; }
            label { "State"
                select name="state" {
                    @for (v, text) in [("", "all"), ("problems", "not Synced/Healthy"), ("OutOfSync", "OutOfSync"), ("Unknown", "Unknown"), ("Progressing", "Progressing"), ("Degraded", "Degraded"), ("Pinned", "Pinned"), ("Paused", "Paused"), ("Orphaned", "Orphaned")] {
                        option value=(v) selected[filter.state == v] { (text) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        p.note { "Refreshes every 10 s. The same data as " a href="/status" { "/status" } " (JSON) and " a href="/metrics" { "/metrics" } "." }
        @for env in envs.iter().filter(|e| filter.env.is_empty() || e.name == filter.env) {
            @let rows: Vec<&ServiceStatus> = env.services.iter().filter(|s| filter.keeps(env, s)).collect();
            h2 id=(format!("env-{}", env.name)) { "Environment " (env.name) }
            p.note {
                (env.ref_name.as_deref().unwrap_or("-")) " at " code { (short(env.commit.as_deref(), 12)) }
                @if let Some(a) = &env.account { " · account " (a) }
                @if let Some(r) = &env.region { " · " (r) }
                @if let Some(r) = &env.role { " · this replica: " (r) }
                @if env.no_release { " · no release yet: nothing to deploy until the first vX.Y.Z tag" }
                @if let Some(e) = &env.last_fetch_error { " · git: " (e) }
                @if let Some(e) = &env.aws_unavailable { " · AWS does not answer: " (e) }
            }
            div.wrap {
                table {
                    caption { (rows.len()) " of " (env.services.len()) " services in " (env.name) }
                    thead { tr {
                        th scope="col" { "Service" } th scope="col" { "Sync" } th scope="col" { "Health" }
                        th scope="col" { "Commit" } th scope="col" { "Image tag" } th scope="col" { "Revision" }
                        th scope="col" { "Drift" } th scope="col" { "Error or state" }
                    } }
                    tbody {
                        @for s in &rows {
                            tr {
                                th scope="row" { a href=(format!("/services/{}/{}", env.name, s.name)) { (s.name) } }
                                td { span class=(format!("badge {}", class_of_sync(s.sync))) { (s.sync.as_str()) } }
                                td { span class=(format!("badge {}", class_of_health(s.health))) { (s.health.as_str()) } }
                                td { code { (short(s.commit.as_deref(), 12)) } }
                                td { code { (image_tag(s)) } }
                                td { code { (revision(s)) } }
                                td { @if s.drift.is_empty() { "-" } @else { (s.drift.join(", ")) } }
                                td { (state_note(s)) }
                            }
                        }
                        @if rows.is_empty() { tr { td colspan="8" { "no service matches" } } }
                    }
                }
            }
        }
    };
    layout("status", body)
}

/// `GET /services/{env}/{name}`; `None` when there is no such service.
pub fn service(status: &Status, env: &str, name: &str, recent: &[Entry]) -> Option<String> {
    let e = status.environments.iter().find(|e| e.name == env)?;
    let s = e.services.iter().find(|s| s.name == name)?;
    let body = html! {
        p { a href=(format!("/?env={env}")) { "← all services of " (env) } }
        dl {
            dt { "Sync" } dd { span class=(format!("badge {}", class_of_sync(s.sync))) { (s.sync.as_str()) } }
            dt { "Health" } dd { span class=(format!("badge {}", class_of_health(s.health))) { (s.health.as_str()) } }
            dt { "Commit" } dd { code { (s.commit.as_deref().unwrap_or("-")) } }
            dt { "Image tag" } dd { code { (image_tag(s)) } }
            dt { "Task definition" } dd { code { (s.task_definition.as_deref().unwrap_or("-")) } }
            dt { "Spec hash" } dd { code { (short(s.spec_hash.as_deref(), 12)) } }
            dt { "Drift" } dd { @if s.drift.is_empty() { "-" } @else { (s.drift.join(", ")) } }
            @if let Some(p) = &s.pinned { dt { "Pinned" } dd { (p.to_string()) } }
            @if let Some(p) = &s.paused { dt { "Paused" } dd { (p.to_string()) } }
            @if s.held { dt { "Held" } dd { "the rollout of this spec failed; berth applies it again only when git changes the service" } }
            @if let Some(c) = &s.last_change { dt { "Last change" } dd { (c.trigger.to_string()) } }
            @if let Some(err) = &s.last_error { dt { "Last error" } dd { pre { (err) } } }
        }
        h2 { "Recent applies" }
        @if recent.is_empty() {
            p.note { "None recorded by this daemon yet (" code { "berth history" } " reads the state table)." }
        } @else {
            div.wrap { table {
                caption { "Newest first" }
                thead { tr { th scope="col" { "Time (UTC)" } th scope="col" { "Trigger" } th scope="col" { "Commit" } th scope="col" { "Revision" } th scope="col" { "Result" } } }
                tbody { @for r in recent { tr {
                    td { (humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(r.time.max(0.0))).to_string()) }
                    td { (r.trigger.to_string()) }
                    td { code { (short(Some(r.commit.as_str()), 12)) } }
                    td { code { (r.revision.rsplit('/').next().unwrap_or("-")) } }
                    td { (r.result) }
                } } }
            } }
        }
    };
    Some(layout(&format!("{name} in {env}"), body))
}
