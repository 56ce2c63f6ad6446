//! The collect phase: what the decisions need from AWS, read in batches. Every lookup
//! answers per item: a failed batch fails the services in it, and no other.

use std::collections::{BTreeMap, BTreeSet};

use super::decide::{Decider, desired};
use super::table::{Stage, Table};
use super::{Failure, Outcome};
use crate::aws::answers::{Answer, Digest};
use crate::aws::{AwsError, Verified, VerifyRequest, concurrently};
use crate::core::config::EnvConfig;
use crate::core::desired::tags;
use crate::core::live::{LivePolicy, LiveState};
use crate::core::memo::Answers;
use crate::core::plan::Action;
use crate::engine::cloud::Cloud;

/// Services read and planned per batch. A multiple of the DescribeServices (10) and
/// DescribeScalableTargets (50) batches, so a steady poll (every service exists) takes as
/// many requests as reading all at once (services that do not exist yet can cost one
/// DescribeScalableTargets more per batch, never more than ⌈N/50⌉ in all); small enough
/// that a poll of 1,000 services never holds every live state (and the SDK answers they
/// come from) at once.
const LIVE_BATCH: usize = 100;

/// DescribeServices takes ten names; DescribeScalableTargets pages of 50.
const SERVICES_BATCH: usize = 10;
const TARGETS_BATCH: usize = 50;

/// Verifies the references and images of every resolved service, in batches across all
/// of them; what was found before comes from the cache.
pub async fn verify<C: Cloud>(cloud: &C, table: &mut Table, decider: &Decider<'_>) -> Verified {
    let mut req = VerifyRequest::default();
    for row in table.rows.values() {
        if let Some(spec) = row.stage.spec() {
            decider.verify_request(spec, &mut req);
        }
    }
    cloud.verify(&req, false).await
}

/// Before applying, asks AWS afresh about the references of the services that will change
/// (the poll may have answered from the cache). Image tags are not asked again: once
/// pushed, a tag is there.
pub async fn verify_changing<C: Cloud>(cloud: &C, table: &mut Table, decider: &Decider<'_>) {
    let changing: Vec<String> = table
        .rows
        .iter()
        .filter(|(_, r)| matches!(&r.stage, Stage::Planned { plan, .. } if !plan.actions.is_empty() && plan.blockers.is_empty()))
        .map(|(n, _)| n.clone())
        .collect();
    if changing.is_empty() {
        return;
    }
    let mut req = VerifyRequest::default();
    for name in &changing {
        if let Some(spec) = table.rows[name].stage.spec() {
            decider.verify_request(spec, &mut req);
        }
    }
    req.images.clear();
    let fresh = cloud.verify(&req, true).await;
    for name in changing {
        let Some(spec) = table.rows[&name].stage.spec().cloned() else { continue };
        if let Some(f) = decider.reference_failure(&spec, &fresh) {
            table.finish(&name, Outcome::Failed(f));
        }
    }
}

/// Reads the live state of the rendered services and plans each, a batch at a time: only
/// the states of services whose plan registers a revision outlive their batch.
pub async fn read_and_plan<C: Cloud>(cloud: &C, table: &mut Table, decider: &mut Decider<'_>, env: &EnvConfig) {
    let names = table.at(Stage::is_rendered);
    let routes = match (&env.ingress, names.is_empty()) {
        (Some(ingress), false) => Some(super::routes::EnvRoutes::read(cloud, ingress).await),
        _ => None,
    };
    let dashboards = match (env.dashboards, names.is_empty()) {
        (true, false) => Some(
            cloud
                .list_dashboards(&crate::core::dashboard::prefix(&env.name))
                .await
                .map(|d| d.into_iter().map(|d| (d.name.clone(), d)).collect::<BTreeMap<_, _>>()),
        ),
        _ => None,
    };
    // Rule priorities that plans of this cycle allocated, so that no two new rules share one.
    let mut claimed: Vec<(String, i32)> = Vec::new();
    let mut reader = LiveReader::new(cloud, &env.cluster, &names);
    for batch in names.chunks(LIVE_BATCH) {
        let known: BTreeMap<String, Digest> =
            batch.iter().filter_map(|n| Some((n.clone(), decider.known_answer(table, n)?))).collect();
        let mut answers = reader.read(batch, &known).await;
        while !answers.is_empty() {
            // Services whose batch answered as before but whose plan cannot be reused
            // undecoded (their scaling or routing changed): read again, decoded.
            let mut again = Vec::new();
            for (name, read) in answers {
                let state = match (read, &routes) {
                    (Ok(mut read), Some(routes)) => {
                        let spec = table.rows.get(&name).and_then(|r| r.stage.spec());
                        match routes.of(&name, &env.name, spec.map(|s| &**s), &claimed) {
                            Ok(r) => {
                                read.state.routing = Some(r);
                                Ok(read)
                            }
                            Err(e) => Err(("reading routing", e)),
                        }
                    }
                    (Ok(read), None) => Ok(read),
                    (Err(e), _) => Err(("reading live state", e)),
                };
                let state = match (state, &dashboards) {
                    (Ok(mut read), Some(Ok(d))) => {
                        read.state.dashboard =
                            d.get(&crate::core::dashboard::dashboard_name(&name, &env.name)).cloned();
                        Ok(read)
                    }
                    (Ok(_), Some(Err(e))) => Err(("reading dashboards", e.clone())),
                    (state, _) => state,
                };
                match state {
                    Ok(Read { state, answer: Some(service), same: true }) => {
                        let answers = Answers { service, rest: state.rest_fingerprint() };
                        if !decider.reuse(table, &name, answers) {
                            again.push(name);
                        }
                    }
                    Ok(Read { state, answer, .. }) => {
                        decider.plan(table, &name, state, answer);
                        if let Some(Stage::Planned { plan, .. }) = table.rows.get(&name).map(|r| &r.stage) {
                            claimed.extend(plan.actions.iter().filter_map(|a| match a {
                                Action::CreateRule { rule, priority, .. } => {
                                    Some((rule.listener_arn.clone(), *priority))
                                }
                                _ => None,
                            }));
                        }
                    }
                    Err((context, error)) => {
                        let failure = Failure::Aws { context, error, applying: false };
                        table.finish(&name, Outcome::Failed(failure));
                    }
                }
            }
            answers = if again.is_empty() { Vec::new() } else { reader.read(&again, &BTreeMap::new()).await };
        }
    }
}

/// Before registering, looks for a revision with this content already (one registered by
/// an attempt whose service update then failed, or the one a revert, a rollback or a heal
/// returns to): the families' newest revisions, a few lookups in flight at once.
pub async fn recent_revisions<C: Cloud>(cloud: &C, table: &mut Table, decider: &mut Decider<'_>) {
    let families: Vec<(String, String)> = table
        .rows
        .iter()
        .filter_map(|(name, r)| match &r.stage {
            Stage::Planned { rendering, plan, state: Some(_), .. }
                if plan.actions.iter().any(|a| matches!(a, Action::RegisterTaskDefinition { .. })) =>
            {
                Some((name.clone(), desired(rendering).task_definition.family.clone()))
            }
            _ => None,
        })
        .collect();
    let latest = concurrently(families.into_iter().map(|(name, family)| async move {
        let answer = cloud.recent_task_definitions(&family).await;
        (name, answer)
    }))
    .await;
    for (name, answer) in latest {
        match answer {
            Ok(latest) => decider.replan(table, &name, latest),
            Err(error) => {
                let failure = Failure::Aws { context: "reading live state", error, applying: false };
                table.finish(&name, Outcome::Failed(failure));
            }
        }
    }
}

/// Reads the live state of an environment's services, a batch at a time.
struct LiveReader<'a, C> {
    cloud: &'a C,
    cluster: &'a str,
    /// The resource ids of every service to be read.
    resource_ids: BTreeSet<String>,
    /// The environment's scaling policies by resource id: read (one listing of the
    /// namespace) when a batch first has a service that exists.
    policies: Option<Result<BTreeMap<String, Vec<LivePolicy>>, AwsError>>,
}

/// What a read found of one service: its live state, and the digest of the
/// DescribeServices answer it came from. `same`: that answer was the one known already
/// and was not decoded (`state` then has all but the service).
struct Read {
    state: LiveState,
    answer: Option<Digest>,
    same: bool,
}

type Reads = Vec<(String, Result<Read, AwsError>)>;

impl<'a, C: Cloud> LiveReader<'a, C> {
    fn new(cloud: &'a C, cluster: &'a str, names: &[String]) -> Self {
        let resource_ids = names.iter().map(|n| crate::core::desired::scaling_resource_id(cluster, n)).collect();
        LiveReader { cloud, cluster, resource_ids, policies: None }
    }

    /// The live state of each of `names`, or the error of the lookup that failed for it.
    /// `known`: the digests of the answers services were last planned from; a batch
    /// whose services all name the same one is not decoded if it answers that again.
    async fn read(&mut self, names: &[String], known: &BTreeMap<String, Digest>) -> Reads {
        let (cloud, cluster) = (self.cloud, self.cluster);
        let rid = |n: &str| crate::core::desired::scaling_resource_id(cluster, n);
        let mut failed: BTreeMap<String, AwsError> = BTreeMap::new();
        let mut services = BTreeMap::new();
        let mut digests: BTreeMap<String, (Digest, bool)> = BTreeMap::new();
        let chunks = names.chunks(SERVICES_BATCH).map(<[String]>::to_vec).map(|c| async move {
            let first = c.first().and_then(|n| known.get(n));
            let known = first.filter(|d| c.iter().all(|n| known.get(n) == Some(*d))).copied();
            let answer = cloud.describe_services_since(cluster, &c, known).await;
            (c, known, answer)
        });
        for (chunk, known, answer) in concurrently(chunks).await {
            match answer {
                Ok(Answer::Same) => {
                    let d = known.expect("only a known answer is the same");
                    digests.extend(chunk.into_iter().map(|n| (n, (d, true))));
                }
                Ok(Answer::New { value, digest }) => {
                    if let Some(d) = digest {
                        digests.extend(chunk.into_iter().map(|n| (n, (d, false))));
                    }
                    services.extend(value.into_iter().filter(|(_, s)| s.status != "INACTIVE"));
                }
                Err(e) => failed.extend(chunk.iter().map(|n| (n.clone(), e.clone()))),
            }
        }
        let same = |n: &str| digests.get(n).is_some_and(|(_, same)| *same);
        let existing: Vec<String> =
            names.iter().filter(|n| services.contains_key(n.as_str()) || same(n)).map(|n| rid(n)).collect();
        let mut targets = BTreeMap::new();
        for chunk in existing.chunks(TARGETS_BATCH) {
            match cloud.describe_scalable_targets(chunk).await {
                Ok(t) => targets.extend(t),
                Err(e) => {
                    failed.extend(chunk.iter().map(|r| (r.rsplit('/').next().unwrap_or(r).to_string(), e.clone())))
                }
            }
        }
        if !existing.is_empty() && self.policies.is_none() {
            self.policies = Some(cloud.describe_scaling_policies(&self.resource_ids).await);
        }
        // The services' current task definitions (cached by ARN: only new ones are asked).
        let arns: BTreeSet<String> = services
            .values()
            .filter(|s| !s.settings.task_definition.is_empty())
            .map(|s| s.settings.task_definition.clone())
            .collect();
        let answers = concurrently(
            arns.into_iter().map(|arn| async move { (arn.clone(), cloud.describe_task_definition(&arn).await) }),
        )
        .await;
        let task_definitions: BTreeMap<String, _> = answers.into_iter().collect();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(e) = failed.remove(name) {
                out.push((name.clone(), Err(e)));
                continue;
            }
            let answer = digests.get(name).map(|(d, _)| *d);
            let exists = same(name) || services.contains_key(name.as_str());
            // Kept (not taken) for an undecoded one: a read again, decoded, needs them.
            let policies = match self.policies.as_mut() {
                Some(Ok(p)) if same(name) => p.get(&rid(name)).cloned().unwrap_or_default(),
                Some(Ok(p)) if exists => p.remove(&rid(name)).unwrap_or_default(),
                Some(Err(e)) if exists => {
                    out.push((name.clone(), Err(e.clone())));
                    continue;
                }
                _ => Vec::new(),
            };
            if same(name) {
                // Undecoded: its scaling is read anew; all else comes with the kept plan.
                let state = LiveState { scalable_target: targets.remove(&rid(name)), policies, ..LiveState::default() };
                out.push((name.clone(), Ok(Read { state, answer, same: true })));
                continue;
            }
            let Some(service) = services.remove(name.as_str()) else {
                out.push((name.clone(), Ok(Read { state: LiveState::default(), answer, same: false })));
                continue;
            };
            let task_definition = match task_definitions.get(&service.settings.task_definition) {
                Some(Ok(td)) => td.clone(),
                Some(Err(e)) => {
                    out.push((name.clone(), Err(e.clone())));
                    continue;
                }
                None => None,
            };
            let held = service.tag(tags::HELD).map(str::to_string);
            let pinned = service.tag(tags::PINNED).and_then(crate::core::live::Pin::parse);
            let paused = service.tag(tags::PAUSED).map(crate::core::live::Pause::parse);
            let scalable_target = targets.remove(&rid(name));
            let state = LiveState {
                service: Some(service),
                task_definition,
                recent_revisions: Vec::new(),
                scalable_target,
                policies,
                held,
                pinned,
                paused,
                routing: None,
                dashboard: None,
            };
            out.push((name.clone(), Ok(Read { state, answer, same: false })));
        }
        out
    }
}
