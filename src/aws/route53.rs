//! Route53: the alias A records of a hosted zone, and one change at a time to them.

use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsError;
use aws_sdk_route53::types as r53;

use super::{Aws, AwsError, classify};
use crate::core::routing::LiveRecord;

/// A zone id without the `/hostedzone/` prefix the API sometimes gives it.
fn bare_zone_id(zone_id: &str) -> &str {
    zone_id.strip_prefix("/hostedzone/").unwrap_or(zone_id)
}

/// A name as Route53 lists it (`\052.Example.com.`) as berth writes it: the octal escapes
/// of characters outside `[a-z0-9-_.]` (a wildcard's `*`) decoded, no trailing dot, lower
/// case.
fn plain_name(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match escape.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    let name = String::from_utf8_lossy(&out);
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A DELETE of a record that is not there: Route53 rejects the batch saying so.
fn is_missing_record(e: &ChangeResourceRecordSetsError) -> bool {
    let ChangeResourceRecordSetsError::InvalidChangeBatch(batch) = e else { return false };
    let not_found = |m: &str| m.to_ascii_lowercase().contains("not found");
    batch.messages().iter().any(|m| not_found(m)) || batch.message().is_some_and(not_found)
}

impl Aws {
    /// The alias A records of a hosted zone (ListResourceRecordSets, all pages), names
    /// lower case without the trailing dot. `zone_id` is `Z123` or `/hostedzone/Z123`.
    pub async fn list_alias_records(&self, zone_id: &str) -> Result<Vec<LiveRecord>, AwsError> {
        let zone = bare_zone_id(zone_id);
        let mut out = Vec::new();
        let mut start: Option<(String, Option<r53::RrType>, Option<String>)> = None;
        loop {
            let (name, kind, identifier) = start.take().unwrap_or_default();
            let resp = (self.route53().list_resource_record_sets())
                .hosted_zone_id(zone)
                .set_start_record_name((!name.is_empty()).then_some(name))
                .set_start_record_type(kind)
                .set_start_record_identifier(identifier)
                .send()
                .await
                .map_err(|e| classify("ListResourceRecordSets", e))?;
            for set in resp.resource_record_sets() {
                let Some(alias) = set.alias_target().filter(|_| set.r#type() == &r53::RrType::A) else { continue };
                out.push(LiveRecord {
                    zone_id: zone.to_string(),
                    name: plain_name(set.name()),
                    alias_dns_name: plain_name(alias.dns_name()),
                    alias_hosted_zone_id: alias.hosted_zone_id().to_string(),
                });
            }
            match resp.next_record_name() {
                Some(next) if resp.is_truncated() => {
                    start = Some((
                        next.to_string(),
                        resp.next_record_type().cloned(),
                        resp.next_record_identifier().map(str::to_string),
                    ));
                }
                _ => return Ok(out),
            }
        }
    }

    /// ChangeResourceRecordSets with one change: UPSERT (`delete` false) or DELETE of the
    /// alias A record `name` (sent lower case) to the alias target (DNS name, hosted zone),
    /// not evaluating target health. Deleting a record that is not there is success.
    pub async fn change_alias_record(
        &self,
        zone_id: &str,
        name: &str,
        alias_dns_name: &str,
        alias_zone_id: &str,
        delete: bool,
    ) -> Result<(), AwsError> {
        let operation = "ChangeResourceRecordSets";
        let built = |e: aws_smithy_types::error::operation::BuildError| AwsError::other(operation, e.to_string());
        let alias = r53::AliasTarget::builder()
            .dns_name(alias_dns_name)
            .hosted_zone_id(alias_zone_id)
            .evaluate_target_health(false)
            .build()
            .map_err(built)?;
        // Lower case, as listed: DNS names are case-insensitive, and the name then reads
        // back as written (moto also matches it against the zone's name case by case).
        let set = r53::ResourceRecordSet::builder()
            .name(name.to_ascii_lowercase())
            .r#type(r53::RrType::A)
            .alias_target(alias)
            .build()
            .map_err(built)?;
        let action = if delete { r53::ChangeAction::Delete } else { r53::ChangeAction::Upsert };
        let change = r53::Change::builder().action(action).resource_record_set(set).build().map_err(built)?;
        let batch = r53::ChangeBatch::builder().changes(change).build().map_err(built)?;
        let sent = (self.route53().change_resource_record_sets())
            .hosted_zone_id(bare_zone_id(zone_id))
            .change_batch(batch)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if delete && e.as_service_error().is_some_and(is_missing_record) => Ok(()),
            Err(e) => Err(classify(operation, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_as_written() {
        assert_eq!(plain_name("Api.Example.com."), "api.example.com");
        assert_eq!(plain_name("\\052.example.com."), "*.example.com");
        assert_eq!(plain_name("a\\05.b"), "a\\05.b");
        assert_eq!(bare_zone_id("/hostedzone/Z123"), "Z123");
        assert_eq!(bare_zone_id("Z123"), "Z123");
    }

    #[test]
    fn a_delete_of_a_missing_record_is_recognised() {
        use aws_sdk_route53::types::error::{InvalidChangeBatch, InvalidInput};
        let batch = |messages: &[&str], message: Option<&str>| {
            let mut b = InvalidChangeBatch::builder().set_message(message.map(str::to_string));
            for m in messages {
                b = b.messages(*m);
            }
            ChangeResourceRecordSetsError::InvalidChangeBatch(b.build())
        };
        let missing = "Tried to delete resource record set [name='a.example.com.', type='A'] but it was not found";
        assert!(is_missing_record(&batch(&[missing], None)));
        assert!(is_missing_record(&batch(&[], Some(&format!("[{missing}]")))));
        assert!(!is_missing_record(&batch(&["RRSet with DNS name a.example.org. is not permitted"], None)));
        let input = ChangeResourceRecordSetsError::InvalidInput(InvalidInput::builder().message("not found").build());
        assert!(!is_missing_record(&input));
    }
}
