//! The plan: an immutable value saying, for every resource, what apply will do.
//!
//! [`plan`] is synchronous, deterministic and IO-free: it derives the desired
//! resources from the spec ([`graph`]), compares them with an observed [`Snapshot`],
//! and decides each [`Action`]. Apply executes the plan as written and makes no new
//! decisions. A plan prints as a readable diff (`Display`) and serialises to JSON;
//! neither contains secret values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::cost::BillOfMaterials;
use crate::provider::{Observed, Operation, ProviderInfo};
use crate::resource::*;
use crate::secret::{ProcessSources, Sources};
use crate::spec::{
    CertificateSettings, Cloud, DatabaseChoice, PoolRole, ReferenceArchitecture, RegistryChoice,
    RegistryMode, StorageChoice,
};
use crate::state::Generation;
use crate::validate::{self, ValidationErrors, Warning};

/// The label every resource carries with the installation name.
pub const INSTALLATION_LABEL: &str = "gitpod-installation";

/// The cert-manager release the bootstrap installs.
pub const CERT_MANAGER_VERSION: &str = "v1.18.2";
/// The external-dns image the bootstrap runs.
pub const EXTERNAL_DNS_IMAGE: &str = "registry.k8s.io/external-dns/external-dns:v0.15.1";
/// The guide's `--dns01-recursive-nameservers`.
pub const DNS01_RECURSIVE_NAMESERVERS: [&str; 2] = ["8.8.8.8:53", "1.1.1.1:53"];

/// A desired resource and what it depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The desired state.
    pub desired: Desired,
    /// Resources that must exist first.
    pub depends_on: Vec<ResourceId>,
}

impl Node {
    /// The id.
    pub fn id(&self) -> ResourceId {
        self.desired.id()
    }
}

/// Every resource the spec asks for, in dependency order, with edges.
///
/// The database, DNS zone, IAM, storage and registry never wait for the cluster; the
/// node pools wait only for the cluster.
pub fn graph(spec: &ReferenceArchitecture) -> Vec<Node> {
    let name = spec.name.clone();
    let region = spec.cluster.region.clone();
    let mut labels = spec.labels.clone();
    labels.insert(INSTALLATION_LABEL.into(), name.clone());

    let foundation = Desired::Foundation(FoundationSpec {
        installation: name.clone(),
        region: region.clone(),
        labels: labels.clone(),
    });
    let network = Desired::Network(NetworkSpec {
        name: name.clone(),
        region: region.clone(),
        zones: spec.cluster.zones.clone(),
        node_cidr: spec.cluster.network.node_cidr.clone(),
        pod_cidr: spec.cluster.network.pod_cidr.clone(),
        service_cidr: spec.cluster.network.service_cidr.clone(),
        highly_available_nat: spec.aws.as_ref().is_some_and(|a| a.highly_available_nat),
        labels: labels.clone(),
    });
    let identity = Desired::ClusterIdentity(ClusterIdentitySpec {
        name: name.clone(),
        labels: labels.clone(),
    });
    let cluster = Desired::Cluster(ClusterSpec {
        name: name.clone(),
        region: region.clone(),
        zones: spec.cluster.zones.clone(),
        kubernetes_version: spec.cluster.kubernetes_version.clone(),
        network_policy: "calico".into(),
        auto_upgrade: spec.cluster.auto_upgrade,
        max_pods_per_node: spec.cluster.max_pods_per_node,
        labels: labels.clone(),
    });
    let (f_id, n_id, i_id, c_id) = (foundation.id(), network.id(), identity.id(), cluster.id());
    let mut nodes = vec![
        Node {
            desired: foundation,
            depends_on: vec![],
        },
        Node {
            desired: network,
            depends_on: vec![f_id.clone()],
        },
        Node {
            desired: identity,
            depends_on: vec![f_id.clone()],
        },
        Node {
            desired: cluster,
            depends_on: vec![n_id.clone(), i_id.clone()],
        },
    ];
    for role in PoolRole::ALL {
        let p = spec.node_pools.get(role);
        nodes.push(Node {
            desired: Desired::NodePool(NodePoolSpec {
                cluster: name.clone(),
                role,
                name: role.short_name().into(),
                machine_type: p.machine_type.clone(),
                disk_type: p.disk_type.clone(),
                disk_size_gb: p.disk_size_gb,
                min_nodes: p.min_nodes,
                max_nodes: p.max_nodes,
                node_labels: p.labels.clone(),
                taints: p.taints.clone(),
                image: p.image.clone(),
                kubernetes_version: spec.cluster.kubernetes_version.clone(),
                max_pods_per_node: spec.cluster.max_pods_per_node,
                auto_upgrade: spec.cluster.auto_upgrade,
                labels: labels.clone(),
            }),
            depends_on: vec![c_id.clone(), i_id.clone()],
        });
    }
    let zone = Desired::DnsZone(DnsZoneSpec {
        name: name.clone(),
        server: spec.dns.self_managed().map(|d| d.server.clone()),
        dns_name: spec.zone_dns_name().to_string(),
        labels: labels.clone(),
    });
    let z_id = zone.id();
    nodes.push(Node {
        desired: zone,
        depends_on: vec![f_id.clone()],
    });
    // On Azure the DNS identities are federated with the cluster's OIDC issuer, which
    // exists once the cluster does.
    let mut dns_identity_deps = vec![z_id.clone()];
    if spec.cloud == crate::spec::Cloud::Azure {
        dns_identity_deps.push(c_id.clone());
    }
    nodes.push(Node {
        desired: Desired::DnsIdentity(DnsIdentitySpec {
            name: name.clone(),
            zone_dns_name: spec.zone_dns_name().to_string(),
        }),
        depends_on: dns_identity_deps,
    });
    if let Some(target) = spec.dns.records_target() {
        nodes.push(Node {
            desired: Desired::DnsRecords(records_spec(spec, target.clone())),
            depends_on: vec![z_id],
        });
    }
    let storage = match &spec.storage {
        StorageChoice::SelfManaged(s) => ObjectStorageSpec {
            name: name.clone(),
            region: s.region.clone(),
            bucket: Some(s.bucket.clone()),
            versioning: false,
            endpoint: Some(s.endpoint.clone()),
            labels: labels.clone(),
        },
        StorageChoice::Cloud(s) => ObjectStorageSpec {
            name: name.clone(),
            region: region.clone(),
            bucket: s.bucket.clone(),
            versioning: s.versioning,
            endpoint: None,
            labels: labels.clone(),
        },
    };
    nodes.push(Node {
        desired: Desired::ObjectStorage(storage),
        depends_on: vec![f_id.clone()],
    });
    let registry = match &spec.registry {
        RegistryChoice::SelfManaged(r) => {
            let url = r.url_without_scheme();
            RegistrySpec {
                name: name.clone(),
                region: String::new(),
                // The path under the registry host (`gitpod` in `harbor.corp/gitpod`).
                repository: url.split_once('/').map(|(_, p)| p).unwrap_or("").into(),
                mode: RegistryMode::Managed,
                url: Some(url.to_string()),
                labels: labels.clone(),
            }
        }
        RegistryChoice::Cloud(r) => RegistrySpec {
            name: name.clone(),
            region: region.clone(),
            repository: r.repository.clone(),
            mode: r.mode,
            url: None,
            labels: labels.clone(),
        },
    };
    nodes.push(Node {
        desired: Desired::Registry(registry),
        depends_on: vec![f_id],
    });
    let (instance, instance_deps) = match &spec.database {
        // An existing server: nothing to create at the instance level, no network
        // (the cloud-only fields stay empty).
        DatabaseChoice::SelfManaged(db) => (
            DatabaseInstanceSpec {
                name: name.clone(),
                region: String::new(),
                mysql_version: String::new(),
                tier: String::new(),
                storage_gb: 0,
                storage_auto_increase: false,
                high_availability: false,
                backups_enabled: false,
                backup_retention_days: 0,
                flags: BTreeMap::new(),
                deletion_protection: db.deletion_protection,
                database_name: db.database_name.clone(),
                admin_username: db.admin_username.clone(),
                server: Some(db.server()),
                labels,
            },
            vec![],
        ),
        DatabaseChoice::Cloud(db) => (
            DatabaseInstanceSpec {
                name: name.clone(),
                region,
                mysql_version: db.mysql_version.clone(),
                tier: db.tier.clone(),
                storage_gb: db.storage_gb,
                storage_auto_increase: db.storage_auto_increase,
                high_availability: db.high_availability,
                backups_enabled: db.backups.enabled,
                backup_retention_days: db.backups.retention_days,
                flags: db.flags.clone(),
                deletion_protection: db.deletion_protection,
                database_name: db.database_name.clone(),
                admin_username: db.username.clone(),
                server: None,
                labels,
            },
            vec![n_id],
        ),
    };
    let instance = Desired::DatabaseInstance(instance);
    let inst_id = instance.id();
    nodes.push(Node {
        desired: instance,
        depends_on: instance_deps,
    });
    nodes.push(Node {
        desired: Desired::Database(DatabaseSpec {
            instance: name,
            database_name: spec.database.database_name().to_string(),
            username: spec.database.username().to_string(),
        }),
        depends_on: vec![inst_id],
    });
    nodes.extend(in_cluster_nodes(spec));
    nodes
}

/// The resources inside the cluster, after the cloud resources they need: access
/// first, then cert-manager and external-dns (once the services pool can run them),
/// the issuer, the Gitpod namespace with its secrets, and the certificate last.
fn in_cluster_nodes(spec: &ReferenceArchitecture) -> Vec<Node> {
    let name = &spec.name;
    let id = |kind, n: &str| ResourceId::new(kind, n);
    let services_pool = id(ResourceKind::NodePool, PoolRole::Services.short_name());
    let access = Desired::ClusterAccess(ClusterAccessSpec {
        cluster: name.clone(),
        binding: "cluster-admin-binding".into(),
    });
    let cert_manager = Desired::CertManager(CertManagerSpec {
        namespace: "cert-manager".into(),
        version: CERT_MANAGER_VERSION.into(),
        recursive_nameservers: DNS01_RECURSIVE_NAMESERVERS.map(String::from).to_vec(),
    });
    let external_dns = Desired::ExternalDns(ExternalDnsSpec {
        namespace: "external-dns".into(),
        image: EXTERNAL_DNS_IMAGE.into(),
        domain_filter: spec.zone_dns_name().to_string(),
        txt_owner_id: name.clone(),
    });
    let gitpod = Desired::GitpodNamespace(GitpodNamespaceSpec {
        namespace: crate::installer::GITPOD_NAMESPACE.into(),
    });
    let (a_id, cm_id, e_id, g_id) = (
        access.id(),
        cert_manager.id(),
        external_dns.id(),
        gitpod.id(),
    );
    let dns_identity = id(ResourceKind::DnsIdentity, name);
    let mut nodes = vec![
        Node {
            desired: access,
            depends_on: vec![id(ResourceKind::Cluster, name)],
        },
        Node {
            desired: cert_manager,
            depends_on: vec![a_id.clone(), services_pool.clone()],
        },
        Node {
            desired: external_dns,
            depends_on: vec![a_id.clone(), services_pool, dns_identity.clone()],
        },
        // After external-dns, so that a destroy removes Gitpod's load balancers (and
        // external-dns their records) before external-dns goes.
        Node {
            desired: gitpod,
            depends_on: vec![
                a_id,
                e_id,
                id(ResourceKind::ObjectStorage, name),
                id(ResourceKind::Registry, name),
                id(ResourceKind::Database, spec.database.database_name()),
            ],
        },
    ];
    if let CertificateSettings::Acme { email, server } = &spec.certificates {
        let issuer = Desired::Issuer(IssuerSpec {
            name: crate::installer::ISSUER_NAME.into(),
            email: email.clone(),
            server: server.clone(),
            account_key_secret: crate::installer::ISSUER_ACCOUNT_KEY.into(),
        });
        let i_id = issuer.id();
        nodes.push(Node {
            desired: issuer,
            depends_on: vec![cm_id, dns_identity],
        });
        nodes.push(Node {
            desired: Desired::Certificate(CertificateSpec {
                namespace: crate::installer::GITPOD_NAMESPACE.into(),
                name: crate::installer::CERTIFICATE_NAME.into(),
                dns_names: spec.gitpod_dns_names().to_vec(),
                issuer: crate::installer::ISSUER_NAME.into(),
                zone_dns_name: spec.zone_dns_name().to_string(),
            }),
            depends_on: vec![i_id, g_id, id(ResourceKind::DnsZone, name)],
        });
    }
    nodes
}

/// The nodes a plan covers: without an in-cluster bootstrap, the cloud resources only.
fn planned_nodes(spec: &ReferenceArchitecture, snapshot: &Snapshot) -> Vec<Node> {
    graph(spec)
        .into_iter()
        .filter(|n| snapshot.in_cluster || n.id().kind.domain() != Domain::InCluster)
        .collect()
}

fn records_spec(
    spec: &ReferenceArchitecture,
    target: crate::spec::RecordsTarget,
) -> DnsRecordsSpec {
    DnsRecordsSpec::new(
        spec.name.clone(),
        spec.zone_dns_name(),
        spec.gitpod_dns_names().to_vec(),
        target,
    )
}

/// The spec's context for a resource, desired or not: its desired state, or for the
/// optional DNS records the spec no longer wants, where they would be (target empty),
/// so that a provider can find and delete them.
pub fn context_for(spec: &ReferenceArchitecture, id: &ResourceId) -> Option<Desired> {
    if let Some(n) = graph(spec).into_iter().find(|n| &n.id() == id) {
        return Some(n.desired);
    }
    (id.kind == ResourceKind::DnsRecords && id.name == spec.zone_dns_name()).then(|| {
        Desired::DnsRecords(records_spec(
            spec,
            crate::spec::RecordsTarget::Hostname(String::new()),
        ))
    })
}

/// Every resource id that may belong to the installation, desired or not (the planner
/// observes all of them, so that a resource no longer desired is deleted).
pub fn candidate_ids(spec: &ReferenceArchitecture) -> Vec<ResourceId> {
    let mut ids: Vec<ResourceId> = graph(spec).iter().map(Node::id).collect();
    let records = ResourceId::new(ResourceKind::DnsRecords, spec.zone_dns_name());
    if !ids.contains(&records) {
        ids.push(records);
    }
    ids
}

/// What was observed before planning.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// For each candidate id, what the provider observed (`None`: absent).
    pub observed: BTreeMap<ResourceId, Option<Observed>>,
    /// Outputs kept in the state store from earlier runs (with secrets).
    pub stored_outputs: BTreeMap<ResourceId, Output>,
    /// The cluster provider's constraints.
    pub cluster_provider: Option<ProviderInfo>,
    /// Whether an in-cluster bootstrap takes part (else the plan stops at the cloud
    /// resources).
    pub in_cluster: bool,
    /// The generation of the state read (`None`: nothing stored); the plan keeps it so
    /// that applying it after the state changed is refused.
    pub state_generation: Option<Generation>,
}

/// Whether a plan builds up or tears down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Create/update to match the spec.
    Apply,
    /// Remove everything.
    Destroy,
}

/// How a field change can be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// In place.
    Update,
    /// Only by replacing the resource.
    Replace,
}

/// One changed field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The field path in the desired state (`machineType`).
    pub path: String,
    /// What exists (JSON).
    pub from: Value,
    /// What the spec asks for (JSON).
    pub to: Value,
    /// Update in place or replace.
    pub effect: Effect,
}

/// What apply does to one resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Action {
    /// Create it.
    Create,
    /// Change it in place (or re-issue credentials missing from state).
    Update {
        /// The changed fields (may be empty when only `reasons` apply).
        changes: Vec<Change>,
        /// Why, beyond the field changes: the drift the provider observed, or
        /// credentials missing from the state.
        reasons: Vec<String>,
    },
    /// Delete and create it again.
    Replace {
        /// The changed fields.
        changes: Vec<Change>,
        /// Why.
        reason: String,
        /// Whether running workloads or data are affected.
        disruptive: bool,
    },
    /// Nothing to do.
    NoOp,
    /// Wait for an operation started by an earlier run, then converge.
    Await {
        /// The operation.
        operation: Operation,
    },
    /// Delete it.
    Delete,
    /// Leave it in place on destroy.
    Retain {
        /// Why.
        reason: String,
    },
}

impl Action {
    /// Whether executing this action calls a mutating API.
    pub fn is_mutating(&self) -> bool {
        !matches!(self, Action::NoOp | Action::Retain { .. })
    }

    fn symbol(&self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update { .. } => "~",
            Action::Replace { .. } => "-/+",
            Action::NoOp => "=",
            Action::Await { .. } => "…",
            Action::Delete => "-",
            Action::Retain { .. } => "!",
        }
    }

    fn word(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update { .. } => "update",
            Action::Replace { .. } => "replace",
            Action::NoOp => "no change",
            Action::Await { .. } => "await",
            Action::Delete => "delete",
            Action::Retain { .. } => "retain",
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// The resource.
    pub id: ResourceId,
    /// What to do.
    pub action: Action,
    /// The desired state (for deletes: the spec's state, as context for the provider;
    /// absent for a resource the spec no longer has).
    pub desired: Option<Desired>,
    /// Steps that must finish first.
    pub after: Vec<ResourceId>,
    /// Steps in the same lane never run at the same time.
    pub lane: String,
}

/// An immutable plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    installation: String,
    mode: Mode,
    steps: Vec<Step>,
    warnings: Vec<Warning>,
    /// The state's generation when the plan was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    state_generation: Option<Generation>,
    #[serde(skip)]
    known_outputs: BTreeMap<ResourceId, Output>,
    /// The cloud and region that bill the installation.
    #[serde(skip)]
    cloud: Cloud,
    #[serde(skip)]
    region: String,
    /// The installation's resources as observed when planning (the "before" of the
    /// plan's cost change).
    #[serde(skip)]
    current: Vec<Desired>,
}

impl Plan {
    /// The installation name.
    pub fn installation(&self) -> &str {
        &self.installation
    }

    /// The generation of the state this plan was made from (`None`: no state yet).
    /// [`Engine::apply`](crate::Engine::apply) refuses the plan if the state moved on.
    pub fn state_generation(&self) -> Option<&Generation> {
        self.state_generation.as_ref()
    }

    /// Every billable item the installation has once this plan is applied: for an
    /// apply, what it creates or keeps; for a destroy, what it retains. Price it with
    /// [`BillOfMaterials::cost`].
    pub fn bill_of_materials(&self) -> BillOfMaterials {
        let kept = self.steps.iter().filter(|s| match (&s.action, self.mode) {
            (Action::Delete, _) => false,
            (Action::Retain { .. }, Mode::Destroy) => true,
            (_, Mode::Destroy) => false,
            (_, Mode::Apply) => true,
        });
        BillOfMaterials::from_resources(
            self.cloud,
            &self.region,
            kept.filter_map(|s| s.desired.as_ref()),
        )
    }

    /// The billable items as they were observed when the plan was made (empty before
    /// the first apply): [`Plan::bill_of_materials`] minus this is the plan's change.
    pub fn current_bill_of_materials(&self) -> BillOfMaterials {
        BillOfMaterials::from_resources(self.cloud, &self.region, self.current.iter())
    }

    /// Apply or destroy.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The steps, in dependency order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The step for a resource.
    pub fn step(&self, id: &ResourceId) -> Option<&Step> {
        self.steps.iter().find(|s| &s.id == id)
    }

    /// Notes about the spec.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Outputs already known for resources that need no change.
    pub fn known_outputs(&self) -> &BTreeMap<ResourceId, Output> {
        &self.known_outputs
    }

    /// Whether the plan changes anything.
    pub fn has_changes(&self) -> bool {
        self.steps.iter().any(|s| s.action.is_mutating())
    }

    /// Steps that replace a resource disruptively.
    pub fn disruptive_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| {
            matches!(
                s.action,
                Action::Replace {
                    disruptive: true,
                    ..
                }
            )
        })
    }

    /// Counts by action word.
    pub fn summary(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for s in &self.steps {
            *m.entry(s.action.word()).or_insert(0) += 1;
        }
        m
    }

    /// The plan as pretty JSON (no secrets).
    pub fn to_json(&self) -> Result<String, crate::Error> {
        serde_json::to_string_pretty(self)
            .map_err(|e| crate::Error::internal("plan does not serialize").with_source(e))
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.mode {
            Mode::Apply => "apply",
            Mode::Destroy => "destroy",
        };
        let summary = self
            .summary()
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            f,
            "Plan ({verb}) for installation '{}': {summary}",
            self.installation
        )?;
        for s in &self.steps {
            writeln!(
                f,
                "  {:<3} {:<32} {}",
                s.action.symbol(),
                s.id.to_string(),
                s.action.word()
            )?;
            match &s.action {
                Action::Create => {
                    if let Some(d) = &s.desired {
                        writeln!(f, "        {}", d.summary())?;
                    }
                }
                Action::Update { changes, reasons } => {
                    for c in changes {
                        writeln!(f, "        {}: {} -> {}", c.path, c.from, c.to)?;
                    }
                    for r in reasons {
                        writeln!(f, "        ({r})")?;
                    }
                }
                Action::Replace {
                    changes,
                    reason,
                    disruptive,
                } => {
                    let d = if *disruptive { "DISRUPTIVE: " } else { "" };
                    writeln!(f, "        {d}{reason}")?;
                    for c in changes {
                        writeln!(f, "        {}: {} -> {}", c.path, c.from, c.to)?;
                    }
                }
                Action::Await { operation } => {
                    writeln!(f, "        (operation {} started earlier)", operation.id)?
                }
                Action::Retain { reason } => writeln!(f, "        ({reason})")?,
                _ => {}
            }
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {}: {}", w.path, w.message)?;
        }
        Ok(())
    }
}

/// Compare desired with actual field by field (top-level fields of the spec).
pub fn diff(desired: &Desired, actual: &Desired) -> Vec<Change> {
    let kind = desired.kind();
    let to = spec_fields(desired);
    let from = spec_fields(actual);
    let replace = kind.replace_only_fields();
    let mut keys: BTreeSet<&String> = to.keys().collect();
    keys.extend(from.keys());
    keys.into_iter()
        .filter_map(|k| {
            let t = to.get(k).cloned().unwrap_or(Value::Null);
            let f = from.get(k).cloned().unwrap_or(Value::Null);
            (t != f).then(|| Change {
                path: k.clone(),
                from: f,
                to: t,
                effect: if replace.contains(&k.as_str()) {
                    Effect::Replace
                } else {
                    Effect::Update
                },
            })
        })
        .collect()
}

fn spec_fields(d: &Desired) -> serde_json::Map<String, Value> {
    match serde_json::to_value(d) {
        Ok(Value::Object(mut m)) => match m.remove("spec") {
            Some(Value::Object(s)) => s,
            _ => serde_json::Map::new(),
        },
        _ => serde_json::Map::new(),
    }
}

fn lane_for(id: &ResourceId, info: Option<&ProviderInfo>, cluster_name: &str) -> String {
    let serial = info.is_some_and(|i| i.serial_cluster_operations);
    if serial && id.kind.in_cluster_lane() {
        format!("cluster/{cluster_name}")
    } else {
        id.to_string()
    }
}

/// Plan an apply: make every desired resource match the spec.
///
/// Fails only on an invalid spec, before anything else. The secrets and files the
/// spec names are read from the process's environment and files; see
/// [`plan_with_sources`].
pub fn plan(spec: &ReferenceArchitecture, snapshot: &Snapshot) -> Result<Plan, ValidationErrors> {
    plan_with_sources(spec, snapshot, &ProcessSources)
}

/// [`plan`], reading the secrets and files the spec names from `sources` (to
/// validate them) instead of the process's own.
pub fn plan_with_sources(
    spec: &ReferenceArchitecture,
    snapshot: &Snapshot,
    sources: &dyn Sources,
) -> Result<Plan, ValidationErrors> {
    validate::validate_with(spec, sources)?;
    let nodes = planned_nodes(spec, snapshot);
    let desired_ids: BTreeSet<ResourceId> = nodes.iter().map(Node::id).collect();
    let info = snapshot.cluster_provider.as_ref();
    // One step per node, and a few deletes of resources the spec no longer has.
    let mut steps = Vec::with_capacity(nodes.len());
    let mut known_outputs = BTreeMap::new();
    for node in &nodes {
        let id = node.id();
        let observed = snapshot.observed.get(&id).and_then(Option::as_ref);
        let stored = snapshot.stored_outputs.get(&id);
        let action = match observed {
            None => Action::Create,
            Some(o) => {
                if let Some(op) = &o.pending {
                    Action::Await {
                        operation: op.clone(),
                    }
                } else {
                    let changes = diff(&node.desired, &o.actual);
                    let output = o.output.clone().or_else(|| stored.cloned());
                    if changes.iter().any(|c| c.effect == Effect::Replace) {
                        let fields: Vec<&str> = changes
                            .iter()
                            .filter(|c| c.effect == Effect::Replace)
                            .map(|c| c.path.as_str())
                            .collect();
                        Action::Replace {
                            reason: format!("{} cannot change in place", fields.join(", ")),
                            disruptive: id.kind.replace_is_disruptive(),
                            changes,
                        }
                    } else {
                        let mut reasons = o.drift.clone();
                        if output.is_none() {
                            reasons.push(
                                "its credentials are not in the local state: they will be re-issued"
                                    .into(),
                            );
                        }
                        match output {
                            Some(out) if changes.is_empty() && reasons.is_empty() => {
                                known_outputs.insert(id.clone(), out);
                                Action::NoOp
                            }
                            _ => Action::Update { changes, reasons },
                        }
                    }
                }
            }
        };
        steps.push(Step {
            lane: lane_for(&id, info, &spec.name),
            id,
            action,
            desired: Some(node.desired.clone()),
            after: node.depends_on.clone(),
        });
    }
    // Resources that exist but are no longer desired (records whose target was removed).
    for id in candidate_ids(spec) {
        if desired_ids.contains(&id) {
            continue;
        }
        if let Some(Some(_)) = snapshot.observed.get(&id) {
            steps.push(Step {
                lane: lane_for(&id, info, &spec.name),
                desired: context_for(spec, &id),
                id,
                action: Action::Delete,
                after: vec![],
            });
        }
    }
    // A plan lives for the whole run: no spare capacity.
    steps.shrink_to_fit();
    Ok(Plan {
        installation: spec.name.clone(),
        mode: Mode::Apply,
        steps,
        warnings: validate::warnings_with(spec, sources),
        state_generation: snapshot.state_generation.clone(),
        known_outputs,
        cloud: spec.cloud,
        region: spec.cluster.region.clone(),
        current: observed_resources(snapshot),
    })
}

/// Plan a destroy: delete every resource of the installation, dependents first.
///
/// A database with deletion protection is retained, and so is everything it needs.
pub fn plan_destroy(
    spec: &ReferenceArchitecture,
    snapshot: &Snapshot,
) -> Result<Plan, ValidationErrors> {
    plan_destroy_with_sources(spec, snapshot, &ProcessSources)
}

/// [`plan_destroy`], reading the secrets and files the spec names from `sources`.
pub fn plan_destroy_with_sources(
    spec: &ReferenceArchitecture,
    snapshot: &Snapshot,
    sources: &dyn Sources,
) -> Result<Plan, ValidationErrors> {
    validate::validate_with(spec, sources)?;
    let mut nodes = planned_nodes(spec, snapshot);
    let records = ResourceId::new(ResourceKind::DnsRecords, spec.zone_dns_name());
    if !nodes.iter().any(|n| n.id() == records) {
        if let Some(target) = spec.dns.records_target() {
            nodes.push(Node {
                desired: Desired::DnsRecords(records_spec(spec, target.clone())),
                depends_on: vec![],
            });
        } else if let (Some(Some(_)), Some(ctx)) =
            (snapshot.observed.get(&records), context_for(spec, &records))
        {
            nodes.push(Node {
                desired: ctx,
                depends_on: vec![],
            });
        }
    }
    // Records depend on the zone even when they were only observed.
    for n in nodes.iter_mut() {
        if n.id().kind == ResourceKind::DnsRecords && n.depends_on.is_empty() {
            n.depends_on
                .push(ResourceId::new(ResourceKind::DnsZone, spec.name.clone()));
        }
    }
    // Reverse edges: a resource is deleted after everything that depends on it.
    let mut dependents: BTreeMap<ResourceId, Vec<ResourceId>> = BTreeMap::new();
    for n in &nodes {
        for d in &n.depends_on {
            dependents.entry(d.clone()).or_default().push(n.id());
        }
    }
    // Retained resources (deletion protection) keep what they depend on.
    let mut retained: BTreeMap<ResourceId, String> = BTreeMap::new();
    for n in &nodes {
        if let Desired::DatabaseInstance(d) = &n.desired {
            if d.deletion_protection {
                retained.insert(n.id(), "deletion protection is on".into());
            }
        }
    }
    // On an existing server the protection keeps the database and its user too (the
    // server itself is never the SDK's to delete).
    if spec.database.is_self_managed() && spec.database.deletion_protection() {
        for n in &nodes {
            if n.id().kind == ResourceKind::Database {
                retained.insert(n.id(), "deletion protection is on".into());
            }
        }
    }
    let mut changed = true;
    while changed {
        changed = false;
        for n in &nodes {
            if retained.contains_key(&n.id()) {
                for d in &n.depends_on {
                    if !retained.contains_key(d) {
                        retained.insert(d.clone(), format!("still needed by retained {}", n.id()));
                        changed = true;
                    }
                }
            }
        }
    }
    let info = snapshot.cluster_provider.as_ref();
    let mut steps = Vec::with_capacity(nodes.len());
    for n in nodes.iter().rev() {
        let id = n.id();
        let exists = matches!(snapshot.observed.get(&id), Some(Some(_)));
        let action = if let Some(reason) = retained.get(&id) {
            if exists {
                Action::Retain {
                    reason: reason.clone(),
                }
            } else {
                Action::NoOp
            }
        } else if exists {
            Action::Delete
        } else {
            Action::NoOp
        };
        steps.push(Step {
            lane: lane_for(&id, info, &spec.name),
            after: dependents.get(&id).cloned().unwrap_or_default(),
            id,
            action,
            desired: Some(n.desired.clone()),
        });
    }
    Ok(Plan {
        installation: spec.name.clone(),
        mode: Mode::Destroy,
        steps,
        warnings: Vec::new(),
        state_generation: snapshot.state_generation.clone(),
        known_outputs: BTreeMap::new(),
        cloud: spec.cloud,
        region: spec.cluster.region.clone(),
        current: observed_resources(snapshot),
    })
}

impl BillOfMaterials {
    /// Everything a spec makes, as an apply on an empty account would create it (no
    /// call: the spec's resource graph).
    pub fn for_spec(spec: &ReferenceArchitecture) -> Self {
        let nodes = graph(spec);
        BillOfMaterials::from_resources(
            spec.cloud,
            &spec.cluster.region,
            nodes.iter().map(|n| &n.desired),
        )
    }
}

/// The resources a snapshot found, as observed.
fn observed_resources(snapshot: &Snapshot) -> Vec<Desired> {
    snapshot
        .observed
        .values()
        .flatten()
        .map(|o| o.actual.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ReferenceArchitecture {
        let mut s = ReferenceArchitecture::defaults(Cloud::Gcp);
        s.name = "gp".into();
        s.domain = "gitpod.example.com".into();
        if let Some(g) = s.gcp.as_mut() {
            g.project = "gp-project-1".into();
        }
        if let CertificateSettings::Acme { email, .. } = &mut s.certificates {
            *email = "ops@example.com".into();
        }
        s
    }

    #[test]
    fn azure_dns_identities_wait_for_the_clusters_oidc_issuer() {
        let deps = |s: &ReferenceArchitecture| {
            graph(s)
                .into_iter()
                .find(|n| n.id().kind == ResourceKind::DnsIdentity)
                .map(|n| n.depends_on)
                .unwrap_or_default()
        };
        let cluster = ResourceId::new(ResourceKind::Cluster, "gp");
        assert!(!deps(&spec()).contains(&cluster));
        let mut azure = ReferenceArchitecture::defaults(Cloud::Azure);
        azure.name = "gp".into();
        azure.domain = "gitpod.example.com".into();
        assert!(deps(&azure).contains(&cluster));
    }

    /// Everything exists as desired, with outputs.
    fn converged(s: &ReferenceArchitecture) -> Snapshot {
        let mut snap = Snapshot {
            in_cluster: true,
            ..Snapshot::default()
        };
        for n in graph(s) {
            let out = Output::InCluster { objects: vec![] };
            snap.observed
                .insert(n.id(), Some(Observed::ready(n.desired, Some(out))));
        }
        snap
    }

    #[test]
    fn drift_becomes_an_update_whose_reasons_the_plan_prints() {
        let s = spec();
        let mut snap = converged(&s);
        assert!(!plan(&s, &snap).unwrap().has_changes());
        let id = ResourceId::new(ResourceKind::CertManager, "cert-manager");
        let o = snap.observed.get_mut(&id).unwrap().take().unwrap();
        let reason =
            "installed only in part: Deployment cert-manager/cert-manager-cainjector is missing";
        snap.observed.insert(id.clone(), Some(o.with_drift(reason)));
        let p = plan(&s, &snap).unwrap();
        assert_eq!(
            p.step(&id).unwrap().action,
            Action::Update {
                changes: vec![],
                reasons: vec![reason.to_string()]
            }
        );
        let text = p.to_string();
        assert!(text.contains("~   cert-manager/cert-manager"), "{text}");
        assert!(text.contains(&format!("({reason})")), "{text}");
        assert_eq!(p.summary().get("update"), Some(&1), "{text}");
    }

    #[test]
    fn a_field_change_and_missing_credentials_are_both_reasons_in_one_update() {
        let s = spec();
        let mut snap = converged(&s);
        let id = ResourceId::new(ResourceKind::DnsIdentity, "gp");
        let mut o = snap.observed.get_mut(&id).unwrap().take().unwrap();
        o.output = None;
        snap.observed.insert(id.clone(), Some(o));
        let p = plan(&s, &snap).unwrap();
        let Action::Update { changes, reasons } = &p.step(&id).unwrap().action else {
            panic!("{p}");
        };
        assert!(changes.is_empty());
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(p
            .to_string()
            .contains("credentials are not in the local state"));
    }
}
