//! berth's integration tests: one binary, shared helpers in `support`.

mod accounts;
mod aws_cli;
mod boundaries;
mod cli;
mod converge;
mod daemon;
mod engine;
mod faults;
mod ha;
mod operate;
mod packaging;
mod page;
mod parse_props;
mod render_snapshots;
mod rollout;
mod routing;
mod routing_aws;
mod run;
mod schema;
mod security_groups_aws;
mod support;
mod validate;
mod workflow;
