//! A **fake** of the Kubernetes API server: a stateful, in-memory HTTPS server that
//! answers the REST paths and JSON of the API server for the resources gitpod-refarch
//! bootstraps a cluster with, closely enough for `kube` (kube-rs) as an ordinary
//! client. It is **not Kubernetes**: it is for tests and local runs.
//!
//! ```no_run
//! use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
//! use std::time::Duration;
//!
//! # async fn demo() -> std::io::Result<()> {
//! let fake = FakeKube::start(
//!     FakeConfig::default().with_namespace_delete_delay(Duration::from_millis(50)),
//! )
//! .await?;
//! // Point a client at its https URL, trusting its CA (a kubeconfig's `server` and
//! // `certificate-authority-data`), with no authentication:
//! let (url, ca_pem) = (fake.url(), fake.ca_pem());
//! assert!(url.starts_with("https://127.0.0.1:"));
//! # let _ = ca_pem;
//! // ... drive the SDK ...
//! assert!(fake.object("namespaces", None, "default").is_some());
//! assert_eq!(fake.cloud_load_balancers(), 0);
//! println!("{} mutating calls", fake.counts().mutating);
//! fake.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # What it serves
//!
//! - HTTPS only (TLS 1.2 and 1.3, HTTP/1.1), like a real API server: at start the fake
//!   generates a CA ([`FakeKube::ca_pem`], unique per fake) and a server certificate
//!   it signs for `127.0.0.1`, `::1` and `localhost`. [`FakeKube::url`] is
//!   `https://127.0.0.1:PORT` (an EKS-shaped endpoint), [`FakeKube::address`] the bare
//!   `127.0.0.1:PORT` (GKE's shape). A client that does not trust the CA fails its
//!   handshake; plain HTTP gets no HTTP answer. The `fake-kube` binary writes the CA
//!   to `--ca-file`.
//! - Discovery: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{group}` and
//!   `/apis/{group}/{version}` (no aggregated discovery: clients fall back to these;
//!   kube-rs's `Discovery::run()` works), `/healthz`, `/livez`, `/readyz`.
//! - OpenAPI: `/openapi/v2` as JSON, or as gnostic's protobuf `openapi.v2.Document`
//!   when asked for it (`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`,
//!   what kubectl validates objects with; answered as the valid
//!   `...spec.v2.v1.0+protobuf`), and `/openapi/v3` (the discovery document, with a
//!   `serverRelativeURL` per group version) with `/openapi/v3/api/v1` and
//!   `/openapi/v3/apis/{group}/{version}`. The built-in kinds' schemas are
//!   k8s-openapi's (generated from Kubernetes' own OpenAPI document), each kind and
//!   its List with `x-kubernetes-group-version-kind`; an Established CRD's served
//!   versions are published from their `openAPIV3Schema` with `apiVersion`, `kind`
//!   and `metadata` (ObjectMeta) added, and converted for v2 as the API server does
//!   (`nullable`, `*Of`/`not` and the insides of unknown-field-preserving values
//!   dropped; a root that preserves unknown fields is a bare `object`). So kubectl's
//!   default client-side validation refuses an unknown field, in a built-in kind or
//!   in a custom resource with a schema, as against a real server. The paths list
//!   each kind's operations with the query parameters the fake honours (`dryRun`,
//!   which `kubectl diff` looks for, `fieldManager`, `force`).
//! - Built-in resources: core `v1` namespaces, nodes, secrets, services,
//!   serviceaccounts, configmaps and events; `apps/v1` deployments; `rbac.authorization.k8s.io/v1` clusterroles,
//!   clusterrolebindings, roles and rolebindings; `apiextensions.k8s.io/v1`
//!   customresourcedefinitions; `admissionregistration.k8s.io/v1` validating and
//!   mutating webhook configurations; `coordination.k8s.io/v1` leases;
//!   `events.k8s.io/v1` events. The namespaces `default`, `kube-system`,
//!   `kube-public` and `kube-node-lease` exist at start.
//! - Custom resources: the served versions of every CRD once it is `Established`
//!   (before that its paths are 404 and its group is not in discovery). Objects are
//!   stored as sent (no schema validation, no conversion: an object read at another
//!   served version only has its `apiVersion` rewritten).
//! - Verbs: get, list, create (POST, 201; 409 `AlreadyExists`), update (PUT; 409
//!   `Conflict` on a stale `metadata.resourceVersion`), patch with
//!   `application/apply-patch+yaml` (server-side apply with field ownership, below:
//!   `fieldManager` required, else 422; creates when absent; `force`),
//!   `application/merge-patch+json`,
//!   `application/strategic-merge-patch+json` (merge semantics) and
//!   `application/json-patch+json`, delete (a `Success` Status, or the object while
//!   finalizers hold it), deletecollection, the `status` subresource (where the real
//!   type has one), `dryRun=All`, `labelSelector` (equality and set based) and
//!   `fieldSelector` (`=`/`==`/`!=` on the fields the API server allows:
//!   `metadata.name` and `metadata.namespace` everywhere, Secrets' `type`,
//!   Namespaces' `status.phase`, Services' `spec.clusterIP` and `spec.type`, a CRD's
//!   `selectableFields`; any other field is 400 `field label not supported`).
//! - Watches (`?watch=true` or `?watch=1` on a collection, namespaced or across
//!   namespaces) for every kind it serves, custom resources included: newline-delimited
//!   JSON `{"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": ...}`,
//!   streamed (`application/json`, chunked). Without `resourceVersion` (or with `"0"`)
//!   a watch starts with an `ADDED` event per current object; from a version it replays
//!   the changes after it from a bounded history per resource type
//!   ([`FakeConfig::watch_history`]), and a
//!   version older than the history gets an `ERROR` event with a 410 `Expired` Status
//!   (`too old resource version`) and the end of the stream, as the API server's watch
//!   cache answers. `labelSelector`/`fieldSelector` as for a list (an object that
//!   starts or stops matching is `ADDED` or `DELETED`); `allowWatchBookmarks=true`
//!   gets a `BOOKMARK` (only `apiVersion`, `kind`, `metadata.resourceVersion`) every
//!   [`FakeConfig::watch_bookmark_interval`]; `timeoutSeconds` ends the stream;
//!   `sendInitialEvents=true` with `resourceVersionMatch=NotOlderThan` (streaming
//!   lists) sends the current objects then a bookmark annotated
//!   `k8s.io/initial-events-end: "true"`. A deletion is `DELETED` with the object's
//!   last state at the deletion's resourceVersion. Every change is an event, the
//!   simulated controllers' (status writes, namespace cleanup, cert-manager) included,
//!   and an open watch runs the controllers whose time has come, so a watcher alone
//!   sees a CRD become Established. A watch ends when the CRD of its type is deleted,
//!   when the fake is frozen and when it shuts down. Watches count as reads
//!   ([`CallKind::Read`], verb `watch`); an injected fault answers the watch request
//!   itself, never a stream already open.
//! - Lists carry the collection's `metadata.resourceVersion` (list, then watch from
//!   it). `resourceVersion` with `resourceVersionMatch`: `NotOlderThan` (the default)
//!   answers the current state, `Exact` the state at that version (rebuilt from the
//!   history: 410 `Expired` when it no longer reaches it); a version newer than the
//!   current one is 504 `Timeout` (`Too large resource version`). `limit` and
//!   `continue` page in key order (namespace, name), every page of the snapshot of
//!   the first one, with `remainingItemCount` when there is no selector.
//! - Request bodies: JSON (also without a `Content-Type`) and YAML
//!   (`application/yaml`) for create and update, the four patch types above for a
//!   patch; any other body (`application/vnd.kubernetes.protobuf`, which kubectl sends
//!   for built-in kinds, included) is 415 `UnsupportedMediaType`, as a server answers
//!   for a body it cannot decode, so that clients fall back to JSON.
//! - Server-set metadata: `uid`, `resourceVersion` (one increasing counter; a write
//!   that changes nothing keeps it), `creationTimestamp`, `generation` (only on the
//!   kinds that have one in Kubernetes: Deployments, CRDs, webhook configurations and
//!   custom resources, not Namespaces, Services, Secrets, ConfigMaps,
//!   ServiceAccounts or RBAC objects; bumped when anything but metadata and status
//!   changes, and for a custom resource without a status subresource when anything
//!   but metadata changes, as its strategy does; status written through `/status`
//!   never bumps it, and status sent to the main resource of a type with a status
//!   subresource is ignored), `managedFields` (below), `deletionTimestamp`.
//! - Field ownership (`metadata.managedFields`), after the API server's
//!   structured-merge-diff: entries with `manager`, `operation` (`Apply` or
//!   `Update`), `apiVersion`, `time`, `fieldsType: FieldsV1`, `fieldsV1` (`f:` fields,
//!   `k:{..}` items of keyed lists, `v:` items of set lists, `.` for a node owned
//!   itself) and `subresource: status` for status writes, in the server's order.
//!   Keyed lists: containers, init containers, env and volumes by `name`, container
//!   ports by `containerPort`+`protocol`, volume mounts by `mountPath`, Service ports
//!   by `port`+`protocol`, `status.conditions` by `type`, CRD versions and webhooks by
//!   `name`, `ownerReferences` by `uid`; `metadata.finalizers` is a set; a custom
//!   resource's lists follow its CRD schema's `x-kubernetes-list-type` and
//!   `x-kubernetes-list-map-keys`; every other list is atomic. An apply owns the
//!   fields of its configuration, merges keyed lists item by item, removes the
//!   fields it applied last time and no longer applies unless another manager owns
//!   them (shared values are co-owned), and changing a field another manager owns is
//!   409 `Conflict` (`Apply failed with 1 conflict: conflict with "m" using v1:
//!   .data.x`, `details.causes` of reason `FieldManagerConflict`) unless `force=true`,
//!   which takes the field over. Creates, updates and patches are `Update`
//!   operations that take over the fields they change (manager: `fieldManager`, else
//!   the `User-Agent` before its first `/`, as the API server derives it:
//!   `kubectl-client-side-apply`, `kubectl-label` and the like come from kubectl
//!   itself). `managedFields` in an apply is 400 (`metadata.managedFields must be
//!   nil`); in an update or patch an empty list is ignored, `[{}]` clears them, and
//!   any other list replaces them (kubectl's migration from client-side apply).
//! - Deletion and finalizers, on every kind: DELETE of an object with
//!   `metadata.finalizers` sets `deletionTimestamp` and `deletionGracePeriodSeconds:
//!   0` (and bumps a `generation` it has), answers the object and keeps it
//!   (`MODIFIED`); the update or patch that empties its finalizers removes it
//!   (`DELETED`). Adding a finalizer to an object being deleted is 422 (`Forbidden:
//!   no new finalizers can be added if the object is being deleted, found new
//!   finalizers []string{"x"}`), and finalizers must be qualified names. A JSON
//!   patch `test` of `null` matches a missing key, as the API server's json-patch
//!   does (kube-runtime's `finalizer()` helper relies on it).
//! - Events: `events.k8s.io/v1` events are validated as the API server does for that
//!   API (`eventTime`, `type` `Normal`/`Warning`, `reportingController`,
//!   `reportingInstance`, `action` and `reason` required and bounded, no
//!   `deprecated*` fields, `series.count` at least 2, and `regarding`, `reason`,
//!   `note`, `type`, `action`, the reporter and `eventTime` immutable), core `v1`
//!   events with the legacy rules (the involved object's namespace is the event's),
//!   so kube-runtime's `Recorder` (create, then a merge patch of the `series`) works.
//! - Errors are `kind: Status` objects with `reason` and `code`: `NotFound`,
//!   `AlreadyExists`, `Conflict`, `Invalid` (with `details.causes`), `BadRequest`,
//!   `Forbidden`, `MethodNotAllowed`, `UnsupportedMediaType`, `InternalError`,
//!   `TooManyRequests`, `ServiceUnavailable`, `Unauthorized`.
//! - Authentication, off by default ([`Auth::Anyone`]: any token or none). With
//!   [`Auth::Eks`] ([`FakeConfig::with_auth`]) it accepts EKS tokens for one cluster:
//!   `k8s-aws-v1.` + unpadded base64url of a presigned STS `GetCallerIdentity` URL,
//!   checked as EKS checks it (STS host or the configured emulator endpoint, path
//!   `/`, only SigV4's query parameters, each once, `x-k8s-aws-id` signed,
//!   `X-Amz-Expires` in 0..=900, `X-Amz-Date` less than 15 minutes old, at most 4 KiB)
//!   and, given the credentials STS knows ([`EksAuth::with_credentials`]), its SigV4
//!   signature computed with the cluster's name as `x-k8s-aws-id`, so a token for
//!   another cluster is refused. Anything else with a bearer token is 401
//!   `Unauthorized` (message `Unauthorized`, as the API server says no more); without
//!   a token the anonymous user may `GET` `/version`, `/healthz`, `/livez`, `/readyz`
//!   and gets 403 `Forbidden` elsewhere. Refused requests are not recorded in
//!   [`FakeKube::calls`]; the `/fake-kube/` admin endpoint needs no token.
//!
//! # Simulated behaviour (all delays in [`FakeConfig`])
//!
//! - **Namespaces**: a namespaced create in a missing namespace is 404 `NotFound`, in
//!   a terminating one 403 `Forbidden`. DELETE sets `deletionTimestamp` and
//!   `status.phase: Terminating`; after `namespace_delete_delay` every object in it is
//!   deleted (objects with finalizers, such as LoadBalancer Services, go through their
//!   own deletion) and the namespace disappears once it is empty. `default`,
//!   `kube-system` and `kube-public` cannot be deleted (403).
//! - **CRDs**: `NamesAccepted=True` and `Established=True` (with `acceptedNames` and
//!   `storedVersions`) after `crd_established_delay`. Deleting a CRD deletes its
//!   objects at once. Names, scope, one storage version and a schema per version are
//!   validated (422).
//! - **Deployments**: `status` (`observedGeneration`, `replicas`, `readyReplicas`,
//!   `availableReplicas`, `updatedReplicas`, `Available`/`Progressing` conditions) is
//!   filled `deployment_ready_delay` after each change of `generation`. The selector
//!   must match the template labels and a container is required (422).
//! - **cert-manager webhook**: creating or updating any `cert-manager.io` or
//!   `acme.cert-manager.io` object is refused with the 500 `InternalError` the API
//!   server answers when the webhook is down (`Internal error occurred: failed calling
//!   webhook "webhook.cert-manager.io": ... connection refused`) until the Deployment
//!   [`FakeConfig::webhook_deployment`] in [`FakeConfig::webhook_namespace`]
//!   (`cert-manager/cert-manager-webhook`) is ready, which happens
//!   `webhook_ready_delay` after it was created (instead of `deployment_ready_delay`).
//! - **cert-manager**: Issuers and ClusterIssuers get `Ready=True` with
//!   `observedGeneration` set, `issuer_ready_delay` (default 0: at once) after their
//!   creation and after every change of `generation`; until then a changed issuer
//!   keeps the Ready condition of its previous generation, as cert-manager's does
//!   before it reconciles. A Certificate is reissued on every change of `generation`
//!   (its conditions carry `observedGeneration`). A
//!   Certificate whose issuer exists becomes `Ready=True` after
//!   `certificate_ready_delay`, with a `kubernetes.io/tls` Secret named by
//!   `spec.secretName` (`tls.crt`, `tls.key`: a self-signed certificate for its
//!   `dnsNames`, valid for the 90 days its status reports); without its issuer it stays
//!   `Ready=False`. With [`FakeConfig::acme_challenges_fail`] and an ACME issuer, it
//!   stays `Ready=False` and a `challenges.acme.cert-manager.io` object in its
//!   namespace carries `status.presented: false` and the configured `status.reason`
//!   (no Orders or CertificateRequests are made).
//! - **Services**: a cluster IP (`10.96.x.y`) is allocated, node ports for NodePort and
//!   LoadBalancer Services. A `type: LoadBalancer` Service gets the finalizer
//!   `service.kubernetes.io/load-balancer-cleanup` and a simulated cloud load balancer
//!   at once ([`FakeKube::cloud_load_balancers`]), and
//!   `status.loadBalancer.ingress: [{ip: 203.0.113.N}]` after `lb_provision_delay`.
//!   On DELETE it lingers with a `deletionTimestamp` for `lb_delete_delay`, then its
//!   load balancer is released and it vanishes.
//! - **Garbage collection by owner references** (background, `Orphan` and
//!   `Foreground` propagation, as kube-controller-manager's collector): an object
//!   whose `ownerReferences` resolve to no existing owner is deleted, through its
//!   finalizers (a Namespace through its termination), when its last owner goes (a
//!   custom resource removed with its CRD included) or when it is written so. An
//!   owner exists when the object of that API group, version, kind and name has that
//!   `uid` and is cluster-scoped or in the dependent's namespace; a reference to a
//!   gone owner is dropped while another exists. An object with a reference the
//!   collector cannot resolve (a kind or version not served, a namespaced owner of a
//!   cluster-scoped object) is left as it is. The `DeleteOptions` of a DELETE or
//!   DELETE of a collection (body, or the query without one) are validated first
//!   (422 on `DeleteOptions.meta.k8s.io` for both forms at once or another policy):
//!   `propagationPolicy: Orphan` (or `orphanDependents: true`) drops the references
//!   to the object, `Foreground` marks it (`deletionTimestamp` and the finalizer
//!   `foregroundDeletion` in one write, answered as marked), deletes its dependents
//!   (one another owner holds only loses its reference) and removes it once none is
//!   left; a later explicit `Background` lets it go. `ownerReferences` need
//!   `apiVersion`, `kind`, `name` and `uid`, and at most one `controller: true` (422).
//! - **Nodes of node pools**: [`FakeKube::set_node_pool`] (or, for a cloud fake in
//!   another process, the fake-only admin endpoint `PUT /fake-kube/nodepools/{pool}`
//!   with a [`NodePool`] as camelCase JSON; `DELETE` removes the pool, `GET
//!   /fake-kube/nodepools` lists them; [`NodePoolPublisher`] is the client the GCP and
//!   Azure fakes use, sending only what changed) publishes a pool's nodes as core `v1` Node
//!   objects, as a cloud's nodes look: named from a caller-given prefix (`gke-CLUSTER-
//!   POOL-HASH-` plus four random characters, or `aks-POOL-NNNNNNNN-vmss` plus a
//!   six-digit base-36 instance index), labelled `kubernetes.io/hostname`, `os`,
//!   `arch`, `node.kubernetes.io/instance-type`, `topology.kubernetes.io/region` and
//!   `zone` (and the `beta.`/`failure-domain.` forms) plus the pool's labels,
//!   `spec.taints` from the pool, `Ready=True` (and the pressure conditions False),
//!   `nodeInfo` (kubelet version, OS image), `capacity`/`allocatable` derived from the
//!   machine type, an InternalIP and Hostname address, and spread over the pool's
//!   zones. Resizing adds nodes or removes the newest; a changed pool relabels and
//!   retaints its nodes (labels and taints others added stay). Nodes are ordinary
//!   objects: list, label selectors, watch, patch, the `status` subresource; a node
//!   deleted through the API is gone (the pool makes a new one only when next set).
//!   The admin endpoint is outside `/api` and `/apis`, has no counterpart in a real
//!   API server, takes no credentials and is not recorded in [`FakeKube::calls`].
//!   fake-gcp and fake-azure call it for the GKE node pools and AKS agent pools they
//!   hold when they are given a kube endpoint.
//!
//! # How it differs from Kubernetes (known gaps)
//!
//! - TLS: the CA and keys are new at every start (a restarted fake has another CA:
//!   clients must be given the new one), certificates name only the loopback
//!   addresses and `localhost` (not `kubernetes.default.svc`), HTTP/2 is not offered
//!   (ALPN `http/1.1` only), and client certificates are not asked for.
//! - Watches are served from one history of recent changes for all kinds (the API
//!   server keeps one per resource): busy kinds push quiet ones' old versions out
//!   sooner. No `/watch/` path prefix (deprecated), no watch of a single object's
//!   path (use `fieldSelector=metadata.name=`), no `sendInitialEvents=false`
//!   subtleties beyond starting at the given version, no random timeout when
//!   `timeoutSeconds` is absent (the stream lasts until shutdown), and a watch from
//!   a future version waits for it rather than failing after a few seconds. The
//!   `DELETED` event of an object released by the removal of its last finalizer
//!   carries the object as stored before that update (finalizer still listed).
//! - Authentication only of EKS tokens, and never by calling STS: without
//!   [`EksAuth::with_credentials`] a token's signature is checked for its shape only
//!   (a token signed for another cluster passes), and the token's identity is not
//!   mapped to a user (no access entries or `aws-auth`). No client certificates, no
//!   other token kinds (GKE, AKS), no authorization (RBAC objects are stored, never
//!   enforced) and no admission beyond the cert-manager webhook simulation; webhook
//!   configurations are stored and never called.
//! - Field ownership knows the schema only through the table of keyed lists above
//!   (and CRD schemas): maps and structs are not told apart, so an object created
//!   by an `Update` gets `.` on new objects a Go client would have sent as empty
//!   structs only for `metadata`, `spec`, `status` and a Deployment's template and
//!   strategy; defaults the fake sets are owned by no one; applies are not converted
//!   between versions; a list item missing its key makes the list atomic (the API
//!   server refuses it). Strategic merge patch is a JSON merge patch (lists replaced
//!   whole, `$patch` directives dropped).
//! - `Table` output (server-side printing, `table.rs`) for custom resources only,
//!   with simple column paths; built-in kinds and watches answer JSON (kubectl then
//!   prints them itself). No protobuf (a protobuf body is 415; answers are JSON
//!   whatever the `Accept`). kubectl 1.20 (Debian's) sends JSON and works; newer
//!   kubectl (1.32 seen) sends protobuf for `create secret`, `create namespace` and
//!   `create clusterrolebinding` and does not fall back to JSON on a 415, so those
//!   commands fail against the fake. `resourceVersion` on a get is ignored (the
//!   current object).
//! - OpenAPI: the documents carry no `fieldValidation` parameter (the fake does not
//!   validate fields: `fieldValidation=Strict` is ignored and unknown fields are
//!   stored), no Kubernetes extensions beyond the GVK and action ones (no
//!   `x-kubernetes-patch-strategy`/`-merge-key`: kubectl's client-side apply then
//!   replaces lists it would merge), no `ETag`/`304`, and the OpenAPI requests are
//!   exempt from injected faults. Only the kinds the fake serves are described (no
//!   `Status`, `DeleteOptions` or other kinds of the real document); v3 documents
//!   have no group (`apis/{group}`) entries.
//! - The cert-manager stand-in registers no ACME account and never fails an issuer:
//!   every issuer becomes `Ready=True` (a bad ACME server or solver is not noticed).
//! - Validation is shallow: names, type metadata, the Secret keys its `type` requires,
//!   immutable Secret `type`, Deployment `selector` and binding `roleRef`, and the
//!   checks named above; no
//!   OpenAPI schema validation of custom resources and no defaulting beyond the
//!   fields named above.
//! - Nodes have no kubelet behind them: conditions never change (no heartbeats, no
//!   `NotReady`, no node lifecycle controller, no leases in `kube-node-lease`), no
//!   `nodes/proxy`, no images or volumes; capacity is a rough function of the
//!   machine type; all the clusters a cloud fake holds publish their nodes into the
//!   one Kubernetes fake; a node deleted through the API does not re-register.
//! - Events of the two APIs are stored apart: an event created through
//!   `events.k8s.io/v1` is not listed through core `v1` (the API server keeps one
//!   store and converts), so `kubectl describe` shows none of a `Recorder`'s events.
//!   Leases are plain objects: nothing expires or renews them.
//! - Deleting a CRD removes its custom resources at once, finalizers or not (the API
//!   server deletes them one by one and waits for their finalizers).
//! - The garbage collector acts at once, in the request that removed the owner or
//!   wrote the dependent (the API server's collector takes a moment, and emits no
//!   `OwnerRefInvalidNamespace` Event). `blockOwnerDeletion` is not checked (every
//!   dependent holds a foreground delete back), and a foreground delete's dependents
//!   are deleted in the background (their own dependents may outlive the owner).
//! - No other controllers: no Pods, ReplicaSets, Endpoints or service account
//!   tokens. Timed effects happen when the fake is next asked something (a request or
//!   a library call), not in the background.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

mod api;
mod auth;
mod catalog;
mod controllers;
mod gc;
mod managed;
mod nodes;
mod openapi;
mod patch;
mod publisher;
mod status;
mod store;
mod table;
mod tls;
mod watches;

pub use auth::{Auth, EksAuth};
pub use nodes::{NameSuffix, NodePool, NodePoolError, NodeTaint};
pub use publisher::{DesiredNodePools, NodePoolPublisher};
use status::ApiError;
use store::Store;

/// The reason a Challenge carries with [`FakeConfig::acme_challenges_fail`] when none
/// is given (`--acme-challenges-fail` without a value).
pub const DEFAULT_ACME_FAILURE: &str = "Waiting for DNS-01 challenge propagation: DNS record for \"_acme-challenge\" not yet propagated (injected by fake-kube)";

/// How the fake behaves. Build it with [`FakeConfig::default`] and the `with_*` setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FakeConfig {
    /// Port on 127.0.0.1 (default 0: any free port).
    pub port: u16,
    /// Seed of every random choice (uids, faults).
    pub seed: u64,
    /// Fraction (0.0..=1.0) of calls answered 429 `TooManyRequests` (with
    /// `Retry-After: 1`) or 503 `ServiceUnavailable` before any effect.
    pub fault_rate: f64,
    /// From a namespace's DELETE to the removal of its contents (default 200 ms).
    pub namespace_delete_delay: Duration,
    /// From a CRD's creation to `Established=True` (default 300 ms).
    pub crd_established_delay: Duration,
    /// From a Deployment's change to its ready status (default 100 ms).
    pub deployment_ready_delay: Duration,
    /// From the creation of the webhook Deployment to a ready webhook (default 500 ms).
    pub webhook_ready_delay: Duration,
    /// From a LoadBalancer Service's creation to its ingress IP (default 100 ms).
    pub lb_provision_delay: Duration,
    /// From a LoadBalancer Service's DELETE to its disappearance (default 300 ms).
    pub lb_delete_delay: Duration,
    /// From a Certificate's issuer being found to `Ready=True` (default 200 ms).
    pub certificate_ready_delay: Duration,
    /// From an Issuer's or ClusterIssuer's creation or change of `generation` to
    /// `Ready=True` at that generation (default 0: at once). Until then a changed
    /// issuer keeps the Ready condition of its previous generation.
    pub issuer_ready_delay: Duration,
    /// When set, certificates of ACME issuers never become ready: a Challenge shows
    /// this reason instead.
    pub acme_challenges_fail: Option<String>,
    /// Namespace of the cert-manager webhook Deployment (default `cert-manager`).
    pub webhook_namespace: String,
    /// Name of the cert-manager webhook Deployment (default `cert-manager-webhook`).
    pub webhook_deployment: String,
    /// How many recent changes of each resource type are kept for watches to start
    /// from (default 1000; one window per type, as the API server's watch cache is per
    /// resource): a watch from an older `resourceVersion` gets a 410 `Expired`
    /// `ERROR` event, a list or continue token from one 410 `Expired`.
    pub watch_history: usize,
    /// Period of the `BOOKMARK` events of a watch with `allowWatchBookmarks=true`
    /// (default 60 s, about what the API server does).
    pub watch_bookmark_interval: Duration,
    /// Who may call the fake (default [`Auth::Anyone`]: no authentication).
    pub auth: Auth,
    /// How many recent calls [`FakeKube::calls`] keeps, bodies included (default
    /// `usize::MAX`: all; 0: none). [`FakeKube::counts`] counts every call whatever
    /// this is; a long benchmark sets it low so that the log does not grow with the run.
    pub call_log: usize,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            port: 0,
            seed: 0,
            fault_rate: 0.0,
            namespace_delete_delay: Duration::from_millis(200),
            crd_established_delay: Duration::from_millis(300),
            deployment_ready_delay: Duration::from_millis(100),
            webhook_ready_delay: Duration::from_millis(500),
            lb_provision_delay: Duration::from_millis(100),
            lb_delete_delay: Duration::from_millis(300),
            certificate_ready_delay: Duration::from_millis(200),
            issuer_ready_delay: Duration::ZERO,
            acme_challenges_fail: None,
            webhook_namespace: "cert-manager".into(),
            webhook_deployment: "cert-manager-webhook".into(),
            watch_history: 1000,
            watch_bookmark_interval: Duration::from_secs(60),
            auth: Auth::Anyone,
            call_log: usize::MAX,
        }
    }
}

impl FakeConfig {
    /// Set [`FakeConfig::port`].
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    /// Set [`FakeConfig::call_log`].
    pub fn with_call_log(mut self, calls: usize) -> Self {
        self.call_log = calls;
        self
    }
    /// Set [`FakeConfig::seed`].
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Set [`FakeConfig::fault_rate`].
    pub fn with_fault_rate(mut self, rate: f64) -> Self {
        self.fault_rate = rate;
        self
    }
    /// Set [`FakeConfig::namespace_delete_delay`].
    pub fn with_namespace_delete_delay(mut self, d: Duration) -> Self {
        self.namespace_delete_delay = d;
        self
    }
    /// Set [`FakeConfig::crd_established_delay`].
    pub fn with_crd_established_delay(mut self, d: Duration) -> Self {
        self.crd_established_delay = d;
        self
    }
    /// Set [`FakeConfig::deployment_ready_delay`].
    pub fn with_deployment_ready_delay(mut self, d: Duration) -> Self {
        self.deployment_ready_delay = d;
        self
    }
    /// Set [`FakeConfig::webhook_ready_delay`].
    pub fn with_webhook_ready_delay(mut self, d: Duration) -> Self {
        self.webhook_ready_delay = d;
        self
    }
    /// Set [`FakeConfig::lb_provision_delay`].
    pub fn with_lb_provision_delay(mut self, d: Duration) -> Self {
        self.lb_provision_delay = d;
        self
    }
    /// Set [`FakeConfig::lb_delete_delay`].
    pub fn with_lb_delete_delay(mut self, d: Duration) -> Self {
        self.lb_delete_delay = d;
        self
    }
    /// Set [`FakeConfig::certificate_ready_delay`].
    pub fn with_certificate_ready_delay(mut self, d: Duration) -> Self {
        self.certificate_ready_delay = d;
        self
    }
    /// Set [`FakeConfig::issuer_ready_delay`].
    pub fn with_issuer_ready_delay(mut self, d: Duration) -> Self {
        self.issuer_ready_delay = d;
        self
    }
    /// Set [`FakeConfig::acme_challenges_fail`] to `reason`.
    pub fn with_acme_challenges_fail(mut self, reason: impl Into<String>) -> Self {
        self.acme_challenges_fail = Some(reason.into());
        self
    }
    /// Set [`FakeConfig::watch_history`].
    pub fn with_watch_history(mut self, events: usize) -> Self {
        self.watch_history = events;
        self
    }
    /// Set [`FakeConfig::watch_bookmark_interval`].
    pub fn with_watch_bookmark_interval(mut self, d: Duration) -> Self {
        self.watch_bookmark_interval = d;
        self
    }
    /// Set [`FakeConfig::auth`].
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
    /// Set [`FakeConfig::webhook_namespace`] and [`FakeConfig::webhook_deployment`].
    pub fn with_webhook_deployment(
        mut self,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        self.webhook_namespace = namespace.into();
        self.webhook_deployment = name.into();
        self
    }
}

/// How a call is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum CallKind {
    /// get, list, watch and discovery.
    Read,
    /// Everything else: create, update, patch, apply, delete, deletecollection.
    Mutate,
}

/// One recorded call.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// The request path.
    pub path: String,
    /// Decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The request body, parsed (JSON, or YAML for an apply), or as a string when it
    /// is neither; `None` when empty.
    pub body: Option<Value>,
    /// HTTP status answered.
    pub status: u16,
    /// The response body (`null` for a watch, whose events are streamed; for an
    /// OpenAPI document, `{"mediaType": .., "bytes": n}`).
    pub response: Value,
    /// The Kubernetes verb: `get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `apply` (a patch with `application/apply-patch+yaml`), `delete`,
    /// `deletecollection`; `get` for discovery.
    pub verb: String,
    /// The resource (`deployments`, `services/status`), `discovery`, or `unknown`.
    pub resource: String,
    /// How it is counted.
    pub kind: CallKind,
    /// True when the answer was an injected fault.
    pub fault: bool,
}

/// Call counters. `reads` and `mutating` count every recorded call of that kind,
/// whatever its status (injected faults included); `faults` counts the injected
/// faults and `errors` the other non-2xx answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Counts {
    /// Read calls.
    pub reads: u64,
    /// Mutating calls.
    pub mutating: u64,
    /// Injected 429/503 answers.
    pub faults: u64,
    /// Non-2xx answers that were not injected.
    pub errors: u64,
    /// Calls per `"verb resource"`, e.g. `"apply deployments"`, `"get discovery"`.
    pub per_verb: BTreeMap<String, u64>,
}

impl Counts {
    /// Calls of one `verb` on one `resource` (e.g. `("apply", "namespaces")`).
    pub fn of(&self, verb: &str, resource: &str) -> u64 {
        self.per_verb
            .get(&format!("{verb} {resource}"))
            .copied()
            .unwrap_or(0)
    }
}

struct Shared {
    state: Mutex<Store>,
    frozen: watch::Sender<bool>,
    addr: SocketAddr,
    ca_pem: String,
    /// TCP connections accepted so far.
    connections: Arc<std::sync::atomic::AtomicU64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The state, with every timed effect due by now applied.
    fn settled(&self) -> MutexGuard<'_, Store> {
        let mut st = self.lock();
        controllers::settle(&mut st, Instant::now());
        st
    }
}

/// A running fake. Dropping it without [`FakeKube::shutdown`] leaves the server task
/// running until the runtime ends.
pub struct FakeKube {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeKube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKube")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl FakeKube {
    /// Bind 127.0.0.1 on [`FakeConfig::port`] and serve HTTPS in a background task,
    /// with a certificate signed by a CA generated now ([`FakeKube::ca_pem`]).
    pub async fn start(config: FakeConfig) -> std::io::Result<FakeKube> {
        let authority = tls::Authority::generate()?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let listener = tls::TlsListener::new(listener, authority.server, connections.clone())?;
        let (frozen, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(Store::new(config)),
            frozen,
            addr,
            ca_pem: authority.ca_pem,
            connections,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(FakeKube {
            shared,
            stop: Some(stop),
            task,
        })
    }

    /// How many TCP connections clients have opened to the fake so far (a client
    /// that reuses its connections opens few).
    pub fn connections(&self) -> u64 {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The base URL, e.g. `https://127.0.0.1:40123` (the shape of an EKS endpoint).
    /// Clients must trust [`FakeKube::ca_pem`].
    pub fn url(&self) -> String {
        format!("https://{}", self.shared.addr)
    }

    /// The bare address, e.g. `127.0.0.1:40123`: the shape of a GKE cluster's
    /// `endpoint` (no scheme; clients put `https://` in front).
    pub fn address(&self) -> String {
        self.shared.addr.to_string()
    }

    /// The PEM of the CA certificate generated at start, which signed the server's
    /// certificate (SANs `127.0.0.1`, `::1`, `localhost`): what a client must trust,
    /// as it trusts a real cluster's `certificate-authority-data`.
    pub fn ca_pem(&self) -> String {
        self.shared.ca_pem.clone()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// A stored object, as a GET answers it (any served version). `resource` is named
    /// as kubectl names it: `namespaces`, `deployments.apps`,
    /// `certificates.cert-manager.io`, a kind or a short name. `namespace` is ignored
    /// for cluster-scoped types. `None` when the object or the type does not exist.
    pub fn object(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let st = self.shared.settled();
        let t = catalog::resolve_name(&st, resource)?;
        let key = catalog::key(&t, namespace.unwrap_or(""), name);
        st.objects.get(&key).cloned()
    }

    /// Every stored object of a type (named as for [`FakeKube::object`]), in
    /// namespace/name order.
    pub fn objects(&self, resource: &str) -> Vec<Value> {
        let st = self.shared.settled();
        let Some(t) = catalog::resolve_name(&st, resource) else {
            return Vec::new();
        };
        st.list_kind(&t.group, &t.plural).cloned().collect()
    }

    /// How many simulated cloud load balancers exist: one per `type: LoadBalancer`
    /// Service, from its creation until `lb_delete_delay` after its DELETE.
    pub fn cloud_load_balancers(&self) -> usize {
        self.shared.settled().load_balancers.len()
    }

    /// True when the simulated cert-manager webhook answers.
    pub fn webhook_ready(&self) -> bool {
        controllers::webhook_ready(&self.shared.settled())
    }

    /// Every call so far, in order (the most recent [`FakeConfig::call_log`]).
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.iter().cloned().collect()
    }

    /// The counters.
    pub fn counts(&self) -> Counts {
        self.shared.lock().counts.clone()
    }

    /// Forget the recorded calls and zero the counters (state is kept).
    pub fn reset_calls(&self) {
        let mut st = self.shared.lock();
        st.calls.clear();
        st.counts = Counts::default();
    }

    /// Create, resize or change the simulated node pool `pool` (an id of the
    /// caller's choosing: letters, digits, `-`, `_`, `.`) and publish its nodes as
    /// core `v1` Node objects; returns their names. Growing adds nodes (spread over
    /// the zones), shrinking removes the newest, and a changed spec relabels and
    /// retaints the existing nodes. The same as `PUT /fake-kube/nodepools/{pool}`.
    pub fn set_node_pool(&self, pool: &str, spec: NodePool) -> Result<Vec<String>, NodePoolError> {
        nodes::set_pool(&mut self.shared.settled(), pool, spec)
    }

    /// Remove the simulated node pool `pool` and its nodes; returns the names of the
    /// nodes removed (none when the pool does not exist). The same as
    /// `DELETE /fake-kube/nodepools/{pool}`.
    pub fn remove_node_pool(&self, pool: &str) -> Vec<String> {
        nodes::remove_pool(&mut self.shared.settled(), pool)
    }

    /// The simulated node pools, by id.
    pub fn node_pools(&self) -> BTreeMap<String, NodePool> {
        nodes::pools(&self.shared.lock())
    }

    /// Change [`FakeConfig::fault_rate`].
    pub fn set_fault_rate(&self, rate: f64) {
        self.shared.lock().config.fault_rate = rate;
    }

    /// Change [`FakeConfig::acme_challenges_fail`] (for certificates issued from now
    /// on).
    pub fn set_acme_challenges_fail(&self, reason: Option<String>) {
        self.shared.lock().config.acme_challenges_fail = reason;
    }

    /// Change [`FakeConfig::issuer_ready_delay`] (for issuer changes from now on).
    pub fn set_issuer_ready_delay(&self, delay: Duration) {
        self.shared.lock().config.issuer_ready_delay = delay;
    }

    /// After `n` more successful mutating calls (0: now), every further request hangs
    /// until [`FakeKube::unfreeze`]: a simulated killed process.
    pub fn freeze_after_mutating(&self, n: u64) {
        if n == 0 {
            self.shared.lock().freeze_after = None;
            self.shared.frozen.send_replace(true);
        } else {
            self.shared.lock().freeze_after = Some(n);
        }
    }

    /// Serve again. Requests that hung while frozen never take effect: they are
    /// answered 503 `ServiceUnavailable` (and not recorded).
    pub fn unfreeze(&self) {
        self.shared.lock().freeze_after = None;
        self.shared.frozen.send_replace(false);
    }

    /// Stop serving and wait for the server task.
    pub async fn shutdown(mut self) {
        // Release hung requests and end the open watches so the graceful shutdown
        // can finish.
        self.shared.frozen.send_replace(false);
        self.shared.lock().objects.close_watches();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

fn json_response(code: u16, body: &Value, retry_after: Option<u64>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Value::String(text) = body {
        return (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text.clone(),
        )
            .into_response();
    }
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(s) = retry_after {
        if let Ok(v) = s.to_string().parse() {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

async fn handle(
    AxState(shared): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The fake-only admin endpoint (node pools), outside /api and /apis.
    if uri.path().starts_with("/fake-kube/") {
        let answer = nodes::admin(&mut shared.settled(), method.as_str(), uri.path(), &body);
        if let Some((code, out)) = answer {
            return json_response(code, &out, None);
        }
    }
    let mut frozen = shared.frozen.subscribe();
    if *frozen.borrow_and_update() {
        // A frozen fake is a killed process: this request never has an effect.
        let _ = frozen.wait_for(|f| !*f).await;
        let err = ApiError::new(
            503,
            "ServiceUnavailable",
            "the fake was frozen while this request waited",
        );
        return json_response(503, &err.body(), None);
    }
    // Authentication (off by default; EKS tokens): see auth.rs. Refusals are not recorded.
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let auth = shared.lock().config.auth.clone();
    if let Err(e) = auth::check(&auth, authorization, method.as_str(), uri.path()) {
        return json_response(e.code, &e.body(), None);
    }
    // The OpenAPI documents (JSON or protobuf, by `Accept`): see openapi.rs.
    if method == Method::GET {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        if let Some(doc) = openapi::serve(&mut shared.settled(), uri.path(), accept.unwrap_or("")) {
            return openapi::response(doc);
        }
    }
    let query = parse_query(uri.query().unwrap_or(""));
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let addr = shared.addr.to_string();
    let req = api::Request {
        method: method.as_str(),
        path: uri.path(),
        query: &query,
        content_type: content_type.as_deref().unwrap_or(""),
        body: &body,
        server_addr: &addr,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        accept: headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    };
    let (code, out, retry_after, opened) = {
        let mut st = shared.lock();
        let (code, out, retry_after, freeze, opened) = process(&mut st, &req);
        if freeze {
            shared.frozen.send_replace(true);
        }
        (code, out, retry_after, opened)
    };
    if let Some(plan) = opened {
        return watches::response(shared, plan);
    }
    json_response(code, &out, retry_after)
}

/// What [`process`] answers: status, body, Retry-After, freeze now, and an opened
/// watch (whose events are streamed instead of the body).
type Processed = (u16, Value, Option<u64>, bool, Option<watches::Plan>);

/// Handle one request against the state.
fn process(st: &mut Store, req: &api::Request<'_>) -> Processed {
    let now = Instant::now();
    controllers::settle(st, now);
    let route = api::route(req.path);
    let (verb, resource, kind) = api::describe(&route, req);

    let fault_rate = st.config.fault_rate;
    let fault = fault_rate > 0.0 && st.rng.random::<f64>() < fault_rate;
    let mut opened = None;
    let result = if fault {
        if st.rng.random::<bool>() {
            let mut e = ApiError::new(
                429,
                "TooManyRequests",
                "Too many requests, please try again later. (injected by fake-kube)",
            )
            .with_details(serde_json::json!({"retryAfterSeconds": 1}));
            e.retry_after = Some(1);
            Err(e)
        } else {
            Err(ApiError::new(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request (injected by fake-kube)",
            ))
        }
    } else if verb == "watch" {
        // A watch answers 200 and streams its events (recorded as a `null` body).
        watches::open(st, &route, req).map(|plan| {
            opened = Some(plan);
            (200, Value::Null)
        })
    } else {
        api::handle(st, &route, req, now)
    };
    let (status, out, retry_after) = match result {
        Ok((code, v)) => (code, v, None),
        Err(e) => (e.code, e.body(), e.retry_after),
    };

    match kind {
        CallKind::Read => st.counts.reads += 1,
        CallKind::Mutate => st.counts.mutating += 1,
    }
    if fault {
        st.counts.faults += 1;
    } else if status >= 300 {
        st.counts.errors += 1;
    }
    *st.counts
        .per_verb
        .entry(format!("{verb} {resource}"))
        .or_insert(0) += 1;
    let body = if req.body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            serde_json::from_slice::<Value>(req.body)
                .ok()
                .or_else(|| serde_yaml_ng::from_slice::<Value>(req.body).ok())
                .unwrap_or_else(|| Value::String(String::from_utf8_lossy(req.body).into_owned())),
        )
    };
    st.record(Call {
        method: req.method.to_string(),
        path: req.path.to_string(),
        query: req.query.to_vec(),
        content_type: (!req.content_type.is_empty()).then(|| req.content_type.to_string()),
        body,
        status,
        response: out.clone(),
        verb,
        resource,
        kind,
        fault,
    });

    let mut freeze = false;
    if kind == CallKind::Mutate && status < 300 {
        if let Some(left) = st.freeze_after.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                st.freeze_after = None;
                freeze = true;
            }
        }
    }
    (status, out, retry_after, freeze, opened)
}

#[cfg(test)]
mod tests {
    use super::parse_query;

    #[test]
    fn query_decoding() {
        assert_eq!(
            parse_query("fieldManager=gitpod-refarch&labelSelector=a%3Db%2Cc&force=true&x"),
            vec![
                ("fieldManager".to_string(), "gitpod-refarch".to_string()),
                ("labelSelector".to_string(), "a=b,c".to_string()),
                ("force".to_string(), "true".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(
            parse_query("a=%zz%4"),
            vec![("a".to_string(), "%zz%4".to_string())]
        );
    }
}
