//! References to values that live in AWS: SSM parameters and Secrets Manager secrets.
//!
//! A reference is all berth ever holds of a secret; the value itself is never read.

use std::fmt;

/// Where a secret or parameter lives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reference {
    /// An SSM parameter, by name (`/pre/db-host`) or by ARN.
    Ssm(SsmRef),
    /// A Secrets Manager secret (by name or ARN) and optionally one JSON key of it.
    SecretsManager(SecretRef),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SsmRef {
    /// The parameter name, always with its leading `/` when it is hierarchical.
    pub name: String,
    /// The ARN as written, when the user wrote one.
    pub arn: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretRef {
    /// The secret id as written: a name or an ARN (full, or partial without the suffix).
    pub id: String,
    pub field: Option<String>,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Ssm(r) => match &r.arn {
                Some(arn) => f.write_str(arn),
                None => write!(f, "ssm:{}", r.name),
            },
            Reference::SecretsManager(r) => {
                if r.id.starts_with("arn:") {
                    f.write_str(&r.id)?;
                } else {
                    write!(f, "secretsmanager:{}", r.id)?;
                }
                if let Some(field) = &r.field {
                    write!(f, "#{field}")?;
                }
                Ok(())
            }
        }
    }
}

const SYNTAX: &str = "expected `ssm:/name`, `secretsmanager:NAME` or `secretsmanager:NAME#field`, \
     or the ARN of an SSM parameter or a Secrets Manager secret";

fn valid_ssm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 2048
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
        && !name.ends_with('/')
        && !name.contains("//")
}

fn valid_secret_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 512 && name.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
}

fn valid_field(field: &str) -> bool {
    !field.is_empty() && !field.contains(':') && !field.chars().any(char::is_whitespace)
}

/// Splits `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
fn split_arn(arn: &str) -> Option<(&str, &str)> {
    let mut it = arn.splitn(6, ':');
    let (_arn, partition, service, region, account, resource) =
        (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    let ok = partition.starts_with("aws")
        && !region.is_empty()
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit());
    ok.then_some((service, resource))
}

/// Why `split_arn` rejects `arn`.
fn arn_problem(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let why = match parts[..] {
        [_, partition, ..] if !partition.is_empty() && !partition.starts_with("aws") => {
            format!("the partition `{partition}` is not an AWS partition")
        }
        [_, _, _, "", _, _] => "the region is missing".to_string(),
        [_, _, _, _, account, _] if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) => {
            format!("the account id `{account}` must be 12 digits")
        }
        _ => "expected `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`".to_string(),
    };
    format!("`{arn}` is not a valid ARN: {why}")
}

fn parse_ssm_arn(arn: &str) -> Result<Reference, String> {
    match split_arn(arn) {
        Some(("ssm", resource)) => {
            let name = resource
                .strip_prefix("parameter")
                .filter(|n| n.starts_with('/'))
                .ok_or_else(|| format!("`{arn}` is not an SSM parameter ARN (`…:parameter/name`)"))?;
            // `parameter/a/b` names `/a/b`; `parameter/x` names the flat parameter `x`.
            let flat = &name[1..];
            let name = if flat.contains('/') { name.to_string() } else { flat.to_string() };
            if !valid_ssm_name(&name) {
                return Err(format!("`{arn}` has an invalid parameter name"));
            }
            Ok(Reference::Ssm(SsmRef { name, arn: Some(arn.to_string()) }))
        }
        Some(_) => Err(format!("`{arn}` is not an SSM parameter ARN; {SYNTAX}")),
        None => Err(arn_problem(arn)),
    }
}

fn parse_secret_id(id_and_field: &str) -> Result<Reference, String> {
    let (id, field) = match id_and_field.split_once('#') {
        Some((id, field)) => (id, Some(field)),
        None => (id_and_field, None),
    };
    if field == Some("") {
        return Err("empty JSON key after `#`: write `NAME#field`, or drop the `#` to use the whole secret".to_string());
    }
    if let Some(field) = field
        && !valid_field(field)
    {
        return Err(format!("invalid JSON key `{field}` after `#`"));
    }
    if id.starts_with("arn:") {
        match split_arn(id) {
            Some(("secretsmanager", resource)) => {
                let name = resource
                    .strip_prefix("secret:")
                    .ok_or_else(|| format!("`{id}` is not a Secrets Manager secret ARN (`…:secret:NAME`)"))?;
                if !valid_secret_name(name) {
                    return Err(format!(
                        "`{id}` has an invalid secret name (write a JSON key as `#field`, not `:field::`)"
                    ));
                }
            }
            Some(_) => {
                return Err(format!("`{id}` is not a Secrets Manager secret ARN; {SYNTAX}"));
            }
            None => return Err(arn_problem(id)),
        }
    } else if !valid_secret_name(id) {
        return Err(format!("invalid secret name `{id}`; {SYNTAX}"));
    }
    Ok(Reference::SecretsManager(SecretRef { id: id.to_string(), field: field.map(str::to_string) }))
}

/// Parses a secret reference as written in `config.yaml`.
pub fn parse_secret(text: &str) -> Result<Reference, String> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("ssm:") {
        return parse_ssm(rest);
    }
    if let Some(rest) = text.strip_prefix("secretsmanager:") {
        return parse_secret_id(rest);
    }
    if text.starts_with("arn:") {
        let arn = text.split('#').next().unwrap_or(text);
        return match split_arn(arn) {
            Some(("ssm", _)) => parse_ssm_arn(text),
            Some(("secretsmanager", _)) => parse_secret_id(text),
            Some(_) => Err(format!("`{text}` is not an SSM parameter or Secrets Manager ARN; {SYNTAX}")),
            None => Err(arn_problem(arn)),
        };
    }
    Err(format!("invalid secret reference `{text}`; {SYNTAX}"))
}

/// Parses the part after `ssm:` (a name or an ARN).
pub fn parse_ssm(rest: &str) -> Result<Reference, String> {
    if rest.starts_with("arn:") {
        return parse_ssm_arn(rest);
    }
    if !valid_ssm_name(rest) {
        return Err(format!(
            "invalid SSM parameter name `{rest}`: use letters, digits and `_.-/`, e.g. `ssm:/pre/app/key`"
        ));
    }
    Ok(Reference::Ssm(SsmRef { name: rest.to_string(), arn: None }))
}

/// What a reference becomes in a container's `secrets[].valueFrom`.
///
/// `secret_arn` is the full ARN of the secret when it has been looked up (DescribeSecret);
/// without it, the partial ARN `arn:…:secret:NAME` is used, which ECS accepts.
pub fn value_from(
    reference: &Reference,
    partition: &str,
    region: &str,
    account: Option<&str>,
    secret_arn: Option<&str>,
) -> Result<String, String> {
    match reference {
        Reference::Ssm(r) => Ok(match (&r.arn, account) {
            (Some(arn), _) => arn.clone(),
            (None, Some(account)) => ssm_arn(partition, region, account, &r.name),
            // ECS accepts a bare parameter name in the task's own region.
            (None, None) => r.name.clone(),
        }),
        Reference::SecretsManager(r) => {
            let base = match (secret_arn, r.id.starts_with("arn:")) {
                (Some(full), _) => full.to_string(),
                (None, true) => r.id.clone(),
                (None, false) => {
                    let account = account.ok_or_else(|| {
                        format!(
                            "`secretsmanager:{}` needs the account id to build its ARN: set `aws.account_id` in the agent config",
                            r.id
                        )
                    })?;
                    format!("arn:{partition}:secretsmanager:{region}:{account}:secret:{}", r.id)
                }
            };
            Ok(match &r.field {
                Some(field) => format!("{base}:{field}::"),
                None => base,
            })
        }
    }
}

pub fn ssm_arn(partition: &str, region: &str, account: &str, name: &str) -> String {
    let sep = if name.starts_with('/') { "" } else { "/" };
    format!("arn:{partition}:ssm:{region}:{account}:parameter{sep}{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            parse_secret("ssm:/prod/db-password").unwrap(),
            Reference::Ssm(SsmRef { name: "/prod/db-password".into(), arn: None })
        );
        assert_eq!(
            parse_secret("secretsmanager:prod/klaus#api_key").unwrap(),
            Reference::SecretsManager(SecretRef { id: "prod/klaus".into(), field: Some("api_key".into()) })
        );
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/klaus-AbCdEf";
        assert_eq!(
            parse_secret(&format!("{arn}#k")).unwrap(),
            Reference::SecretsManager(SecretRef { id: arn.into(), field: Some("k".into()) })
        );
        let arn = "arn:aws:ssm:us-east-1:123456789012:parameter/prod/x";
        assert_eq!(
            parse_secret(arn).unwrap(),
            Reference::Ssm(SsmRef { name: "/prod/x".into(), arn: Some(arn.into()) })
        );
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "vault:/x",
            "ssm:",
            "ssm:/a b",
            "secretsmanager:",
            "secretsmanager:x#",
            "arn:aws:s3:::bucket",
            "arn:aws:ssm:us-east-1:123:parameter/x",
            "secret_arn_prod.field_name",
        ] {
            assert!(parse_secret(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn value_from_forms() {
        let r = parse_secret("secretsmanager:prod/klaus#api_key").unwrap();
        assert_eq!(
            value_from(&r, "aws", "us-east-1", Some("123456789012"), None).unwrap(),
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/klaus:api_key::"
        );
        assert_eq!(
            value_from(&r, "aws", "us-east-1", Some("1"), Some("arn:x:secret:prod/klaus-AbCdEf")).unwrap(),
            "arn:x:secret:prod/klaus-AbCdEf:api_key::"
        );
        assert!(value_from(&r, "aws", "us-east-1", None, None).is_err());
        let r = parse_secret("ssm:/p/x").unwrap();
        assert_eq!(
            value_from(&r, "aws", "eu-west-1", Some("123456789012"), None).unwrap(),
            "arn:aws:ssm:eu-west-1:123456789012:parameter/p/x"
        );
        assert_eq!(value_from(&r, "aws", "eu-west-1", None, None).unwrap(), "/p/x");
    }
}
