//! Orphans: berth-managed services of the environment's cluster whose folder is gone from
//! git. Reported `Orphaned`; with `prune: true`, scaled to zero, their scaling removed,
//! and deleted, within the environment's `prune_limit`. Never a service without berth's
//! tags for this environment, and never anything when git has no services at all for it
//! (a broken discovery glob must not delete production).

use std::collections::BTreeSet;

use super::table::Table;
use super::{EnvInput, Failure, Mode, Outcome};
use crate::core::desired::{scaling_resource_id, tags};
use crate::engine::cloud::Cloud;
use crate::engine::history::{self, Entry, Trigger};

/// Looks for the environment's orphans and adds a row for each (pruning them when the
/// environment says so and the guards allow). `true` when the look was complete: the
/// cluster was listed and no prune failed (else the daemon looks again next time).
pub async fn orphans<C: Cloud>(cloud: &C, table: &mut Table, input: &EnvInput<'_>) -> bool {
    let env = input.env;
    let in_git: BTreeSet<&str> = (input.repo.services.iter())
        .filter(|d| d.envs.contains_key(&env.name))
        .map(|d| d.name.as_str())
        .chain(input.repo.broken.iter().filter(|b| b.envs.contains(&env.name)).map(|b| b.key.as_str()))
        .collect();
    // Only the services git does not have are read (the others were, by the reconcile): a
    // cluster with no foreign services costs one ListServices.
    let candidates = match cloud.list_services(&env.cluster).await {
        Ok(names) => names.into_iter().filter(|n| !in_git.contains(n.as_str())).collect::<Vec<_>>(),
        Err(e) => {
            tracing::warn!(env = %env.name, error = %e, "cannot look for orphaned services");
            return false;
        }
    };
    if candidates.is_empty() {
        return true;
    }
    let live = match cloud.describe_services(&env.cluster, &candidates).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(env = %env.name, error = %e, "cannot look for orphaned services");
            return false;
        }
    };
    let orphans: Vec<_> = (live.values())
        .filter(|s| s.status == "ACTIVE" && s.tag(tags::MANAGED) == Some("true") && s.tag(tags::ENV) == Some(&env.name))
        .collect();
    if orphans.is_empty() {
        return true;
    }
    let managed = in_git.len() + orphans.len();
    let limit = env.prune_limit.of(managed);
    let refusal = if !env.prune {
        Some(
            "its folder is gone from git; berth leaves it running (set `prune: true` for the environment to delete it)"
                .to_string(),
        )
    } else if input.mode != Mode::Apply {
        Some("its folder is gone from git; `prune: true` deletes it when berth applies".to_string())
    } else if in_git.is_empty() {
        Some("git has no services at all for this environment: berth prunes nothing (a broken discovery glob must not delete everything)".to_string())
    } else if orphans.len() > limit {
        Some(format!(
            "its folder is gone from git; {} services would be pruned, more than prune_limit allows ({limit} of {}): berth prunes none",
            orphans.len(),
            managed
        ))
    } else {
        None
    };
    if let Some(reason) = &refusal
        && env.prune
    {
        tracing::warn!(env = %env.name, orphans = orphans.len(), reason = %reason, "not pruning");
    }
    let mut complete = true;
    // The environment's routing, read once for all the services pruned this cycle.
    let mut routes = None;
    for live in orphans {
        let name = live.settings.service_name.clone();
        // An operator's pause or pin says "leave it as it is".
        let held =
            [(tags::PAUSED, "paused"), (tags::PINNED, "pinned")].into_iter().find(|(t, _)| live.tag(t).is_some());
        let refusal = match (held, &refusal) {
            (_, Some(reason)) => Some(reason.clone()),
            (Some((_, what)), None) => {
                Some(format!("its folder is gone from git; it is {what}, so berth does not prune it"))
            }
            (None, None) if input.fence.is_some_and(|may_write| !may_write()) => {
                Some("its folder is gone from git; this replica no longer holds the lease".to_string())
            }
            (None, None) => None,
        };
        let outcome = match &refusal {
            Some(reason) => Outcome::Orphaned(reason.clone()),
            None => match prune(cloud, env, live, &mut routes).await {
                Ok(()) => {
                    tracing::info!(env = %env.name, service = %name, "pruned: its folder is gone from git");
                    if let Some(state) = &input.config.state {
                        let mut entry = Entry::operator(&env.name, &name, Trigger::Pruned, live);
                        entry.by = "berth".into();
                        history::put(cloud, state, &entry).await;
                    }
                    Outcome::Pruned
                }
                Err(error) => {
                    complete = false;
                    Outcome::Failed(Failure::Aws { context: "pruning", error, applying: true })
                }
            },
        };
        let row = table.insert_done(&name, outcome);
        row.report.task_definition = Some(live.settings.task_definition.clone());
        row.report.commit = live.tag(tags::COMMIT).map(str::to_string);
    }
    complete
}

/// Remove its scaling first (so nothing scales it up again), scale to zero, remove its
/// routing, delete. Each step may be repeated: a prune that failed half-way is finished by
/// the next one.
async fn prune<C: Cloud>(
    cloud: &C,
    env: &crate::core::config::EnvConfig,
    live: &crate::core::live::LiveService,
    routes: &mut Option<super::routes::EnvRoutes>,
) -> Result<(), crate::aws::AwsError> {
    let cluster = &env.cluster;
    let rid = scaling_resource_id(cluster, &live.settings.service_name);
    let policies = cloud.describe_scaling_policies(&BTreeSet::from([rid.clone()])).await?;
    for p in policies.get(&rid).into_iter().flatten() {
        cloud.delete_scaling_policy(&p.policy.policy_name, &rid).await?;
    }
    if !cloud.describe_scalable_targets(std::slice::from_ref(&rid)).await?.is_empty() {
        cloud.deregister_scalable_target(&rid).await?;
    }
    // The count alone: a blue-green service sent its settings again could start a
    // deployment (and its hooks) just before its rules go.
    cloud.scale_service(cluster, &live.settings.service_name, 0).await?;
    // Its routing before the service: a failure leaves the service (with no tasks) for the
    // next prune to finish.
    if let Some(ingress) = &env.ingress {
        if routes.is_none() {
            *routes = Some(super::routes::EnvRoutes::read(cloud, ingress).await);
        }
        let routes = routes.as_ref().expect("read above");
        unroute(cloud, routes, &env.name, &live.settings.service_name).await?;
    }
    cloud.delete_service(cluster, &live.settings.service_name).await
}

/// Removes a pruned service's routing: its rules, the records of their host names that
/// point at the environment's load balancers, then its target groups (all by berth's tags).
async fn unroute<C: Cloud>(
    cloud: &C,
    routes: &super::routes::EnvRoutes,
    env: &str,
    service: &str,
) -> Result<(), crate::aws::AwsError> {
    let live = routes.of(service, env, None, &[])?;
    for rule in &live.rules {
        cloud.delete_rule(&rule.arn).await?;
    }
    let ours =
        |dns: &str| live.load_balancers.iter().any(|lb| lb.dns_name.trim_end_matches('.').eq_ignore_ascii_case(dns));
    for r in live.records.iter().filter(|r| ours(&r.alias_dns_name)) {
        cloud.change_alias_record(&r.zone_id, &r.name, &r.alias_dns_name, &r.alias_hosted_zone_id, true).await?;
    }
    for tg in &live.target_groups {
        if tg.tag(tags::MANAGED) == Some("true")
            && tg.tag(tags::SERVICE) == Some(service)
            && tg.tag(tags::ENV) == Some(env)
        {
            cloud.delete_target_group(&tg.arn).await?;
        }
    }
    Ok(())
}
