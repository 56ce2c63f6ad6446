//! The JSON Schemas' strict parts (`berth schema`): patterns, ranges, enums and required
//! fields that mirror what `berth validate` checks, for the `#[schemars(...)]` attributes of
//! the file types (`spec::model`, `config`).
//!
//! The rule: a schema never rejects a file berth accepts, and rejects what berth rejects
//! wherever JSON Schema can say it. What it cannot say (one field against another, one file
//! against another, the environment a folder names) is listed in `tests/it/schema.rs`.
//! The patterns are ECMA-262 (what yaml-language-server and check-jsonschema use).

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::config::EVENTS;
use super::spec::fargate;
use super::spec::model::Spec;

/// The stable identifiers of the three schemas (`$id`): names, not addresses that serve
/// them; the schema of a berth version is what its `berth schema` prints.
pub const SERVICE_ID: &str = "https://berth.dev/schema/service.schema.json";
pub const CONFIG_ID: &str = "https://berth.dev/schema/config.schema.json";
pub const AGENT_ID: &str = "https://berth.dev/schema/agent.schema.json";

/// `spec::valid_service_name`.
pub const SERVICE_NAME: &str = r"^[a-z0-9-]{1,48}$";
/// `spec::valid_env_name`.
pub const ENV_NAME: &str = r"^[a-z0-9-]{1,32}$";
/// Container environment variable names (`spec::valid_env_key`).
const ENV_KEY: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";
/// Variable and secret keys of an env config (`spec::valid_variable_key`).
const VARIABLE_KEY: &str = r"^[A-Za-z0-9_.-]+$";
/// Health check paths: they go into a shell command (`spec::valid_health_path`).
const HEALTH_PATH: &str = r"^/[A-Za-z0-9/._~%=+,-]*$";
/// Data dependencies.
const DATA_NAME: &str = r"^[A-Za-z0-9._-]+$";
/// An image: not empty, no whitespace.
const IMAGE: &str = r"^\S+$";

/// An SSM parameter name as written after `ssm:` (`reference::valid_ssm_name`): segments
/// of `[A-Za-z0-9_.-]`, an optional leading `/`, no empty segment, no trailing `/`.
const SSM_NAME: &str = r"/?[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*";
/// `arn:PARTITION:ssm:REGION:ACCOUNT:parameter/NAME` (`reference::parse_ssm_arn`).
const SSM_ARN: &str = r"arn:aws[^:]*:ssm:[^:]+:[0-9]{12}:parameter/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*";
/// A Secrets Manager secret name (`reference::valid_secret_name`).
const SECRET_NAME: &str = r"[A-Za-z0-9/_+=.@-]+";
/// `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME`, before any `#field`.
const SECRET_ARN: &str = r"arn:aws[^:#]*:secretsmanager:[^:#]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+";
/// The JSON key after `#` (`reference::valid_field`).
const FIELD: &str = r"[^:\s]+";

/// A duration as humantime reads it (`60s`, `5m`, `1h 30m`), greater than zero.
const DURATION: &str = r"^\s*(?=[^1-9]*[1-9])(?:[0-9]+\s*[A-Za-zµ]+\s*)+$";
/// An IAM role ARN.
const ROLE_ARN: &str = r"^arn:[^:]*:iam::[^:]*:role/";
/// `HOST:PORT` with an IP address, as a socket address parses (no host names).
const LISTEN: &str = r"^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|\[[0-9A-Fa-f:.]+(?:%[^\]]+)?\]):[0-9]{1,5}$";
const HTTP_URL: &str = r"^https?://";
/// A DynamoDB table name.
const TABLE: &str = r"^[A-Za-z0-9_.-]{3,255}$";
/// A branch name git accepts as a ref (`config::git_ref_unsafe`).
const BRANCH: &str = r"^(?!-)(?!.*\.\.)[^\s~^:?*\[\\]+$";

/// A secret reference as `config.yaml` writes it (`reference::parse_secret`).
pub fn secret_reference() -> String {
    format!(
        r"^\s*(?:ssm:(?:{SSM_ARN}|{SSM_NAME})|secretsmanager:(?:{SECRET_ARN}|{SECRET_NAME})(?:#{FIELD})?|{SSM_ARN}|{SECRET_ARN}(?:#{FIELD})?)\s*$"
    )
}

/// A value that uses only the templates berth supports (`spec::template`): outside
/// `{{ … }}` anything; inside, `.Variables["name"]` (or `index .Variables "name"`,
/// `.Variables.name`), `.Service`, `.Env`, `.Commit` or `.Version`, blanks around it.
pub fn template() -> String {
    let name = r"[A-Za-z0-9_.-]+";
    let quoted = format!("(?:\"{name}\"|`{name}`)");
    let forms = format!(
        r"\.(?:Service|Env|Commit|Version)|\.Variables\[\s*{quoted}\s*\]|index \.Variables \s*{quoted}|\.Variables\.[A-Za-z0-9_.-]*[A-Za-z0-9_.]"
    );
    format!(r"^(?:[^{{]|\{{(?!\{{)|\{{\{{\s*(?:{forms})\s*\}}\}})*$")
}

fn object(schema: &mut Schema) -> &mut Map<String, Value> {
    schema.ensure_object()
}

/// The object schema at `pointer` inside `schema`.
fn at<'a>(schema: &'a mut Schema, pointer: &str) -> Option<&'a mut Map<String, Value>> {
    schema.pointer_mut(pointer).and_then(Value::as_object_mut)
}

/// `null` removed from a schema's types and enum: for a field that must be written.
fn non_null(v: &mut Value) {
    let Some(obj) = v.as_object_mut() else { return };
    // An optional field whose schema is more than a type is `anyOf: [it, {type: null}]`.
    if let Some(Value::Array(mut branches)) = obj.remove("anyOf") {
        branches.retain(|b| b != &json!({"type": "null"}));
        match (branches.len(), branches.pop()) {
            (1, Some(Value::Object(only))) => {
                for (k, val) in only {
                    obj.entry(k).or_insert(val);
                }
            }
            (_, last) => {
                branches.extend(last);
                obj.insert("anyOf".into(), Value::Array(branches));
            }
        }
    }
    if let Some(Value::Array(types)) = obj.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types[0].clone();
            obj.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(values)) = obj.get_mut("enum") {
        values.retain(|t| !t.is_null());
    }
}

/// `fields` are required in the object schema `obj`, and may not be `null`.
fn require(obj: &mut Map<String, Value>, fields: &[&str]) {
    obj.insert("required".into(), json!(fields));
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for f in fields {
            if let Some(p) = props.get_mut(*f) {
                non_null(p);
            }
        }
    }
}

/// `spec` in `service.yaml`: `image` and `resources` (both of its keys) are required there,
/// and `resource`, `min` and `max` in `autoscaling`. Under `overrides` any subset is fine.
pub fn base_spec(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = Spec::json_schema(generator);
    require(object(&mut schema), &["image", "resources"]);
    if let Some(res) = at(&mut schema, "/properties/resources") {
        require(res, &["cpu", "memory"]);
    }
    if let Some(a) = at(&mut schema, "/properties/autoscaling") {
        require(a, &["resource", "min", "max"]);
    }
    schema
}

/// The root of `config.yaml` may be `null`: a file of comments only is a valid env config.
pub fn nullable_root(schema: &mut Schema) {
    object(schema).insert("type".into(), json!(["object", "null"]));
}

pub fn service_kind(schema: &mut Schema) {
    object(schema).insert("enum".into(), json!(["service"]));
}

pub fn image(schema: &mut Schema) {
    object(schema).insert("pattern".into(), json!(IMAGE));
}

pub fn health(schema: &mut Schema) {
    let o = object(schema);
    o.insert("pattern".into(), json!(HEALTH_PATH));
    o.insert("maxLength".into(), json!(200));
}

/// A percentage above 0, at most 100.
pub fn percent(schema: &mut Schema) {
    let o = object(schema);
    o.insert("exclusiveMinimum".into(), json!(0));
    o.insert("maximum".into(), json!(100));
}

/// The CPU values Fargate has, and for each the memory sizes that go with it (when both
/// are in the same mapping; across `service.yaml` and an override only berth can tell).
pub fn fargate_size(schema: &mut Schema) {
    let o = object(schema);
    let cpus: Vec<Value> = fargate::CPU_VALUES.iter().map(|c| json!(c)).chain([Value::Null]).collect();
    let pairs: Vec<Value> = fargate::CPU_VALUES
        .iter()
        .map(|cpu| {
            let memory = fargate::memory_options(*cpu).expect("a Fargate CPU value");
            json!({
                "if": {"properties": {"cpu": {"const": cpu}, "memory": {"type": "integer"}}, "required": ["cpu", "memory"]},
                "then": {"properties": {"memory": {"enum": memory}}},
            })
        })
        .collect();
    if let Some(Value::Object(props)) = o.get_mut("properties") {
        if let Some(Value::Object(cpu)) = props.get_mut("cpu") {
            cpu.insert("enum".into(), Value::Array(cpus));
        }
        if let Some(Value::Object(mem)) = props.get_mut("memory") {
            // Every size Fargate has is a multiple of 512 MiB, from 512 MiB to 120 GiB.
            mem.insert("minimum".into(), json!(512));
            mem.insert("maximum".into(), json!(122880));
            mem.insert("multipleOf".into(), json!(512));
        }
    }
    o.insert("allOf".into(), Value::Array(pairs));
}

/// The items of an array field (`Option<At<Vec<…>>>`) get `extra` merged in.
fn items(schema: &mut Schema, extra: Value) {
    let o = object(schema);
    let item = o.entry("items").or_insert_with(|| json!({}));
    if let (Some(item), Value::Object(extra)) = (item.as_object_mut(), extra) {
        item.extend(extra);
    }
}

pub fn service_names(schema: &mut Schema) {
    items(schema, json!({"pattern": SERVICE_NAME}));
}

pub fn alarm_names(schema: &mut Schema) {
    object(schema).insert("maxItems".into(), json!(10));
    items(schema, json!({"minLength": 1, "maxLength": 255}));
}

pub fn data_names(schema: &mut Schema) {
    items(schema, json!({"pattern": DATA_NAME}));
}

pub fn env_key(schema: &mut Schema) {
    let o = object(schema);
    o.insert("pattern".into(), json!(ENV_KEY));
    o.insert("maxLength".into(), json!(255));
}

pub fn env_value(schema: &mut Schema) {
    object(schema).insert("pattern".into(), json!(template()));
}

pub fn variable_key(schema: &mut Schema) {
    object(schema).insert("pattern".into(), json!(VARIABLE_KEY));
}

/// `variables`: a value that starts with `ssm:` names an SSM parameter.
pub fn variables(schema: &mut Schema) {
    items(
        schema,
        json!({"properties": {"value": {
            "if": {"type": "string", "pattern": "^ssm:"},
            "then": {"pattern": format!("^ssm:(?:{SSM_ARN}|{SSM_NAME})$")},
        }}}),
    );
}

/// `secrets`: every value is a reference, written as a string.
pub fn secrets(schema: &mut Schema) {
    items(
        schema,
        json!({"properties": {"value": {
            "description": "`ssm:/name`, `secretsmanager:NAME`, `secretsmanager:NAME#field`, or the ARN of an SSM parameter or a Secrets Manager secret (optionally with `#field`).",
            "type": "string",
            "pattern": secret_reference(),
        }}}),
    );
}

pub fn duration(schema: &mut Schema) {
    object(schema).insert("pattern".into(), json!(DURATION));
}

pub fn role_arn(schema: &mut Schema) {
    object(schema).insert("pattern".into(), json!(ROLE_ARN));
}

/// `execution_role` and `task_role` defaults: an ARN (`{service}` and `{env}` are filled in).
pub fn arn(schema: &mut Schema) {
    object(schema).insert("pattern".into(), json!("^arn:"));
}

pub fn listen(schema: &mut Schema) {
    object(schema).insert("pattern".into(), json!(LISTEN));
}

pub fn http_url(schema: &mut Schema) {
    object(schema).insert("pattern".into(), json!(HTTP_URL));
}

pub fn table(schema: &mut Schema) {
    object(schema).insert("pattern".into(), json!(TABLE));
}

pub fn branch(schema: &mut Schema) {
    object(schema).insert("pattern".into(), json!(BRANCH));
}

pub fn tags(schema: &mut Schema) {
    object(schema).insert("enum".into(), json!(["semver", null]));
}

/// A 12-digit account id: quoted, or a plain number of 12 digits.
pub fn account_id(schema: &mut Schema) {
    let o = object(schema);
    o.insert("type".into(), json!(["string", "integer", "null"]));
    o.insert("pattern".into(), json!(r"^[0-9]{12}$"));
    o.insert("minimum".into(), json!(100_000_000_000u64));
    o.insert("maximum".into(), json!(999_999_999_999u64));
    o.insert("multipleOf".into(), json!(1));
}

/// `3` services, or `10%` of them.
pub fn prune_limit(schema: &mut Schema) {
    let o = object(schema);
    o.insert("type".into(), json!(["string", "integer", "null"]));
    o.insert("pattern".into(), json!(r"^\s*(?:\+?[0-9]*[1-9][0-9]*|[0-9.eE+-]+\s*%)\s*$"));
    o.insert("minimum".into(), json!(1));
    o.insert("multipleOf".into(), json!(1));
}

pub fn cloudwatch_namespace(schema: &mut Schema) {
    let o = object(schema);
    o.insert("pattern".into(), json!("^(?!AWS/)"));
    o.insert("minLength".into(), json!(1));
    o.insert("maxLength".into(), json!(255));
}

/// The events a notification sink may ask for.
pub fn events(schema: &mut Schema) {
    items(schema, json!({"enum": EVENTS}));
}

pub fn env_names(schema: &mut Schema) {
    items(schema, json!({"pattern": ENV_NAME}));
}

/// The environments map: keys are environment names.
pub fn environments(schema: &mut Schema) {
    object(schema).insert("propertyNames".into(), json!({"pattern": ENV_NAME}));
}

/// `source`: exactly one of `branch` or `tags`; `prereleases` with `tags` only.
pub fn source(schema: &mut Schema) {
    let o = object(schema);
    o.insert(
        "oneOf".into(),
        json!([
            {"required": ["branch"], "properties": {"branch": {"type": "string"}}},
            {"required": ["tags"], "properties": {"tags": {"type": "string"}}},
        ]),
    );
    o.insert("if".into(), json!({"required": ["branch"], "properties": {"branch": {"type": "string"}}}));
    o.insert("then".into(), json!({"properties": {"prereleases": {"type": "null"}}}));
}

/// `repo`: `url` is required; `token_env` and `ssh_key` not both.
pub fn repo(schema: &mut Schema) {
    let o = object(schema);
    require(o, &["url"]);
    o.insert("not".into(), both("token_env", "ssh_key"));
}

/// An object schema that matches when `a` and `b` are both set (not `null`).
fn both(a: &str, b: &str) -> Value {
    json!({"required": [a, b], "properties": {a: {"not": {"type": "null"}}, b: {"not": {"type": "null"}}}})
}

/// When `field` is set (not `null`), `needs` must be set too.
fn needs(field: &str, needs: &[&str]) -> Value {
    let props: Map<String, Value> = needs.iter().map(|n| (n.to_string(), json!({"not": {"type": "null"}}))).collect();
    json!({
        "if": {"required": [field], "properties": {field: {"not": {"type": "null"}}}},
        "then": {"required": needs, "properties": props},
    })
}

pub fn aws(schema: &mut Schema) {
    require(object(schema), &["region"]);
}

/// An environment's `aws`: `external_id` needs `role_arn`.
pub fn env_aws(schema: &mut Schema) {
    object(schema).insert("allOf".into(), json!([needs("external_id", &["role_arn"])]));
}

pub fn env(schema: &mut Schema) {
    require(object(schema), &["source", "cluster"]);
}

pub fn required_table(schema: &mut Schema) {
    require(object(schema), &["table"]);
}

/// A notification sink: its `type` and what that type needs.
pub fn sink(schema: &mut Schema) {
    let o = object(schema);
    require(o, &["type"]);
    if let Some(Value::Object(kind)) = o.get_mut("properties").and_then(|p| p.get_mut("type")) {
        kind.insert("enum".into(), json!(["slack", "webhook", "github"]));
    }
    let when = |kind: &str, then: Value| json!({"if": {"required": ["type"], "properties": {"type": {"const": kind}}}, "then": then});
    let set = |f: &str| json!({"required": [f], "properties": {f: {"type": "string"}}});
    o.insert(
        "allOf".into(),
        json!([
            when("slack", set("url_env")),
            when("github", json!({"allOf": [set("token_env"), set("repo")]})),
            when("webhook", json!({"oneOf": [set("url"), set("url_env")]})),
        ]),
    );
}

/// The agent config: `repo`, `aws` and `environments` are required.
pub fn agent(schema: &mut Schema) {
    require(object(schema), &["repo", "aws", "environments"]);
}
