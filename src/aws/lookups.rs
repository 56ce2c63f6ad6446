//! Verify before apply: referenced parameters and secrets exist (never reading a secret
//! value: DescribeParameters and DescribeSecret only), `ssm:` variables are read, and
//! image tags exist in ECR.

use std::collections::{BTreeMap, BTreeSet};

use super::{Aws, AwsError, classify, concurrently};
use aws_sdk_ecr::types as ecr;
use aws_sdk_ssm::types as ssm;

/// An image in an ECR registry of this region.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EcrImage {
    pub registry_id: String,
    pub repository: String,
    /// A tag, or a digest `sha256:…`.
    pub reference: String,
}

impl EcrImage {
    /// Parses `ACCOUNT.dkr.ecr.REGION.amazonaws.com/repo:tag` (or `@sha256:…`); `None` for
    /// images elsewhere or in another region.
    pub fn parse(image: &str, region: &str) -> Option<EcrImage> {
        let (host, rest) = image.split_once('/')?;
        let mut parts = host.split('.');
        let (account, dkr, ecr_, host_region) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if dkr != "dkr" || ecr_ != "ecr" || host_region != region || !host.ends_with(".amazonaws.com") {
            return None;
        }
        let (repository, reference) = match rest.split_once('@') {
            Some((repo, digest)) => (repo, digest),
            None => rest.rsplit_once(':')?,
        };
        Some(EcrImage {
            registry_id: account.to_string(),
            repository: repository.to_string(),
            reference: reference.to_string(),
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct VerifyRequest {
    /// SSM parameters used as secrets: existence only.
    pub ssm_secrets: BTreeSet<String>,
    /// SSM parameters used as plain variables: their values are read.
    pub ssm_variables: BTreeSet<String>,
    /// Secrets Manager ids (names or ARNs): existence, and the full ARN.
    pub secret_ids: BTreeSet<String>,
    pub images: BTreeSet<EcrImage>,
}

#[derive(Clone, Debug, Default)]
pub struct Verified {
    pub existing_ssm: BTreeSet<String>,
    pub ssm_values: BTreeMap<String, String>,
    /// `ssm:` variables that are SecureStrings: they belong under `secrets`.
    pub secure_variables: BTreeSet<String>,
    pub secret_arns: BTreeMap<String, String>,
    pub missing_images: BTreeSet<EcrImage>,
    /// Lookups that failed, per item (a failed batch fails each of its items): the
    /// services that reference them fail, the others go on.
    pub failed: BTreeMap<Item, AwsError>,
}

/// One thing verification looks up.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Item {
    /// An SSM parameter, by name.
    Parameter(String),
    /// A Secrets Manager secret, by the id the spec gives.
    Secret(String),
    Image(EcrImage),
}

impl Item {
    /// An SSM parameter referenced by name or ARN (looked up by name).
    pub fn parameter(name_or_arn: &str) -> Item {
        Item::Parameter(ssm_name(name_or_arn))
    }
}

fn ssm_name(name_or_arn: &str) -> String {
    match name_or_arn.split_once(":parameter") {
        Some((_, name)) if name_or_arn.starts_with("arn:") => {
            let flat = name.trim_start_matches('/');
            if flat.contains('/') { name.to_string() } else { flat.to_string() }
        }
        _ => name_or_arn.to_string(),
    }
}

/// What verification found to exist. Positive answers only: a missing secret or image is
/// asked again each time.
#[derive(Debug, Default)]
pub struct VerifyCache {
    ssm: BTreeSet<String>,
    secret_arns: BTreeMap<String, String>,
    images: BTreeSet<EcrImage>,
}

impl Aws {
    /// Verifies references and images. With `fresh`, everything is asked of AWS (before an
    /// apply); without, what was found before is taken from the cache (a steady-state poll
    /// then costs no verification requests). `ssm:` variable values are always read: a
    /// changed parameter is drift. A lookup that fails is in [`Verified::failed`].
    pub async fn verify(&self, req: &VerifyRequest, fresh: bool) -> Verified {
        let mut ask = req.clone();
        let mut cached = Verified::default();
        if !fresh {
            let cache = self.verify_cache.lock().expect("cache lock");
            ask.ssm_secrets.retain(|n| !cache.ssm.contains(&ssm_name(n)));
            ask.secret_ids.retain(|id| !cache.secret_arns.contains_key(id));
            ask.images.retain(|i| !cache.images.contains(i));
            cached.existing_ssm =
                req.ssm_secrets.iter().map(|n| ssm_name(n)).filter(|n| cache.ssm.contains(n)).collect();
            cached.secret_arns = req
                .secret_ids
                .iter()
                .filter_map(|id| cache.secret_arns.get(id).map(|a| (id.clone(), a.clone())))
                .collect();
        }
        let mut out = self.verify_uncached(&ask).await;
        let mut cache = self.verify_cache.lock().expect("cache lock");
        for n in ask.ssm_secrets.iter().map(|n| ssm_name(n)) {
            if out.failed.contains_key(&Item::Parameter(n.clone())) {
                continue;
            }
            if out.existing_ssm.contains(&n) {
                cache.ssm.insert(n);
            } else {
                cache.ssm.remove(&n);
            }
        }
        for id in &ask.secret_ids {
            if out.failed.contains_key(&Item::Secret(id.clone())) {
                continue;
            }
            match out.secret_arns.get(id) {
                Some(arn) => {
                    cache.secret_arns.insert(id.clone(), arn.clone());
                }
                None => {
                    cache.secret_arns.remove(id);
                }
            }
        }
        for i in &ask.images {
            if out.failed.contains_key(&Item::Image(i.clone())) {
                continue;
            }
            if out.missing_images.contains(i) {
                cache.images.remove(i);
            } else {
                cache.images.insert(i.clone());
            }
        }
        out.existing_ssm.extend(cached.existing_ssm);
        out.secret_arns.extend(cached.secret_arns);
        out
    }

    /// The values of up to ten parameters (GetParameters without decryption).
    async fn parameter_values(
        &self,
        names: Vec<String>,
    ) -> (Vec<String>, Result<aws_sdk_ssm::operation::get_parameters::GetParametersOutput, AwsError>) {
        let resp = self
            .ssm
            .get_parameters()
            .set_names(Some(names.clone()))
            .with_decryption(false)
            .send()
            .await
            .map_err(|e| classify("GetParameters", e));
        (names, resp)
    }

    /// Which of up to 50 parameter names exist (DescribeParameters: metadata, never a value).
    async fn existing_parameters(&self, chunk: &[String]) -> Result<Vec<String>, AwsError> {
        let filter = ssm::ParameterStringFilter::builder()
            .key("Name")
            .option("Equals")
            .set_values(Some(chunk.to_vec()))
            .build()
            .map_err(|e| AwsError::other("DescribeParameters", e.to_string()))?;
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let resp = self
                .ssm
                .describe_parameters()
                .parameter_filters(filter.clone())
                .max_results(50)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| classify("DescribeParameters", e))?;
            found.extend(resp.parameters().iter().filter_map(|p| p.name().map(str::to_string)));
            token = resp.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(found);
            }
        }
    }

    async fn verify_uncached(&self, req: &VerifyRequest) -> Verified {
        let mut out = Verified::default();
        let names: Vec<String> =
            req.ssm_secrets.iter().map(|n| ssm_name(n)).collect::<BTreeSet<_>>().into_iter().collect();
        // Chunks of names in parallel; the pages of one chunk follow its token. (Owned
        // chunks: a future borrowing through a closure over `&[String]` is not `Send` for
        // every lifetime, which the engine's spawned tasks need.)
        let existing = concurrently(names.chunks(50).map(<[String]>::to_vec).map(|chunk| async move {
            let found = self.existing_parameters(&chunk).await;
            (chunk, found)
        }))
        .await;
        for (chunk, names) in existing {
            match names {
                Ok(names) => out.existing_ssm.extend(names),
                Err(e) => out.fail(chunk.iter().map(|n| Item::Parameter(n.clone())), &e),
            }
        }
        let vars: Vec<String> = req.ssm_variables.iter().cloned().collect();
        let values = concurrently(vars.chunks(10).map(<[String]>::to_vec).map(|c| self.parameter_values(c))).await;
        // A denied batch may be one parameter the role may not read: ask its names one by
        // one, so that only the services using that one fail.
        let mut alone = Vec::new();
        for (chunk, resp) in values {
            match resp {
                Err(AwsError::AccessDenied { .. } | AwsError::Other { .. }) if chunk.len() > 1 => {
                    alone.extend(chunk.into_iter().map(|n| vec![n]));
                }
                resp => out.take_values(&chunk, resp),
            }
        }
        for (chunk, resp) in concurrently(alone.into_iter().map(|c| self.parameter_values(c))).await {
            out.take_values(&chunk, resp);
        }
        // One request per secret or repository, a few at a time.
        let secrets = concurrently(req.secret_ids.iter().cloned().map(|id| async move {
            let answer = self.sm.describe_secret().secret_id(&id).send().await;
            (id, answer)
        }))
        .await;
        for (id, result) in secrets {
            match result {
                Ok(resp) => {
                    if resp.deleted_date().is_none()
                        && let Some(arn) = resp.arn()
                    {
                        out.secret_arns.insert(id.clone(), arn.to_string());
                    }
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => {}
                Err(e) => out.fail([Item::Secret(id.clone())], &classify("DescribeSecret", e)),
            }
        }
        let mut by_repo: BTreeMap<(String, String), Vec<EcrImage>> = BTreeMap::new();
        for image in &req.images {
            by_repo.entry((image.registry_id.clone(), image.repository.clone())).or_default().push(image.clone());
        }
        let batches: Vec<(String, String, Vec<EcrImage>)> = by_repo
            .into_iter()
            .flat_map(|((registry, repo), images)| {
                images.chunks(100).map(|c| (registry.clone(), repo.clone(), c.to_vec())).collect::<Vec<_>>()
            })
            .collect();
        let answers = concurrently(batches.into_iter().map(|(registry, repo, chunk)| async move {
            let ids: Vec<ecr::ImageIdentifier> = chunk
                .iter()
                .map(|i| {
                    let b = ecr::ImageIdentifier::builder();
                    if i.reference.starts_with("sha256:") {
                        b.image_digest(&i.reference)
                    } else {
                        b.image_tag(&i.reference)
                    }
                    .build()
                })
                .collect();
            let resp = self
                .ecr
                .batch_get_image()
                .registry_id(&registry)
                .repository_name(&repo)
                .set_image_ids(Some(ids))
                .send()
                .await;
            (chunk, resp)
        }))
        .await;
        for (chunk, resp) in answers {
            match resp {
                Ok(r) => {
                    let found: BTreeSet<String> = r
                        .images()
                        .iter()
                        .filter_map(|i| i.image_id())
                        .flat_map(|id| [id.image_tag().map(str::to_string), id.image_digest().map(str::to_string)])
                        .flatten()
                        .collect();
                    for i in chunk {
                        if !found.contains(&i.reference) {
                            out.missing_images.insert(i.clone());
                        }
                    }
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_repository_not_found_exception()) => {
                    out.missing_images.extend(chunk.iter().map(|i| (*i).clone()));
                }
                Err(e) => out.fail(chunk.iter().map(|i| Item::Image((*i).clone())), &classify("BatchGetImage", e)),
            }
        }
        out
    }
}

impl Verified {
    /// Folds in a GetParameters answer for `chunk`: values, SecureStrings, or the failure.
    fn take_values(
        &mut self,
        chunk: &[String],
        resp: Result<aws_sdk_ssm::operation::get_parameters::GetParametersOutput, AwsError>,
    ) {
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return self.fail(chunk.iter().map(|n| Item::Parameter(n.clone())), &e),
        };
        for p in resp.parameters() {
            let (Some(name), Some(value)) = (p.name(), p.value()) else { continue };
            let asked = chunk.iter().find(|c| ssm_name(c) == name || *c == name || p.arn() == Some(c.as_str()));
            let key = asked.cloned().unwrap_or_else(|| name.to_string());
            if p.r#type() == Some(&ssm::ParameterType::SecureString) {
                self.secure_variables.insert(key);
            } else {
                self.ssm_values.insert(key, value.to_string());
            }
        }
    }

    /// What verification finds when every parameter, secret and image of `req` exists,
    /// with `values` for the `ssm:` variables and `secret_arns` for the secrets (what an
    /// offline decision assumes: benches, tests).
    pub fn all_found(
        req: &VerifyRequest,
        values: &BTreeMap<String, String>,
        secret_arns: &BTreeMap<String, String>,
    ) -> Verified {
        Verified {
            existing_ssm: req.ssm_secrets.iter().map(|n| ssm_name(n)).collect(),
            ssm_values: req.ssm_variables.iter().filter_map(|n| Some((n.clone(), values.get(n)?.clone()))).collect(),
            secret_arns: req
                .secret_ids
                .iter()
                .filter_map(|id| Some((id.clone(), secret_arns.get(id)?.clone())))
                .collect(),
            ..Verified::default()
        }
    }

    fn fail(&mut self, items: impl IntoIterator<Item = Item>, error: &AwsError) {
        for i in items {
            self.failed.insert(i, error.clone());
        }
    }

    /// The first failed lookup of `items`, if any.
    pub fn failure<'a>(&'a self, items: impl IntoIterator<Item = &'a Item>) -> Option<&'a AwsError> {
        items.into_iter().find_map(|i| self.failed.get(i))
    }

    pub fn ssm_exists(&self, name_or_arn: &str) -> bool {
        self.existing_ssm.contains(&ssm_name(name_or_arn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ecr_images() {
        let i = EcrImage::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:abc", "us-east-1").unwrap();
        assert_eq!(
            (i.registry_id.as_str(), i.repository.as_str(), i.reference.as_str()),
            ("123456789012", "team/web", "abc")
        );
        assert!(EcrImage::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/web:abc", "us-east-1").is_none());
        assert!(EcrImage::parse("ghcr.io/acme/web:1", "us-east-1").is_none());
        let d = EcrImage::parse("1.dkr.ecr.us-east-1.amazonaws.com/web@sha256:00", "us-east-1").unwrap();
        assert_eq!(d.reference, "sha256:00");
        assert_eq!(ssm_name("arn:aws:ssm:us-east-1:1:parameter/pre/x"), "/pre/x");
        assert_eq!(ssm_name("arn:aws:ssm:us-east-1:1:parameter/flat"), "flat");
    }
}
