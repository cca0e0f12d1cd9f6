//! Service accounts, their keys, and role bindings on the project's IAM policy.
//!
//! Service accounts have no labels: the description marks them as the installation's
//! ([`crate::context::ownership_mark`]). Project roles are granted by a read-modify-write
//! of the project policy with its etag; a concurrent change (`ABORTED`/409) re-reads and
//! retries ([`GcpConfig::retry`](crate::config::GcpConfig::retry) on
//! [`GcpConfig::clock`](crate::config::GcpConfig::clock)), so two installations in one
//! project never lose each other's bindings.

use std::collections::BTreeSet;

use gitpod_refarch::{Error, ErrorKind, Result, Secret};
use google_cloud_iam_admin_v1::model::ServiceAccount;
use google_cloud_iam_v1::model::{Binding, GetPolicyOptions, Policy};

use crate::context::{foreign, ownership_mark, Context};
use crate::error::{found, from_gax, kind_of, GaxError, GaxResultExt};

/// The e-mail of service account `account_id`.
pub fn email(c: &Context, account_id: &str) -> String {
    format!("{account_id}@{}.iam.gserviceaccount.com", c.project)
}

/// `serviceAccount:<email>`.
pub fn member(c: &Context, account_id: &str) -> String {
    format!("serviceAccount:{}", email(c, account_id))
}

fn sa_name(c: &Context, account_id: &str) -> String {
    format!(
        "projects/{}/serviceAccounts/{}",
        c.project,
        email(c, account_id)
    )
}

/// The service account, if it exists and is the installation's. A same-named account
/// that is not marked as ours is a [`ErrorKind::Conflict`].
pub async fn get_account(
    c: &Context,
    account_id: &str,
    installation: &str,
) -> Result<Option<ServiceAccount>> {
    let sa = found(
        c.clients
            .iam
            .get_service_account()
            .set_name(sa_name(c, account_id))
            .send()
            .await,
        format!("reading service account {account_id}"),
    )?;
    match sa {
        Some(sa) if sa.description != ownership_mark(installation) => Err(foreign(
            &format!("service account {}", email(c, account_id)),
            installation,
        )),
        other => Ok(other),
    }
}

/// Create the service account unless it exists.
pub async fn ensure_account(
    c: &Context,
    account_id: &str,
    display_name: &str,
    installation: &str,
) -> Result<ServiceAccount> {
    if let Some(sa) = get_account(c, account_id, installation).await? {
        return Ok(sa);
    }
    let created = c
        .clients
        .iam
        .create_service_account()
        .set_name(c.project_path())
        .set_account_id(account_id)
        .set_service_account(
            ServiceAccount::new()
                .set_display_name(display_name)
                .set_description(ownership_mark(installation)),
        )
        .send()
        .await;
    match created {
        Ok(sa) => Ok(sa),
        // Created by a call whose answer was lost: read it back (and check it).
        Err(e) if kind_of(&e) == ErrorKind::Conflict => get_account(c, account_id, installation)
            .await?
            .ok_or_else(|| from_gax(e, format!("creating service account {account_id}"))),
        Err(e) => Err(from_gax(
            e,
            format!("creating service account {account_id}"),
        )),
    }
}

/// Create a JSON key for the account; the key file is a secret.
pub async fn create_key(c: &Context, account_id: &str) -> Result<Secret> {
    let key = c
        .clients
        .iam
        .create_service_account_key()
        .set_name(sa_name(c, account_id))
        .send()
        .await
        .ctx(format!("creating a key for {account_id}"))?;
    let text = String::from_utf8(key.private_key_data.to_vec())
        .map_err(|_| Error::internal(format!("the key of {account_id} is not UTF-8")))?;
    if serde_json::from_str::<serde_json::Value>(&text).is_err() {
        return Err(Error::internal(format!(
            "the key of {account_id} is not a JSON key file"
        )));
    }
    Ok(Secret::new(text))
}

/// Delete the account (its keys go with it) and its project bindings. Absent is fine;
/// an account that is not ours is left alone.
pub async fn delete_account(
    c: &Context,
    account_id: &str,
    installation: &str,
    roles: &[&str],
) -> Result<()> {
    if get_account(c, account_id, installation).await?.is_none() {
        return Ok(());
    }
    set_project_roles(c, &member(c, account_id), roles, false).await?;
    let r = c
        .clients
        .iam
        .delete_service_account()
        .set_name(sa_name(c, account_id))
        .send()
        .await;
    found(r, format!("deleting service account {account_id}")).map(|_| ())
}

/// Whether account `account_id` exists (and is the installation's) and holds every
/// role in `roles` on the project: the readiness of an identity.
pub async fn account_ready(
    c: &Context,
    account_id: &str,
    installation: &str,
    roles: &[&str],
) -> Result<bool> {
    if get_account(c, account_id, installation).await?.is_none() {
        return Ok(false);
    }
    if roles.is_empty() {
        return Ok(true);
    }
    let held = project_roles(c, &member(c, account_id)).await?;
    Ok(roles.iter().all(|r| held.contains(*r)))
}

/// Why an existing identity needs an `ensure`: `None` when account `account_id` does
/// not exist (or is not the installation's), otherwise one drift reason naming the
/// project roles in `roles` it does not hold (none when it holds them all).
pub async fn account_drift(
    c: &Context,
    account_id: &str,
    installation: &str,
    roles: &[&str],
) -> Result<Option<Vec<String>>> {
    if get_account(c, account_id, installation).await?.is_none() {
        return Ok(None);
    }
    if roles.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let held = project_roles(c, &member(c, account_id)).await?;
    let missing: Vec<&str> = roles
        .iter()
        .copied()
        .filter(|r| !held.contains(*r))
        .collect();
    Ok(Some(if missing.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "service account {} lacks {} on the project",
            email(c, account_id),
            missing.join(", ")
        )]
    }))
}

/// The roles `member` holds on the project (unconditional bindings only).
pub async fn project_roles(c: &Context, member: &str) -> Result<BTreeSet<String>> {
    let policy = read_policy(c).await?;
    Ok(policy
        .bindings
        .iter()
        .filter(|b| b.condition.is_none() && b.members.iter().any(|m| m == member))
        .map(|b| b.role.clone())
        .collect())
}

async fn read_policy(c: &Context) -> Result<Policy> {
    c.clients
        .projects
        .get_iam_policy()
        .set_resource(c.project_path())
        .set_options(GetPolicyOptions::new().set_requested_policy_version(3))
        .send()
        .await
        .ctx("reading the project IAM policy")
}

/// Whose IAM policy.
enum PolicyOf<'a> {
    /// The project's.
    Project,
    /// A service account's (its resource name).
    Account(&'a str),
}

impl PolicyOf<'_> {
    fn what(&self) -> String {
        match self {
            PolicyOf::Project => "the project IAM policy".into(),
            PolicyOf::Account(name) => format!("the IAM policy of {name}"),
        }
    }

    async fn read(&self, c: &Context) -> Result<Policy> {
        match self {
            PolicyOf::Project => read_policy(c).await,
            PolicyOf::Account(name) => c
                .clients
                .iam
                .get_iam_policy()
                .set_resource(*name)
                .send()
                .await
                .ctx(format!("reading {}", self.what())),
        }
    }

    async fn write(&self, c: &Context, policy: Policy) -> std::result::Result<Policy, GaxError> {
        match self {
            PolicyOf::Project => {
                c.clients
                    .projects
                    .set_iam_policy()
                    .set_resource(c.project_path())
                    .set_policy(policy)
                    .send()
                    .await
            }
            PolicyOf::Account(name) => {
                c.clients
                    .iam
                    .set_iam_policy()
                    .set_resource(*name)
                    .set_policy(policy)
                    .send()
                    .await
            }
        }
    }
}

/// Read a policy, edit it, write it back with the etag it was read with; a write
/// that lost a race with another writer (`ABORTED`/409) re-reads and retries, by the
/// configured policy on the configured clock. Makes no write when the edit changes
/// nothing.
async fn read_modify_write(
    c: &Context,
    of: PolicyOf<'_>,
    edit: impl Fn(&mut Policy) -> bool,
) -> Result<()> {
    let of = &of;
    let edit = &edit;
    // The outer error is a lost race (retried); the inner one anything else (returned
    // as is, even when its class is a conflict).
    let outcome: Result<Result<()>> = c
        .config
        .retry
        .run_when(
            c.config.clock.as_ref(),
            |e| e.kind() == ErrorKind::Conflict,
            || async move {
                let mut policy = match of.read(c).await {
                    Ok(p) => p,
                    Err(e) => return Ok(Err(e)),
                };
                if !edit(&mut policy) {
                    return Ok(Ok(()));
                }
                match of.write(c, policy).await {
                    Ok(_) => Ok(Ok(())),
                    Err(e) => {
                        let lost_race = kind_of(&e) == ErrorKind::Conflict;
                        let e = from_gax(e, format!("writing {}", of.what()));
                        if lost_race {
                            Err(e)
                        } else {
                            Ok(Err(e))
                        }
                    }
                }
            },
            |attempt, delay, _| {
                tracing::debug!(attempt, ?delay, what = %of.what(), "changed concurrently; re-reading");
            },
        )
        .await;
    outcome?
}

/// Grant (`grant`) or revoke `roles` for `member` on the project. Makes no write when
/// nothing changes; retries a write that lost a race with another writer.
pub async fn set_project_roles(
    c: &Context,
    member: &str,
    roles: &[&str],
    grant: bool,
) -> Result<()> {
    read_modify_write(c, PolicyOf::Project, |policy| {
        edit_policy(policy, member, roles, grant)
    })
    .await
}

/// Add or remove `member` from the bindings of `roles`; whether anything changed.
/// Bindings that become empty are dropped; conditional bindings are never touched.
pub fn edit_policy(policy: &mut Policy, member: &str, roles: &[&str], grant: bool) -> bool {
    let mut changed = false;
    for role in roles {
        let existing = policy
            .bindings
            .iter_mut()
            .find(|b| b.role == *role && b.condition.is_none());
        match (existing, grant) {
            (Some(b), true) => {
                if !b.members.iter().any(|m| m == member) {
                    b.members.push(member.to_string());
                    changed = true;
                }
            }
            (None, true) => {
                policy
                    .bindings
                    .push(Binding::new().set_role(*role).set_members([member]));
                changed = true;
            }
            (Some(b), false) => {
                let before = b.members.len();
                b.members.retain(|m| m != member);
                changed |= b.members.len() != before;
            }
            (None, false) => {}
        }
    }
    policy.bindings.retain(|b| !b.members.is_empty());
    changed
}

/// Grant `role` on the service account `account_id` itself to `members` (Workload
/// Identity: `roles/iam.workloadIdentityUser` for Kubernetes service accounts).
pub async fn set_account_binding(
    c: &Context,
    account_id: &str,
    role: &str,
    members: &[String],
) -> Result<()> {
    let resource = sa_name(c, account_id);
    read_modify_write(c, PolicyOf::Account(&resource), |policy| {
        let mut changed = false;
        for m in members {
            changed |= edit_policy(policy, m, &[role], true);
        }
        changed
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_policy_adds_removes_and_reports_changes() {
        let mut p = Policy::new().set_bindings([Binding::new()
            .set_role("roles/viewer")
            .set_members(["user:a@example.com"])]);
        assert!(edit_policy(
            &mut p,
            "serviceAccount:x",
            &["roles/viewer", "roles/dns.admin"],
            true
        ));
        assert!(!edit_policy(
            &mut p,
            "serviceAccount:x",
            &["roles/viewer", "roles/dns.admin"],
            true
        ));
        assert_eq!(p.bindings.len(), 2);
        assert!(edit_policy(
            &mut p,
            "serviceAccount:x",
            &["roles/dns.admin", "roles/viewer"],
            false
        ));
        assert_eq!(p.bindings.len(), 1, "the emptied binding is dropped");
        assert_eq!(
            p.bindings[0].members,
            vec!["user:a@example.com".to_string()]
        );
        assert!(!edit_policy(
            &mut p,
            "serviceAccount:x",
            &["roles/viewer"],
            false
        ));
    }
}
