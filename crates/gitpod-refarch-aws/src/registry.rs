//! The registry for workspace images. By default (the AWS reference) Gitpod's
//! in-cluster registry stores layers in its own S3 bucket with a bucket-scoped user
//! (`container-registry-s3-backend`). With `registry.mode: managed`, an ECR
//! repository and a user that may push to it only; its password is an ECR token,
//! valid for 12 hours (Gitpod's installer cannot refresh it: re-run `apply` to renew,
//! or keep the in-cluster default).

use aws_credential_types::Credentials;
use base64::Engine as _;
use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::provider::{Inputs, Observed, Progress};
use gitpod_refarch::resource::{Output, RegistryOutput, RegistrySpec, ResourceId, ResourceKind};
use gitpod_refarch::spec::RegistryMode;
use gitpod_refarch::{Error, ErrorKind, Result, Secret};

use crate::context::{tags_of, Context};
use crate::error::{found, Ctx};
use crate::{iam, storage};

fn bucket_name(c: &Context, d: &RegistrySpec) -> String {
    format!("{}-registry-{}-{}", d.name, c.account, c.region)
}

fn user_name(name: &str) -> String {
    format!("{name}-registry")
}

fn repository(d: &RegistrySpec) -> String {
    format!("{}/{}", d.name, d.repository)
}

fn ecr_policy(c: &Context, repo: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
            {"Effect": "Allow", "Action": [
                "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage"
             ], "Resource": [format!("arn:aws:ecr:{}:{}:repository/{repo}", c.region, c.account)]}
        ]
    })
}

async fn repo_uri(c: &Context, repo: &str) -> Result<Option<String>> {
    let out = found(
        c.clients
            .ecr
            .describe_repositories()
            .repository_names(repo)
            .send()
            .await
            .ctx(format!("reading repository {repo}")),
    )?;
    Ok(out.and_then(|o| {
        o.repositories()
            .first()
            .and_then(|r| r.repository_uri())
            .map(str::to_string)
    }))
}

/// The registry storage (bucket or repository) and its user.
pub async fn observe(c: &Context, d: &RegistrySpec) -> Result<Option<Observed<RegistrySpec>>> {
    let exists = match d.mode {
        RegistryMode::Managed => repo_uri(c, &repository(d)).await?.is_some(),
        _ => {
            storage::bucket_owner(c, &bucket_name(c, d), &d.name).await?
                == Some(storage::Ownership::Ours)
        }
    };
    if !exists {
        return Ok(None);
    }
    let mut actual = d.clone();
    actual.region = c.region.clone();
    if !iam::user_is_ours(c, &user_name(&d.name), &d.name).await? {
        actual
            .labels
            .insert("gitpod-refarch/incomplete".into(), "user".into());
    }
    Ok(Some(Observed::ready(actual, None)))
}

/// Create or complete the registry; issue credentials unless state holds them.
pub async fn ensure(c: &Context, d: &RegistrySpec, inputs: &Inputs) -> Result<Progress> {
    let tags = tags_of(&d.labels, &d.name);
    let own = inputs
        .get(&ResourceId::new(ResourceKind::Registry, d.name.clone()))
        .cloned();
    // Credentials from state are reused only for the same kind of registry and place.
    let own = own.filter(|o| match (o, d.mode) {
        (
            Output::Registry(RegistryOutput::InClusterS3 { bucket, .. }),
            RegistryMode::InClusterObjectStorage,
        ) => *bucket == bucket_name(c, d),
        (Output::Registry(RegistryOutput::External { url, .. }), RegistryMode::Managed) => {
            url.ends_with(&repository(d))
        }
        _ => false,
    });
    let user = user_name(&d.name);
    let out = match d.mode {
        RegistryMode::Managed => {
            let repo = repository(d);
            let uri = match repo_uri(c, &repo).await? {
                Some(u) => u,
                None => {
                    let ecr_tags: Vec<aws_sdk_ecr::types::Tag> = tags
                        .iter()
                        .filter_map(|(k, v)| {
                            aws_sdk_ecr::types::Tag::builder()
                                .key(k)
                                .value(v)
                                .build()
                                .ok()
                        })
                        .collect();
                    c.clients
                        .ecr
                        .create_repository()
                        .repository_name(&repo)
                        .set_tags(Some(ecr_tags))
                        .send()
                        .await
                        .ctx(format!("creating repository {repo}"))?
                        .repository()
                        .and_then(|r| r.repository_uri())
                        .unwrap_or_default()
                        .to_string()
                }
            };
            let key =
                iam::ensure_user(c, &user, &ecr_policy(c, &repo), &tags, own.is_none()).await?;
            match (key, own) {
                (Some((id, secret)), _) => {
                    Output::Registry(ecr_output(c, &uri, &id, &secret).await?)
                }
                (None, Some(o)) => o,
                (None, None) => return Err(Error::internal("no registry credentials")),
            }
        }
        _ => {
            let bucket = bucket_name(c, d);
            storage::ensure_bucket(c, &bucket, &d.name, &tags, false, true).await?;
            let key = iam::ensure_user(
                c,
                &user,
                &storage::bucket_policy(&bucket),
                &tags,
                own.is_none(),
            )
            .await?;
            match (key, own) {
                (Some((id, secret)), _) => Output::Registry(RegistryOutput::InClusterS3 {
                    bucket,
                    region: c.region.clone(),
                    endpoint: c.s3_endpoint(),
                    access_key_id: id,
                    secret_access_key: secret,
                }),
                (None, Some(o)) => o,
                (None, None) => return Err(Error::internal("no registry credentials")),
            }
        }
    };
    Ok(Progress::Done(Some(out)))
}

/// An ECR token of the registry user (not of the SDK's principal).
async fn ecr_output(c: &Context, uri: &str, id: &str, secret: &Secret) -> Result<RegistryOutput> {
    let conf = c
        .clients
        .ecr
        .config()
        .to_builder()
        .credentials_provider(Credentials::new(
            id,
            secret.expose().clone(),
            None,
            None,
            "gitpod-refarch-registry-user",
        ))
        .build();
    let client = aws_sdk_ecr::Client::from_conf(conf);
    // A new key takes seconds to propagate: retry here (the injected clock and the
    // context's policy), without issuing another key.
    let token = c
        .retry
        .run_when(
            c.clock.as_ref(),
            |e| e.kind() == ErrorKind::Credentials,
            || async {
                client
                    .get_authorization_token()
                    .send()
                    .await
                    .ctx("getting an ECR token for the registry user")
            },
            |attempt, _, e| tracing::debug!(attempt, "ECR has not accepted the new key yet: {e}"),
        )
        .await
        .map_err(|e| {
            if e.kind() == ErrorKind::Credentials {
                Error::new(
                    ErrorKind::OperationFailed,
                    "the registry user's new key was never accepted by ECR",
                )
                .with_source(e)
            } else {
                e
            }
        })?;
    let data = token
        .authorization_data()
        .first()
        .and_then(|a| a.authorization_token())
        .ok_or_else(|| Error::new(ErrorKind::OperationFailed, "ECR returned no token"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| Error::new(ErrorKind::OperationFailed, "the ECR token is not base64"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| Error::new(ErrorKind::OperationFailed, "the ECR token has no user"))?;
    let server = uri.split('/').next().unwrap_or_default().to_string();
    Ok(RegistryOutput::External {
        url: uri.to_string(),
        server,
        username: user.to_string(),
        password: Secret::new(password.to_string()),
    })
}

/// Delete the user and the bucket or repository.
pub async fn delete(c: &Context, d: &RegistrySpec) -> Result<Progress> {
    iam::delete_user(c, &user_name(&d.name), &d.name).await?;
    match d.mode {
        RegistryMode::Managed => {
            // Only a repository tagged for this installation.
            let arn = found(
                c.clients
                    .ecr
                    .describe_repositories()
                    .repository_names(repository(d))
                    .send()
                    .await
                    .ctx("reading the repository"),
            )?
            .and_then(|o| {
                o.repositories()
                    .first()
                    .and_then(|r| r.repository_arn())
                    .map(str::to_string)
            });
            let Some(arn) = arn else {
                return Ok(Progress::Done(None));
            };
            let tags = c
                .clients
                .ecr
                .list_tags_for_resource()
                .resource_arn(&arn)
                .send()
                .await
                .ctx("reading the repository's tags")?;
            if !tags
                .tags()
                .iter()
                .any(|t| t.key() == INSTALLATION_LABEL && t.value() == d.name)
            {
                return Ok(Progress::Done(None));
            }
            found(
                c.clients
                    .ecr
                    .delete_repository()
                    .repository_name(repository(d))
                    .force(true)
                    .send()
                    .await
                    .ctx("deleting the repository"),
            )?;
        }
        _ => storage::delete_bucket(c, &bucket_name(c, d), &d.name).await?,
    }
    Ok(Progress::Done(None))
}
