//! DynamoDB: the state table of berth's history. Key schema: partition key `pk` (S), sort
//! key `sk` (S); TTL on `ttl` (N, Unix seconds). A history entry is the item
//! `pk = "history#<env>"`, `sk = "<Unix ms, 15 digits>#<service>"`, with `service` (S) and
//! the entry itself as JSON in `entry` (S): newest first is a query in reverse key order.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};

use super::{Aws, AwsError, classify};

/// A lease write's answer: the lease's version (the fencing token) when the write took
/// it, or `None` when another holder has it (the condition failed).
pub type LeaseAnswer = Option<u64>;

/// One item of the state table, as berth writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct StateItem {
    pub pk: String,
    pub sk: String,
    pub service: String,
    /// The entry, as JSON.
    pub body: String,
    /// Unix seconds after which DynamoDB may delete it.
    pub ttl: u64,
}

impl Aws {
    /// Creates the table (on-demand billing, TTL on `ttl`) unless it exists.
    pub async fn ensure_state_table(&self, table: &str) -> Result<(), AwsError> {
        match self.ddb().describe_table().table_name(table).send().await {
            Ok(_) => return Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => return Err(classify("DescribeTable", e)),
        }
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set")
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder().attribute_name(name).key_type(kind).build().expect("name and type are set")
        };
        let created = self
            .ddb()
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .send()
            .await;
        match created {
            Ok(_) => {}
            // Another berth process created it meanwhile.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => return Ok(()),
            Err(e) => return Err(classify("CreateTable", e)),
        }
        for _ in 0..60 {
            let d =
                self.ddb().describe_table().table_name(table).send().await.map_err(|e| classify("DescribeTable", e))?;
            if d.table().and_then(|t| t.table_status()).is_some_and(|s| s.as_str() == "ACTIVE") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        let ttl = TimeToLiveSpecification::builder().attribute_name("ttl").enabled(true).build().expect("set");
        if let Err(e) = self.ddb().update_time_to_live().table_name(table).time_to_live_specification(ttl).send().await
        {
            tracing::warn!(table, error = %classify("UpdateTimeToLive", e), "cannot turn on the state table's TTL");
        }
        tracing::info!(table, "created the state table");
        Ok(())
    }

    pub async fn put_state_item(&self, table: &str, item: &StateItem) -> Result<(), AwsError> {
        self.ddb()
            .put_item()
            .table_name(table)
            .item("pk", AttributeValue::S(item.pk.clone()))
            .item("sk", AttributeValue::S(item.sk.clone()))
            .item("service", AttributeValue::S(item.service.clone()))
            .item("entry", AttributeValue::S(item.body.clone()))
            .item("ttl", AttributeValue::N(item.ttl.to_string()))
            .send()
            .await
            .map_err(|e| classify("PutItem", e))?;
        Ok(())
    }

    /// Takes the lease `pk` for `holder` until `expires_ms` (Unix ms) if it is free or expired
    /// at `now_ms` (its version goes up by one: the new fencing token), or renews it when
    /// `version` is given and `holder` still has it at that version.
    pub async fn write_lease(
        &self,
        table: &str,
        pk: &str,
        holder: &str,
        version: Option<u64>,
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<LeaseAnswer, AwsError> {
        let n = |v: u64| AttributeValue::N(v.to_string());
        let mut req = self
            .ddb()
            .update_item()
            .table_name(table)
            .key("pk", AttributeValue::S(pk.to_string()))
            .key("sk", AttributeValue::S("lease".into()))
            .expression_attribute_names("#h", "holder")
            .expression_attribute_values(":me", AttributeValue::S(holder.to_string()))
            .expression_attribute_values(":exp", n(expires_ms))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        req = match version {
            None => req
                .update_expression("SET #h = :me, expires_at = :exp, version = if_not_exists(version, :zero) + :one")
                // Our own name: a take whose answer was lost, made again.
                .condition_expression("attribute_not_exists(pk) OR expires_at < :now OR #h = :me")
                .expression_attribute_values(":now", n(now_ms))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1)),
            Some(v) => req
                .update_expression("SET expires_at = :exp")
                .condition_expression("#h = :me AND version = :v")
                .expression_attribute_values(":v", n(v)),
        };
        match req.send().await {
            Ok(out) => {
                let v = out.attributes().and_then(|a| a.get("version")).and_then(|v| v.as_n().ok());
                Ok(Some(v.and_then(|v| v.parse().ok()).unwrap_or(0)))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(classify("UpdateItem", e)),
        }
    }

    /// Gives the lease up (expires it now) if `holder` still has it at `version`.
    pub async fn release_lease(&self, table: &str, pk: &str, holder: &str, version: u64) -> Result<(), AwsError> {
        let r = self
            .ddb()
            .update_item()
            .table_name(table)
            .key("pk", AttributeValue::S(pk.to_string()))
            .key("sk", AttributeValue::S("lease".into()))
            .update_expression("SET expires_at = :zero")
            .condition_expression("#h = :me AND version = :v")
            .expression_attribute_names("#h", "holder")
            .expression_attribute_values(":me", AttributeValue::S(holder.to_string()))
            .expression_attribute_values(":v", AttributeValue::N(version.to_string()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(classify("UpdateItem", e)),
        }
    }

    /// Up to `limit` items of partition `pk`, newest key first, of `service` only if given.
    pub async fn query_state_items(
        &self,
        table: &str,
        pk: &str,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StateItem>, AwsError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut q = self
                .ddb()
                .query()
                .table_name(table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
                .scan_index_forward(false)
                .set_exclusive_start_key(start.take());
            if let Some(s) = service {
                q = q
                    .filter_expression("#s = :s")
                    .expression_attribute_names("#s", "service")
                    .expression_attribute_values(":s", AttributeValue::S(s.to_string()));
            }
            let resp = q.send().await.map_err(|e| classify("Query", e))?;
            for item in resp.items() {
                let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                let ttl = item.get("ttl").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(0);
                out.push(StateItem { pk: s("pk"), sk: s("sk"), service: s("service"), body: s("entry"), ttl });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}
