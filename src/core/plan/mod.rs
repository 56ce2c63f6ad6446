//! Planning: from desired and live state, the ordered actions that converge one service.
//!
//! [`plan`] decides the service's [`Ownership`], then runs one step per resource kind
//! (`task_definition`, `service`, `scaling`: a file each), in the order their actions must
//! run; each adds its actions and drift to the plan, or stops it with [`Blocker`]s. An
//! action needing what an earlier one returns (the revision a registration creates) names
//! that action by its [`ActionId`]; the executor keeps the returned values in [`Outputs`].
//! A new resource kind is a new step file and one line in `do_plan`.
//!
//! The executor makes one attempt at the plan; retries are the scheduler's business.

mod access;
mod blocker;
mod dashboard;
mod routing;
mod scaling;
mod service;
mod task_definition;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

pub use blocker::Blocker;
pub use service::{Bind, bound};

use super::desired::{Desired, ScalableTarget, ScalingPolicy, ServiceSettings, Tag, TaskDefinition, tags};
use super::diff::{Change, NormContext};
use super::live::{LiveService, LiveState};
use super::routing::{GroupIngress, ListenerRule, Record, SecurityGroup, TargetGroup};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Ownership {
    /// No such service yet: berth creates it.
    Missing,
    /// Tagged `berth:managed=true`.
    Managed,
    /// A same-named service berth did not create: left alone unless the env config says `adopt: true`.
    Unmanaged,
    /// Unmanaged, and taken over because of `adopt: true`.
    Adopted,
}

/// An action's place in [`Plan::actions`]: how a later action names its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ActionId(pub usize);

/// Which revision a service create or update points at.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Revision {
    /// The ARN returned by the plan's RegisterTaskDefinition with this id.
    Output(ActionId),
    /// An existing revision with the desired content.
    Existing(String),
}

impl Revision {
    /// The ARN or id when it exists already (`None` for an output of this plan).
    pub fn existing(&self) -> Option<&str> {
        match self {
            Revision::Existing(arn) => Some(arn),
            Revision::Output(_) => None,
        }
    }
}

/// What the actions of one plan returned so far, by id (a RegisterTaskDefinition returns
/// its revision's ARN; the other actions return nothing a later one needs). The executor
/// records each output as its action succeeds and resolves later actions' references here.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outputs(BTreeMap<ActionId, String>);

impl Outputs {
    pub fn record(&mut self, id: ActionId, output: String) {
        self.0.insert(id, output);
    }

    pub fn get(&self, id: ActionId) -> Option<&str> {
        self.0.get(&id).map(String::as_str)
    }

    /// The revision ARN `revision` stands for: `None` while the action it names has not
    /// returned (never, when the actions run in order and stop at the first failure).
    pub fn resolve<'a>(&'a self, revision: &'a Revision) -> Option<&'a str> {
        match revision {
            Revision::Output(id) => self.get(*id),
            Revision::Existing(_) => revision.existing(),
        }
    }
}

/// The target groups a rule forwards to: its group, and with a strategy that shifts traffic
/// the alternate (created with the weights 100 and 0; ECS moves them during a deployment).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Forward {
    pub primary: Revision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alternate: Option<Revision>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action")]
pub enum Action {
    RegisterTaskDefinition {
        task_definition: Arc<TaskDefinition>,
    },
    /// `bind`: the target group and security groups the settings name (when routed).
    CreateService {
        settings: Arc<ServiceSettings>,
        revision: Revision,
        desired_count: i32,
        bind: Bind,
    },
    UpdateService {
        settings: Arc<ServiceSettings>,
        revision: Revision,
        set_desired_count: bool,
        bind: Bind,
    },
    TagService {
        arn: String,
        tags: Vec<Tag>,
    },
    RegisterScalableTarget {
        target: ScalableTarget,
    },
    PutScalingPolicy {
        policy: ScalingPolicy,
    },
    DeleteScalingPolicy {
        policy_name: String,
        resource_id: String,
    },
    DeregisterScalableTarget {
        resource_id: String,
    },
    CreateTargetGroup {
        group: TargetGroup,
    },
    ModifyTargetGroup {
        arn: String,
        group: TargetGroup,
    },
    /// Tags on a target group or a rule.
    TagElbResource {
        arn: String,
        tags: Vec<Tag>,
    },
    DeleteTargetGroup {
        arn: String,
        name: String,
    },
    CreateRule {
        rule: ListenerRule,
        priority: i32,
        forward: Forward,
    },
    /// `forward`: `None` changes the conditions only (the weights are ECS's).
    ModifyRule {
        arn: String,
        rule: ListenerRule,
        forward: Option<Forward>,
    },
    DeleteRule {
        arn: String,
        hosts: Vec<String>,
    },
    /// An alias A record pointing at the load balancer (`dns_name`, `zone_id`).
    UpsertRecord {
        record: Record,
        dns_name: String,
        alias_zone_id: String,
    },
    DeleteRecord {
        zone_id: String,
        name: String,
        dns_name: String,
        alias_zone_id: String,
    },
    CreateSecurityGroup {
        group: SecurityGroup,
    },
    /// `spec.tasks.before_deploy`: a task of `revision` with the service's network
    /// settings, waited for; the service moves only when it exits 0.
    RunBeforeDeploy {
        settings: Arc<ServiceSettings>,
        bind: Bind,
        revision: Revision,
        command: Vec<String>,
        timeout_s: u64,
        spec_hash: String,
        /// The live service, where the task's success is recorded (`None`: being created).
        service_arn: Option<String>,
    },
    /// TCP `port` into `group` from `from` (ids, or outputs of CreateSecurityGroup).
    AuthorizeIngress {
        group: Revision,
        port: i32,
        from: Revision,
        description: String,
    },
    RevokeIngress {
        group_id: String,
        rule: GroupIngress,
    },
    /// The body, whose load balancer dimensions name `target_group` (once it is known).
    PutDashboard {
        name: String,
        body: serde_json::Value,
        target_group: Option<Revision>,
        load_balancer_arn: Option<String>,
    },
}

impl Action {
    /// A one-line description for the plan printout.
    pub fn summary(&self) -> String {
        match self {
            Action::RegisterTaskDefinition { task_definition } => {
                format!("register task definition {} (new revision)", task_definition.family)
            }
            Action::CreateService { settings, desired_count, .. } => {
                format!(
                    "create service {} in cluster {} ({} tasks)",
                    settings.service_name, settings.cluster, desired_count
                )
            }
            Action::UpdateService { settings, revision, .. } => match revision {
                Revision::Output(_) => format!("update service {} to the new revision", settings.service_name),
                Revision::Existing(arn) => format!("update service {} ({arn})", settings.service_name),
            },
            Action::TagService { tags, .. } => {
                format!(
                    "tag service ({})",
                    tags.iter().map(|t| format!("{}={}", t.key, t.value)).collect::<Vec<_>>().join(", ")
                )
            }
            Action::RegisterScalableTarget { target } => {
                format!(
                    "register scalable target {} (min {}, max {})",
                    target.resource_id, target.min_capacity, target.max_capacity
                )
            }
            Action::PutScalingPolicy { policy } => format!("put scaling policy {}", policy.policy_name),
            Action::DeleteScalingPolicy { policy_name, .. } => format!("delete scaling policy {policy_name}"),
            Action::DeregisterScalableTarget { resource_id } => format!("deregister scalable target {resource_id}"),
            Action::CreateTargetGroup { group } => {
                format!(
                    "create target group {} (port {}, health check {})",
                    group.name, group.port, group.health_check_path
                )
            }
            Action::ModifyTargetGroup { group, .. } => {
                format!("modify target group {} (health check {})", group.name, group.health_check_path)
            }
            Action::TagElbResource { arn, .. } => format!("tag {arn}"),
            Action::DeleteTargetGroup { name, .. } => format!("delete target group {name}"),
            Action::CreateRule { rule, priority, .. } => {
                format!("create {} rule {} (priority {priority})", rule.scope, rule_text(rule))
            }
            Action::ModifyRule { rule, .. } => format!("modify {} rule {}", rule.scope, rule_text(rule)),
            Action::DeleteRule { hosts, .. } => format!("delete rule {}", hosts.join(",")),
            Action::UpsertRecord { record, dns_name, .. } => {
                format!("upsert record {} → {dns_name} (zone {})", record.name, record.zone_id)
            }
            Action::DeleteRecord { zone_id, name, .. } => format!("delete record {name} (zone {zone_id})"),
            Action::CreateSecurityGroup { group } => format!("create security group {}", group.group_name),
            Action::RunBeforeDeploy { command, .. } => format!("run the before-deploy task: {}", command.join(" ")),
            Action::AuthorizeIngress { port, description, .. } => {
                format!("allow tcp {port} from {}", description.trim_start_matches("berth: "))
            }
            Action::PutDashboard { name, .. } => format!("put dashboard {name}"),
            Action::RevokeIngress { group_id, rule } => {
                format!("revoke tcp {} from {} on {group_id}", rule.port, rule.from_group)
            }
        }
    }
}

/// `host[,host] [paths]`.
fn rule_text(rule: &ListenerRule) -> String {
    let paths = if rule.paths.is_empty() { String::new() } else { format!(" {}", rule.paths.join(",")) };
    format!("{}{paths}", rule.hosts.join(","))
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub ownership: Ownership,
    pub drift: Vec<Change>,
    pub actions: Vec<Action>,
    /// Why the service cannot be converged; when there are any, `actions` is empty.
    pub blockers: Vec<Blocker>,
}

impl Plan {
    pub fn in_sync(&self) -> bool {
        self.drift.is_empty() && self.actions.is_empty() && self.blockers.is_empty()
    }

    /// The blockers' texts, joined by `; `.
    pub fn blocker_text(&self) -> String {
        self.blockers.iter().map(Blocker::to_string).collect::<Vec<_>>().join("; ")
    }

    /// The actions with their ids, in the order they run.
    pub fn actions_with_ids(&self) -> impl Iterator<Item = (ActionId, &Action)> {
        self.actions.iter().enumerate().map(|(i, a)| (ActionId(i), a))
    }

    /// The id of the plan's RegisterTaskDefinition, if it has one.
    pub fn registration(&self) -> Option<ActionId> {
        self.actions_with_ids().find(|(_, a)| matches!(a, Action::RegisterTaskDefinition { .. })).map(|(id, _)| id)
    }

    /// Appends `action`; its id is how later actions name its output.
    fn push(&mut self, action: Action) -> ActionId {
        self.actions.push(action);
        ActionId(self.actions.len() - 1)
    }
}

/// What every step reads.
struct Input<'a> {
    desired: &'a Desired,
    live: &'a LiveState,
    ctx: &'a NormContext,
}

impl Input<'_> {
    /// The live service, unless there is none to converge (missing or INACTIVE).
    fn service(&self) -> Option<&LiveService> {
        self.live.service.as_ref().filter(|s| s.status != "INACTIVE")
    }
}

/// A step's result: `Err` stops the plan, whose actions are then dropped.
type Step<T = ()> = Result<T, Vec<Blocker>>;

/// Plans one service. `adopt` is the env config's `adopt: true`.
pub fn plan(desired: &Desired, live: &LiveState, adopt: bool, ctx: &NormContext) -> Plan {
    let input = Input { desired, live, ctx };
    let mut plan =
        Plan { ownership: ownership(&input, adopt), drift: Vec::new(), actions: Vec::new(), blockers: Vec::new() };
    if let Err(blockers) = do_plan(&mut plan, &input).and_then(|()| hold(&plan, &input)) {
        plan.actions.clear();
        plan.blockers = blockers;
    }
    plan
}

/// The steps, in the order their actions run.
fn do_plan(plan: &mut Plan, input: &Input) -> Step {
    if plan.ownership == Ownership::Unmanaged {
        let service = &input.desired.service;
        return Err(vec![Blocker::Unmanaged {
            service: service.service_name.clone(),
            cluster: service.cluster.clone(),
        }]);
    }
    // Routing first: ECS takes a target group in `loadBalancers` only once a listener
    // rule forwards to it. What git no longer routes goes after the service let go of it.
    let routes = routing::before(plan, input)?;
    let security_groups = access::before(plan, input)?;
    let revision = task_definition::step(plan, input)?;
    // The dashboard shows the first production rule's group.
    let dashboard_group = input
        .desired
        .routing
        .as_ref()
        .and_then(|r| r.rules.first())
        .and_then(|rule| routes.iter().find(|(n, _)| *n == rule.target_group).map(|(_, r)| r.clone()));
    service::step(plan, input, revision, Bind { routes, security_groups })?;
    scaling::step(plan, input);
    dashboard::step(plan, input, dashboard_group);
    routing::after(plan, input);
    Ok(())
}

/// A spec whose rollout failed is not applied again (its drift is still reported) until git
/// changes the service, and so its spec hash. A held spec is blocked even where live looks
/// equal to it (ECS left the failed deployment in place): its health is what is wrong.
///
/// An operator's pause stops every apply; a rollback's pin stops the spec git wanted when
/// it was made (a new spec hash ends it: the fix is deployed).
fn hold(plan: &Plan, input: &Input) -> Step {
    let spec_hash = input.desired.spec_hash();
    let in_sync = plan.drift.is_empty() && plan.actions.is_empty();
    let live = input.live;
    if let Some(pause) = &live.paused {
        return Err(vec![Blocker::Paused { pause: pause.clone(), in_sync }]);
    }
    // A pin holds while the service runs the pinned revision: a rollback that never got
    // as far as its update (or that ECS itself rolled back) leaves a stale pin, which the
    // next apply lifts.
    let runs = |p: &super::live::Pin| {
        input.service().is_some_and(|s| s.settings.task_definition.rsplit('/').next() == Some(p.revision.as_str()))
    };
    if let Some(pin) = live.pinned.as_ref().filter(|p| p.spec_hash == spec_hash && runs(p)) {
        return Err(vec![Blocker::Pinned { pin: pin.clone(), in_sync }]);
    }
    match &live.held {
        Some(held) if held == spec_hash => Err(vec![Blocker::Held { spec_hash: spec_hash.to_string(), in_sync }]),
        _ => Ok(()),
    }
}

fn ownership(input: &Input, adopt: bool) -> Ownership {
    match input.service() {
        None => Ownership::Missing,
        Some(s) if s.tag(tags::MANAGED) == Some("true") => Ownership::Managed,
        Some(_) if adopt => Ownership::Adopted,
        Some(_) => Ownership::Unmanaged,
    }
}
