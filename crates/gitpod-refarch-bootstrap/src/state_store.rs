//! State in a Kubernetes Secret, with the run lock in a Lease: the
//! [`StateStore`] of an installation managed from inside a cluster (the operator) or
//! by anyone with access to one namespace (`--state kubernetes://ns/name`).
//!
//! # Objects
//!
//! - Secret `<name>` of type `refarch.gitpod.io/state`, labelled
//!   `app.kubernetes.io/managed-by: gitpod-refarch`, with the state JSON under the
//!   key `state.json`. The state holds secrets in clear (database passwords, the
//!   installer's keys): it lives in a Secret so the cluster's encryption at rest and
//!   its RBAC on Secrets apply, and it is never logged. Its generation is the
//!   Secret's `metadata.resourceVersion`: a first save creates the Secret (a Secret
//!   already there is a lost race, [`ErrorKind::StateChanged`]); a later one
//!   replaces it naming the resourceVersion it read (the API server's 409 Conflict
//!   is [`ErrorKind::StateChanged`]).
//! - Lease `<name>-lock` (`coordination.k8s.io/v1`) while a run holds the lock:
//!   `spec.holderIdentity` is the owner, `spec.acquireTime` when it was taken, the
//!   annotations `refarch.gitpod.io/lock-id` and `refarch.gitpod.io/operation` the
//!   lock's id and operation. Taking the lock creates the Lease (one already there
//!   is [`ErrorKind::StateLocked`], naming its holder); releasing or breaking it
//!   checks the id and deletes the Lease with a precondition on the resourceVersion
//!   read, so a lock taken in between is never removed. The Lease has no duration:
//!   a lock is only taken over by breaking it on purpose.
//!
//! # RBAC
//!
//! The identity using the store needs, in its namespace only:
//!
//! ```yaml
//! apiVersion: rbac.authorization.k8s.io/v1
//! kind: Role
//! metadata: {name: gitpod-refarch-state, namespace: NS}
//! rules:
//!   - apiGroups: [""]
//!     resources: [secrets]
//!     verbs: [get, create, update]
//!   - apiGroups: [coordination.k8s.io]
//!     resources: [leases]
//!     verbs: [get, create, delete]
//! ```
//!
//! (`resourceNames: [NAME]` and `[NAME-lock]` may narrow `get`, `update` and
//! `delete`; `create` cannot be narrowed by name.) A refused call is
//! [`ErrorKind::Permission`] naming the verb and resource; a 401 is
//! [`ErrorKind::Credentials`]; an unreachable server or a 5xx is
//! [`ErrorKind::Transient`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use gitpod_refarch::state::{
    changed_error, locked_error, Generation, LockInfo, LockRequest, State, StateStore, Stored,
};
use gitpod_refarch::{Error, ErrorKind, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::Resource;

use crate::api::kube_error;

/// The type of the state Secret.
pub const STATE_SECRET_TYPE: &str = "refarch.gitpod.io/state";
/// The key of the state JSON in the Secret.
pub const STATE_KEY: &str = "state.json";
/// The label on the Secret and the Lease.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "gitpod-refarch");
/// The Lease annotation with the lock's id.
pub const LOCK_ID_ANNOTATION: &str = "refarch.gitpod.io/lock-id";
/// The Lease annotation with the lock's operation.
pub const OPERATION_ANNOTATION: &str = "refarch.gitpod.io/operation";
/// The suffix of the Lease's name.
const LOCK_SUFFIX: &str = "-lock";

/// The state of one installation in a Secret of one namespace, its lock in a Lease
/// next to it (see the [module documentation](self) for the objects and the RBAC
/// they need).
#[derive(Clone)]
pub struct KubeStateStore {
    client: kube::Client,
    namespace: String,
    name: String,
}

impl std::fmt::Debug for KubeStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStateStore")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A DNS-1123 label: at most 63 lowercase alphanumerics or `-`, starting and ending
/// alphanumeric.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: at most 253 characters, labels joined by `.`.
fn is_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label)
}

impl KubeStateStore {
    /// The state in Secret `name` of `namespace` (Lease `<name>-lock`), through
    /// `client`. The names are not checked here: [`from_url`](Self::from_url) checks
    /// them, and the API server refuses invalid ones.
    pub fn new(
        client: kube::Client,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        KubeStateStore {
            client,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The store of `kubernetes://NAMESPACE/NAME`. A namespace that is not a DNS-1123
    /// label, or a name that is not a DNS-1123 subdomain short enough for its Lease
    /// `<name>-lock`, is [`ErrorKind::InvalidInput`].
    pub fn from_url(url: &str, client: kube::Client) -> Result<Self> {
        let usage = "expected kubernetes://NAMESPACE/NAME (the namespace and the name of the \
                     state Secret)";
        let rest = url.strip_prefix("kubernetes://").ok_or_else(|| {
            Error::invalid_input(format!("`{url}` is not a Kubernetes state URL: {usage}"))
        })?;
        let (namespace, name) = rest
            .split_once('/')
            .ok_or_else(|| Error::invalid_input(format!("`{url}` names no Secret: {usage}")))?;
        if !is_label(namespace) {
            return Err(Error::invalid_input(format!(
                "`{namespace}` in `{url}` is not a valid namespace (lowercase letters, digits \
                 and `-`, at most 63, starting and ending with a letter or digit): {usage}"
            )));
        }
        if !is_subdomain(name) || name.len() + LOCK_SUFFIX.len() > 253 {
            return Err(Error::invalid_input(format!(
                "`{name}` in `{url}` is not a valid Secret name (lowercase letters, digits, `-` \
                 and `.`, at most 248 so that its Lease `{name}{LOCK_SUFFIX}` is valid too): \
                 {usage}"
            )));
        }
        Ok(Self::new(client, namespace, name))
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Secret's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Lease's name (`<name>-lock`).
    pub fn lock_name(&self) -> String {
        format!("{}{LOCK_SUFFIX}", self.name)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())])
    }

    /// A kube-rs error of `verb` on `resource` (`secrets`, `leases`) `object`, with
    /// what to grant when it is a 403.
    fn error(&self, e: kube::Error, verb: &str, resource: &str, object: &str) -> Error {
        let what = format!(
            "{verb} {resource} {object} in namespace {} (state {})",
            self.namespace,
            self.location()
        );
        let err = kube_error(e, &what);
        if err.kind() == ErrorKind::Permission {
            let message = format!(
                "{}. Grant the store's identity `{verb}` on `{resource}` in namespace {} (it \
                 needs `secrets` get/create/update and `leases` (coordination.k8s.io) \
                 get/create/delete there)",
                err.message(),
                self.namespace
            );
            return Error::new(ErrorKind::Permission, message);
        }
        err
    }

    /// What a Lease says about the lock it stands for. A Lease without the id
    /// annotation (not made by this store) is named by its uid.
    fn lock_of(lease: &Lease) -> Result<LockInfo> {
        let annotation = |k: &str| {
            lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(k))
                .cloned()
        };
        let id = annotation(LOCK_ID_ANNOTATION)
            .or_else(|| lease.metadata.uid.clone())
            .unwrap_or_default();
        let spec = lease.spec.as_ref();
        let owner = spec
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_else(|| "an unknown holder".into());
        let created_unix = spec
            .and_then(|s| s.acquire_time.as_ref())
            .map(|t| u64::try_from(t.0.timestamp()).unwrap_or(0))
            .unwrap_or(0);
        serde_json::from_value(serde_json::json!({
            "id": id,
            "owner": owner,
            "operation": annotation(OPERATION_ANNOTATION).unwrap_or_else(|| "unknown".into()),
            "createdUnix": created_unix,
        }))
        .map_err(|e| Error::new(ErrorKind::Internal, "lock info does not build").with_source(e))
    }

    async fn read_lease(&self) -> Result<Option<Lease>> {
        let name = self.lock_name();
        self.leases()
            .get_opt(&name)
            .await
            .map_err(|e| self.error(e, "get", "leases", &name))
    }

    /// The error when the id named does not match the lock held (none: NotFound,
    /// another: Conflict).
    fn mismatch(&self, held: Option<&LockInfo>, id: &str) -> Error {
        let location = self.location();
        match held {
            None => Error::new(
                ErrorKind::NotFound,
                format!("the state at {location} is not locked (no lock {id} to break)"),
            ),
            Some(h) => Error::new(
                ErrorKind::Conflict,
                format!(
                    "the state at {location} is locked with another id: {h}; nothing was \
                     broken (name that id to break it)"
                ),
            ),
        }
    }

    /// Delete the Lease if it is the lock `id`, with a precondition on what was read.
    async fn remove_lock(&self, id: &str) -> Result<LockInfo> {
        let name = self.lock_name();
        let lease = self.read_lease().await?;
        let held = lease.as_ref().map(Self::lock_of).transpose()?;
        let (lease, held) = match (lease, held) {
            (Some(l), Some(h)) if h.id == id => (l, h),
            (_, held) => return Err(self.mismatch(held.as_ref(), id)),
        };
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: lease.metadata.resource_version.clone(),
                uid: lease.metadata.uid.clone(),
            }),
            ..DeleteParams::default()
        };
        match self.leases().delete(&name, &dp).await {
            Ok(_) => Ok(held),
            // Gone or replaced since it was read: what is there now is another lock.
            Err(kube::Error::Api(r)) if r.code == 404 || r.code == 409 => {
                let now = self.read_lease().await?;
                let now = now.as_ref().map(Self::lock_of).transpose()?;
                Err(self.mismatch(now.as_ref(), id))
            }
            Err(e) => Err(self.error(e, "delete", "leases", &name)),
        }
    }
}

/// What a write of the state Secret answers that the store reads.
#[derive(serde::Deserialize)]
struct Written {
    metadata: WrittenMeta,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WrittenMeta {
    resource_version: Option<String>,
}

#[async_trait]
impl StateStore for KubeStateStore {
    fn location(&self) -> String {
        format!("kubernetes://{}/{}", self.namespace, self.name)
    }

    async fn load(&self) -> Result<Option<Stored>> {
        let secret = self
            .secrets()
            .get_opt(&self.name)
            .await
            .map_err(|e| self.error(e, "get", "secrets", &self.name))?;
        let Some(secret) = secret else {
            return Ok(None);
        };
        let not_state = |why: &str| {
            Error::new(
                ErrorKind::State,
                format!(
                    "the Secret {}/{} is not a gitpod-refarch state ({why}); name another \
                     Secret or remove this one",
                    self.namespace, self.name
                ),
            )
        };
        let type_ = secret.type_.as_deref().unwrap_or("Opaque");
        if type_ != STATE_SECRET_TYPE {
            return Err(not_state(&format!(
                "its type is {type_}, not {STATE_SECRET_TYPE}"
            )));
        }
        let data = secret
            .data
            .as_ref()
            .and_then(|d| d.get(STATE_KEY))
            .ok_or_else(|| not_state(&format!("it has no key {STATE_KEY}")))?;
        let text = std::str::from_utf8(&data.0)
            .map_err(|_| not_state(&format!("its {STATE_KEY} is not UTF-8")))?;
        let state = State::from_json(text)?;
        let generation = secret
            .metadata
            .resource_version
            .ok_or_else(|| not_state("the API server returned no resourceVersion"))?;
        Ok(Some(Stored::new(state, Generation::new(generation))))
    }

    async fn save(&self, state: &State, expected: Option<&Generation>) -> Result<Generation> {
        let json = state.to_json_exposed()?;
        // The body: the state in base64 (4/3 of its size) and a little metadata. Sized
        // up front, as it may wait for a free request slot with a thousand others.
        let mut body = Vec::with_capacity(json.len().div_ceil(3) * 4 + 1024);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(Self::labels()),
                resource_version: expected.map(|g| g.as_str().to_string()),
                ..ObjectMeta::default()
            },
            type_: Some(STATE_SECRET_TYPE.into()),
            data: Some(BTreeMap::from([(
                STATE_KEY.to_string(),
                ByteString(json.into_bytes()),
            )])),
            ..Secret::default()
        };
        let pp = PostParams {
            field_manager: Some(crate::api::FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        serde_json::to_writer(&mut body, &secret).map_err(|e| {
            Error::new(ErrorKind::Internal, "the state Secret does not serialize").with_source(e)
        })?;
        drop(secret);
        // Only the new resourceVersion is read from the answer (it echoes the whole
        // Secret, the state included).
        let request = kube::core::Request::new(Secret::url_path(&(), Some(&self.namespace)));
        let written: Written = match expected {
            None => {
                let req = request.create(&pp, body).map_err(|e| {
                    Error::new(ErrorKind::Internal, "cannot build the request").with_source(e)
                })?;
                self.client.request(req).await.map_err(|e| match e {
                    kube::Error::Api(r) if r.code == 409 => changed_error(&self.location()),
                    e => self.error(e, "create", "secrets", &self.name),
                })?
            }
            Some(_) => {
                let req = request.replace(&self.name, &pp, body).map_err(|e| {
                    Error::new(ErrorKind::Internal, "cannot build the request").with_source(e)
                })?;
                self.client.request(req).await.map_err(|e| match e {
                    // Replaced by another writer, or removed since it was read.
                    kube::Error::Api(r) if r.code == 409 || r.code == 404 => {
                        changed_error(&self.location())
                    }
                    e => self.error(e, "update", "secrets", &self.name),
                })?
            }
        };
        written
            .metadata
            .resource_version
            .map(Generation::new)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    format!(
                        "the API server returned no resourceVersion for the Secret {}/{}",
                        self.namespace, self.name
                    ),
                )
            })
    }

    async fn lock(&self, request: &LockRequest) -> Result<LockInfo> {
        let name = self.lock_name();
        let info = LockInfo::for_request(request);
        let acquired = k8s_openapi::chrono::DateTime::from_timestamp(
            i64::try_from(info.created_unix).unwrap_or(0),
            0,
        )
        .map(MicroTime);
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(Self::labels()),
                annotations: Some(BTreeMap::from([
                    (LOCK_ID_ANNOTATION.to_string(), info.id.clone()),
                    (OPERATION_ANNOTATION.to_string(), info.operation.clone()),
                ])),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(info.owner.clone()),
                acquire_time: acquired,
                ..LeaseSpec::default()
            }),
        };
        let pp = PostParams {
            field_manager: Some(crate::api::FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        // A Lease deleted between our create and our read is a lock released in
        // between: try again, a few times.
        for _ in 0..3 {
            match self.leases().create(&pp, &lease).await {
                Ok(_) => return Ok(info),
                Err(kube::Error::Api(r)) if r.code == 409 => {
                    if let Some(held) = self.read_lease().await? {
                        return Err(locked_error(&self.location(), &Self::lock_of(&held)?));
                    }
                }
                Err(e) => return Err(self.error(e, "create", "leases", &name)),
            }
        }
        Err(Error::new(
            ErrorKind::Transient,
            format!(
                "the lock of {} was taken and released repeatedly while taking it; try again",
                self.location()
            ),
        ))
    }

    async fn unlock(&self, lock: &LockInfo) -> Result<()> {
        self.remove_lock(&lock.id).await.map(|_| ())
    }

    async fn current_lock(&self) -> Result<Option<LockInfo>> {
        self.read_lease()
            .await?
            .as_ref()
            .map(Self::lock_of)
            .transpose()
    }

    async fn break_lock(&self, id: &str) -> Result<LockInfo> {
        self.remove_lock(id).await
    }
}
