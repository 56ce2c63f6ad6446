//! `berth schema`: JSON Schemas for editors (yaml-language-server, IntelliJ, VS Code).

use crate::cli::{SchemaArgs, SchemaWhich};
use crate::commands::Exit;
use crate::core::config::RawConfig;
use crate::core::spec::model::{EnvFile, ServiceFile};

pub fn schema_json(which: Option<SchemaWhich>) -> serde_json::Value {
    let service = serde_json::to_value(schemars::schema_for!(ServiceFile)).expect("schema serializes");
    let config = serde_json::to_value(schemars::schema_for!(EnvFile)).expect("schema serializes");
    match which {
        Some(SchemaWhich::Service) => service,
        Some(SchemaWhich::Config) => config,
        Some(SchemaWhich::Agent) => serde_json::to_value(schemars::schema_for!(RawConfig)).expect("schema serializes"),
        None => serde_json::json!({ "service.yaml": service, "config.yaml": config }),
    }
}

pub fn run(args: &SchemaArgs) -> anyhow::Result<Exit> {
    crate::commands::emit(&format!("{}\n", serde_json::to_string_pretty(&schema_json(args.which))?));
    Ok(Exit::Ok)
}
