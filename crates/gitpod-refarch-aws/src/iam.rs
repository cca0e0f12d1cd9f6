//! IAM helpers: roles with managed policies, and users with one inline, scoped policy
//! and an access key. Everything is looked up by name before it is created.

use std::collections::BTreeMap;

use aws_sdk_iam::types::Tag;
use gitpod_refarch::plan::INSTALLATION_LABEL;
use gitpod_refarch::{Error, ErrorKind, Result, Secret};

use crate::context::Context;
use crate::error::{found, Ctx};

fn iam_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| Error::internal("bad IAM tag").with_source(e))
        })
        .collect()
}

fn owned(tags: &[Tag], installation: &str) -> bool {
    tags.iter()
        .any(|t| t.key() == INSTALLATION_LABEL && t.value() == installation)
}

fn foreign(kind: &str, name: &str, installation: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!("IAM {kind} {name} exists but is not tagged for installation {installation}; it is left alone"),
    )
}

/// A role: `None` if absent, its ARN and whether it is tagged for `installation`.
async fn role(c: &Context, name: &str, installation: &str) -> Result<Option<(String, bool)>> {
    let r = found(
        c.clients
            .iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .ctx(format!("reading role {name}")),
    )?;
    Ok(r.and_then(|o| {
        o.role()
            .map(|r| (r.arn().to_string(), owned(r.tags(), installation)))
    }))
}

/// The ARN of this installation's role, if it exists; a conflict if someone else's does.
pub async fn role_arn(c: &Context, name: &str, installation: &str) -> Result<Option<String>> {
    match role(c, name, installation).await? {
        None => Ok(None),
        Some((arn, true)) => Ok(Some(arn)),
        Some((_, false)) => Err(foreign("role", name, installation)),
    }
}

/// The ARN of the role if this installation owns it (absent or foreign: `None`).
pub async fn role_arn_if_ours(
    c: &Context,
    name: &str,
    installation: &str,
) -> Result<Option<String>> {
    Ok(match role(c, name, installation).await? {
        Some((arn, true)) => Some(arn),
        _ => None,
    })
}

/// Make a role with `trust` and exactly these managed policies; returns its ARN.
pub async fn ensure_role(
    c: &Context,
    name: &str,
    trust: &serde_json::Value,
    policies: &[&str],
    tags: &BTreeMap<String, String>,
) -> Result<String> {
    let iam = &c.clients.iam;
    let installation = tags.get(INSTALLATION_LABEL).cloned().unwrap_or_default();
    let arn = match role_arn(c, name, &installation).await? {
        Some(arn) => arn,
        None => iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust.to_string())
            .set_tags(Some(iam_tags(tags)?))
            .send()
            .await
            .ctx(format!("creating role {name}"))?
            .role()
            .map(|r| r.arn().to_string())
            .ok_or_else(|| Error::internal(format!("role {name} created without an ARN")))?,
    };
    let attached = attached_policies(c, name).await?;
    for p in policies {
        if !attached.iter().any(|a| a == p) {
            iam.attach_role_policy()
                .role_name(name)
                .policy_arn(*p)
                .send()
                .await
                .ctx(format!("attaching {p} to role {name}"))?;
        }
    }
    Ok(arn)
}

/// The managed policies attached to a role.
pub async fn attached_policies(c: &Context, name: &str) -> Result<Vec<String>> {
    let out = c
        .clients
        .iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .ctx(format!("listing policies of role {name}"))?;
    Ok(out
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect())
}

/// Detach every policy, then delete this installation's role. Absent (or someone
/// else's) is left alone.
pub async fn delete_role(c: &Context, name: &str, installation: &str) -> Result<()> {
    if !matches!(role(c, name, installation).await?, Some((_, true))) {
        return Ok(());
    }
    for p in attached_policies(c, name).await? {
        c.clients
            .iam
            .detach_role_policy()
            .role_name(name)
            .policy_arn(&p)
            .send()
            .await
            .ctx(format!("detaching {p} from role {name}"))?;
    }
    found(
        c.clients
            .iam
            .delete_role()
            .role_name(name)
            .send()
            .await
            .ctx(format!("deleting role {name}")),
    )?;
    Ok(())
}

/// A user: `None` if absent, else whether it is tagged for `installation`.
async fn user(c: &Context, name: &str, installation: &str) -> Result<Option<bool>> {
    let u = found(
        c.clients
            .iam
            .get_user()
            .user_name(name)
            .send()
            .await
            .ctx(format!("reading user {name}")),
    )?;
    Ok(u.and_then(|o| o.user().map(|u| owned(u.tags(), installation))))
}

/// Whether this installation's user exists; a conflict if someone else's does.
pub async fn user_exists(c: &Context, name: &str, installation: &str) -> Result<bool> {
    match user(c, name, installation).await? {
        None => Ok(false),
        Some(true) => Ok(true),
        Some(false) => Err(foreign("user", name, installation)),
    }
}

/// Whether this installation's user exists (absent or foreign: false).
pub async fn user_is_ours(c: &Context, name: &str, installation: &str) -> Result<bool> {
    Ok(user(c, name, installation).await? == Some(true))
}

/// The inline policy document of a user, if set.
pub async fn user_policy(
    c: &Context,
    user: &str,
    policy: &str,
) -> Result<Option<serde_json::Value>> {
    let out = found(
        c.clients
            .iam
            .get_user_policy()
            .user_name(user)
            .policy_name(policy)
            .send()
            .await
            .ctx(format!("reading policy {policy} of user {user}")),
    )?;
    Ok(out.and_then(|o| {
        let doc = o.policy_document();
        // IAM returns the document URL-encoded.
        let decoded = url_decode(doc);
        serde_json::from_str(&decoded).ok()
    }))
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A user with one inline policy. When `new_key` is set, existing access keys are
/// deleted (their secrets are unknown) and one new key is returned.
pub async fn ensure_user(
    c: &Context,
    name: &str,
    policy: &serde_json::Value,
    tags: &BTreeMap<String, String>,
    new_key: bool,
) -> Result<Option<(String, Secret)>> {
    let iam = &c.clients.iam;
    let installation = tags.get(INSTALLATION_LABEL).cloned().unwrap_or_default();
    if !user_exists(c, name, &installation).await? {
        iam.create_user()
            .user_name(name)
            .set_tags(Some(iam_tags(tags)?))
            .send()
            .await
            .ctx(format!("creating user {name}"))?;
    }
    if user_policy(c, name, name).await?.as_ref() != Some(policy) {
        iam.put_user_policy()
            .user_name(name)
            .policy_name(name)
            .policy_document(policy.to_string())
            .send()
            .await
            .ctx(format!("setting the policy of user {name}"))?;
    }
    if !new_key {
        return Ok(None);
    }
    delete_access_keys(c, name).await?;
    let key = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .ctx(format!("creating an access key for {name}"))?;
    let key = key
        .access_key()
        .ok_or_else(|| Error::internal("CreateAccessKey returned no key"))?;
    Ok(Some((
        key.access_key_id().to_string(),
        Secret::new(key.secret_access_key().to_string()),
    )))
}

async fn delete_access_keys(c: &Context, name: &str) -> Result<()> {
    let keys = c
        .clients
        .iam
        .list_access_keys()
        .user_name(name)
        .send()
        .await
        .ctx(format!("listing access keys of {name}"))?;
    for k in keys.access_key_metadata() {
        if let Some(id) = k.access_key_id() {
            found(
                c.clients
                    .iam
                    .delete_access_key()
                    .user_name(name)
                    .access_key_id(id)
                    .send()
                    .await
                    .ctx(format!("deleting an access key of {name}")),
            )?;
        }
    }
    Ok(())
}

/// Delete this installation's user: keys, inline policies, then the user. Absent
/// (or someone else's) is left alone.
pub async fn delete_user(c: &Context, name: &str, installation: &str) -> Result<()> {
    if user(c, name, installation).await? != Some(true) {
        return Ok(());
    }
    delete_access_keys(c, name).await?;
    let policies = c
        .clients
        .iam
        .list_user_policies()
        .user_name(name)
        .send()
        .await
        .ctx(format!("listing policies of {name}"))?;
    for p in policies.policy_names() {
        found(
            c.clients
                .iam
                .delete_user_policy()
                .user_name(name)
                .policy_name(p)
                .send()
                .await
                .ctx(format!("deleting policy {p} of {name}")),
        )?;
    }
    found(
        c.clients
            .iam
            .delete_user()
            .user_name(name)
            .send()
            .await
            .ctx(format!("deleting user {name}")),
    )?;
    Ok(())
}

/// A trust policy for an AWS service principal.
pub fn service_trust(service: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_decoding() {
        assert_eq!(super::url_decode("%7B%22a%22%3A1%7D"), "{\"a\":1}");
        assert_eq!(super::url_decode("a%2"), "a%2");
    }
}
