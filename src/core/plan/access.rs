//! The security access step (environments with `ingress:`), before the service step: the
//! service's own group and its `-clients` group (created, tagged), TCP ingress on the own
//! group for the service's port from `-clients` and from the load balancers it is routed
//! through (rules from other groups that git does not want are revoked), and the groups
//! the tasks join: the environment's defaults, the own group and the `-clients` group of
//! each dependency. A data store's `-clients` group must exist (berth does not make it); a
//! service dependency's is made, tagged as that service's, by whichever of the two applies
//! first (the create of the other finds it).

use super::{Action, Blocker, Input, Plan, Revision, Step};
use crate::core::desired::tags;
use crate::core::diff::Change;
use crate::core::live::LiveRouting;
use crate::core::routing::{Access, GroupIngress, LiveSecurityGroup, SecurityGroup};
use serde_json::json;

/// Returns the groups of the service's tasks, in the order of its rendered settings.
pub(super) fn before(plan: &mut Plan, input: &Input) -> Step<Option<Vec<Revision>>> {
    let (Some(live), Some(access)) = (&input.live.routing, &input.desired.access) else { return Ok(None) };
    let own = group(plan, input, live, &access.own)?;
    let clients = group(plan, input, live, &access.clients)?;
    ingress(plan, input, live, access, &own, &clients);
    let mut joined = Vec::new();
    let mut blockers = Vec::new();
    for join in &access.joins {
        match (find(live, &join.group_name), &join.service) {
            (Some(g), _) => joined.push(Revision::Existing(g.group_id.clone())),
            // A service dependency's group, not made yet: made here as that service makes it.
            (None, Some(group)) => {
                plan.drift.push(Change {
                    path: format!("access.group.{}", group.group_name),
                    live: None,
                    desired: Some(json!("create")),
                });
                joined.push(Revision::Output(plan.push(Action::CreateSecurityGroup { group: group.clone() })));
            }
            (None, None) => {
                blockers.push(Blocker::MissingClientsGroup { name: join.group_name.clone(), at: join.at.clone() })
            }
        }
    }
    if !blockers.is_empty() {
        return Err(blockers);
    }
    let settings = input.desired.service.network_configuration.as_ref();
    let rendered = settings.map(|n| n.awsvpc_configuration.security_groups.clone()).unwrap_or_default();
    let mut out = Vec::new();
    let mut joined = joined.into_iter();
    for name in rendered {
        out.push(if name.starts_with("sg-") {
            Revision::Existing(name)
        } else if name == access.own.group_name {
            own.clone()
        } else {
            joined.next().unwrap_or(Revision::Existing(name))
        });
    }
    Ok(Some(out))
}

fn find<'a>(live: &'a LiveRouting, name: &str) -> Option<&'a LiveSecurityGroup> {
    live.security_groups.iter().find(|g| g.group.group_name == name)
}

fn group(plan: &mut Plan, input: &Input, live: &LiveRouting, want: &SecurityGroup) -> Step<Revision> {
    let Some(have) = find(live, &want.group_name) else {
        plan.drift.push(Change {
            path: format!("access.group.{}", want.group_name),
            live: None,
            desired: Some(json!("create")),
        });
        return Ok(Revision::Output(plan.push(Action::CreateSecurityGroup { group: want.clone() })));
    };
    let service = &input.desired.service.service_name;
    let env = input.desired.tag(tags::ENV);
    let ours = have.tag(tags::MANAGED) == Some("true")
        && have.tag(tags::SERVICE) == Some(service.as_str())
        && have.tag(tags::ENV) == env;
    if !ours {
        return Err(vec![Blocker::SecurityGroupTaken { name: want.group_name.clone() }]);
    }
    Ok(Revision::Existing(have.group_id.clone()))
}

/// The own group's rules: from `-clients` and from each routed load balancer's groups.
fn ingress(plan: &mut Plan, input: &Input, live: &LiveRouting, access: &Access, own: &Revision, clients: &Revision) {
    let mut sources = vec![(clients.clone(), access.clients.group_name.clone())];
    if let Some(routing) = &input.desired.routing {
        for rule in &routing.rules {
            let lb = live.load_balancers.iter().find(|l| l.listener_arn == rule.listener_arn);
            for sg in lb.into_iter().flat_map(|l| &l.security_groups) {
                if !sources.iter().any(|(r, _)| *r == Revision::Existing(sg.clone())) {
                    sources.push((Revision::Existing(sg.clone()), format!("load balancer group {sg}")));
                }
            }
        }
    }
    let have = (own.existing())
        .and_then(|id| live.security_groups.iter().find(|g| g.group_id == id))
        .map_or(&[][..], |g| &g.ingress[..]);
    let path = format!("access.group.{}.ingress", access.own.group_name);
    for (from, label) in &sources {
        let present =
            matches!(from, Revision::Existing(id) if have.iter().any(|r| r.port == access.port && r.from_group == *id));
        if !present {
            plan.drift.push(Change {
                path: path.clone(),
                live: None,
                desired: Some(json!(format!("tcp {} from {label}", access.port))),
            });
            plan.push(Action::AuthorizeIngress {
                group: own.clone(),
                port: access.port,
                from: from.clone(),
                description: format!("berth: {label}"),
            });
        }
    }
    if let Revision::Existing(id) = own {
        for rule in have {
            let wanted = rule.port == access.port
                && sources.iter().any(|(r, _)| matches!(r, Revision::Existing(s) if *s == rule.from_group));
            // The `-clients` group created in this same plan has no rule yet to keep.
            if !wanted {
                plan.drift.push(Change {
                    path: path.clone(),
                    live: Some(json!(format!("tcp {} from {}", rule.port, rule.from_group))),
                    desired: None,
                });
                plan.push(Action::RevokeIngress { group_id: id.clone(), rule: GroupIngress::clone(rule) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Blocker, plan};
    use crate::core::desired::{Desired, Tag, tags};
    use crate::core::live::{LiveRouting, LiveState};
    use crate::core::routing::*;
    use crate::core::testing::{converged, ctx, desired, planned_kinds};

    fn group(name: &str, service: &str) -> SecurityGroup {
        SecurityGroup {
            group_name: name.into(),
            description: format!("berth: {name}"),
            vpc_id: "vpc-1".into(),
            tags: [(tags::ENV, "pre"), (tags::MANAGED, "true"), (tags::SERVICE, service)]
                .map(|(k, v)| Tag { key: k.into(), value: v.into() })
                .to_vec(),
        }
    }

    /// `web` in `pre`, depending on the service `api` and the data store `db`.
    fn guarded() -> Desired {
        let mut d = desired().build();
        let s = Arc::make_mut(&mut d.service);
        let sgs = &mut s.network_configuration.as_mut().unwrap().awsvpc_configuration.security_groups;
        sgs.extend(["web".to_string(), "api-clients".into(), "db-clients".into()]);
        d.access = Some(Access {
            own: group("web", "web"),
            clients: group("web-clients", "web"),
            port: 8080,
            joins: vec![
                Join {
                    group_name: "api-clients".into(),
                    service: Some(group("api-clients", "api")),
                    at: "a:1:1".into(),
                },
                Join {
                    group_name: "db-clients".into(),
                    service: None,
                    at: "services/web/deploy/service.yaml:9:13".into(),
                },
            ],
        });
        d
    }

    fn live_group(id: &str, g: SecurityGroup, ingress: Vec<GroupIngress>) -> LiveSecurityGroup {
        LiveSecurityGroup { group_id: id.into(), group: g, ingress }
    }

    fn live_guarded(d: &Desired) -> LiveState {
        let mut live = converged(d)
            .service(|s| {
                s.settings.network_configuration.as_mut().unwrap().awsvpc_configuration.security_groups =
                    ["sg-1", "sg-web", "sg-api-c", "sg-db-c"].map(String::from).to_vec();
            })
            .build();
        live.routing = Some(LiveRouting {
            security_groups: vec![
                live_group(
                    "sg-web",
                    group("web", "web"),
                    vec![GroupIngress { port: 8080, from_group: "sg-web-c".into() }],
                ),
                live_group("sg-web-c", group("web-clients", "web"), Vec::new()),
                live_group("sg-api-c", group("api-clients", "api"), Vec::new()),
                live_group(
                    "sg-db-c",
                    SecurityGroup { group_name: "db-clients".into(), ..Default::default() },
                    Vec::new(),
                ),
            ],
            ..Default::default()
        });
        live
    }

    #[test]
    fn converged_groups_plan_nothing() {
        let d = guarded();
        assert_eq!(planned_kinds(&d, &live_guarded(&d)), Vec::<String>::new());
    }

    #[test]
    fn a_first_apply_makes_the_groups_and_the_rule_and_the_tasks_join_them() {
        let d = guarded();
        let mut live = live_guarded(&d);
        live.routing.as_mut().unwrap().security_groups.retain(|g| g.group.group_name == "db-clients");
        assert_eq!(
            planned_kinds(&d, &live),
            ["CreateSecurityGroup", "CreateSecurityGroup", "AuthorizeIngress", "CreateSecurityGroup", "UpdateService"],
            "own, -clients, the rule, the dependency's -clients (made as api makes it), the service"
        );
    }

    #[test]
    fn a_removed_rule_is_added_again_and_a_foreign_one_revoked() {
        let d = guarded();
        let mut live = live_guarded(&d);
        live.routing.as_mut().unwrap().security_groups[0].ingress =
            vec![GroupIngress { port: 8080, from_group: "sg-someone".into() }];
        let p = plan(&d, &live, false, &ctx());
        let paths: Vec<&str> = p.drift.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["access.group.web.ingress", "access.group.web.ingress"]);
        assert_eq!(planned_kinds(&d, &live), ["AuthorizeIngress", "RevokeIngress"]);
    }

    #[test]
    fn a_missing_data_store_group_blocks_the_service_at_its_line() {
        let d = guarded();
        let mut live = live_guarded(&d);
        live.routing.as_mut().unwrap().security_groups.retain(|g| g.group.group_name != "db-clients");
        let p = plan(&d, &live, false, &ctx());
        assert_eq!(
            p.blockers,
            [Blocker::MissingClientsGroup {
                name: "db-clients".into(),
                at: "services/web/deploy/service.yaml:9:13".into()
            }]
        );
        assert!(p.actions.is_empty());
        assert!(
            p.blockers[0].to_string().starts_with("services/web/deploy/service.yaml:9:13: security group `db-clients`")
        );
    }

    #[test]
    fn a_group_berth_did_not_make_blocks_the_service() {
        let d = guarded();
        let mut live = live_guarded(&d);
        live.routing.as_mut().unwrap().security_groups[0].group.tags.clear();
        let p = plan(&d, &live, false, &ctx());
        assert_eq!(p.blockers, [Blocker::SecurityGroupTaken { name: "web".into() }]);
    }
}
