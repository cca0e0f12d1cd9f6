//! Every Kubernetes object the bootstrap applies, built as values with no IO: the
//! steps apply them, the tests compare them byte for byte and validate them against
//! the official schemas.
//!
//! Built-in kinds are k8s-openapi types; cert-manager kinds come from the core's
//! installer renderer (`gitpod_refarch::installer`).

use std::collections::BTreeMap;

use base64::Engine as _;
use gitpod_refarch::installer::{self, SecretManifest};
use gitpod_refarch::resource::{
    CertManagerSpec, CertificateSpec, ClusterAccessSpec, DnsSolver, ExternalDnsSpec, IssuerSpec,
};
use gitpod_refarch::{Error, Result, Secret};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, Namespace, PodSecurityContext, PodSpec, PodTemplateSpec,
    Secret as KSecret, SecretKeySelector, SecretVolumeSource, SecurityContext, ServiceAccount,
    Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The label on everything the bootstrap applies.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "gitpod-refarch");
/// The name of external-dns's objects (ServiceAccount, RBAC, Deployment, Secret).
pub const EXTERNAL_DNS: &str = "external-dns";
/// The GKE Workload Identity annotation.
pub const GKE_SA_ANNOTATION: &str = "iam.gke.io/gcp-service-account";
/// The Azure Workload Identity annotation of a ServiceAccount: the client id of the
/// user-assigned identity its pods act as (federated with that ServiceAccount).
pub const AZURE_CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
/// The Azure Workload Identity label of a pod (value `"true"`): AKS's Workload
/// Identity webhook projects the federated token and sets `AZURE_CLIENT_ID`,
/// `AZURE_TENANT_ID` and `AZURE_FEDERATED_TOKEN_FILE` only in pods that carry it.
pub const AZURE_USE_LABEL: &str = "azure.workload.identity/use";
/// cert-manager's controller ServiceAccount and Deployment.
pub const CERT_MANAGER: &str = "cert-manager";
/// cert-manager's webhook Deployment.
pub const CERT_MANAGER_WEBHOOK: &str = "cert-manager-webhook";
/// The CRDs a cert-manager release installs.
pub const CERT_MANAGER_CRDS: [&str; 6] = [
    "certificates.cert-manager.io",
    "certificaterequests.cert-manager.io",
    "issuers.cert-manager.io",
    "clusterissuers.cert-manager.io",
    "orders.acme.cert-manager.io",
    "challenges.acme.cert-manager.io",
];

fn to_value<T: Serialize>(t: &T) -> Result<Value> {
    serde_json::to_value(t).map_err(|e| Error::internal("object does not serialize").with_source(e))
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(String::from),
        labels: Some(BTreeMap::from([(
            MANAGED_BY.0.to_string(),
            MANAGED_BY.1.to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

/// A namespace.
pub fn namespace(name: &str) -> Result<Value> {
    to_value(&Namespace {
        metadata: meta(name, None),
        ..Namespace::default()
    })
}

/// An Opaque (or typed) Secret with `data` (values base64-encoded, as the API wants).
pub fn secret(
    name: &str,
    namespace: &str,
    type_: &str,
    data: &BTreeMap<String, Secret>,
) -> Result<Value> {
    to_value(&KSecret {
        metadata: meta(name, Some(namespace)),
        type_: Some(type_.into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.expose().as_bytes().to_vec())))
                .collect(),
        ),
        ..KSecret::default()
    })
}

/// The installer's secret as an object.
pub fn installer_secret(m: &SecretManifest) -> Result<Value> {
    secret(&m.name, &m.namespace, &m.type_, &m.data)
}

/// Whether the server's Secret `live` holds `data` (keys others added are theirs, as
/// with server-side apply: only ours are compared).
pub fn secret_matches(live: &Value, data: &BTreeMap<String, Secret>) -> bool {
    secret_differs(live, data).is_empty()
}

/// The keys of `data` the server's Secret `live` lacks or holds another value for
/// (keys only: the values are secret).
pub fn secret_differs(live: &Value, data: &BTreeMap<String, Secret>) -> Vec<String> {
    let live = live.get("data").and_then(Value::as_object);
    data.iter()
        .filter(|(k, v)| {
            live.and_then(|l| l.get(k.as_str()))
                .and_then(Value::as_str)
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .is_none_or(|bytes| bytes != v.expose().as_bytes())
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// The same for an object `wanted` as built here (its `data` already base64).
pub fn secret_data_matches(live: &Value, wanted: &Value) -> bool {
    secret_data_differs(live, wanted).is_empty()
}

/// The keys of `wanted`'s `data` (already base64) the server's Secret `live` lacks or
/// holds another value for (keys only).
pub fn secret_data_differs(live: &Value, wanted: &Value) -> Vec<String> {
    let Some(want) = wanted.get("data").and_then(Value::as_object) else {
        return Vec::new();
    };
    let live = live.get("data").and_then(Value::as_object);
    want.iter()
        .filter(|(k, v)| live.and_then(|l| l.get(k.as_str())) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The cluster-admin binding for `user` (the guide's `cluster-admin-binding`).
pub fn admin_binding(spec: &ClusterAccessSpec, user: &str) -> Result<Value> {
    to_value(&ClusterRoleBinding {
        metadata: meta(&spec.binding, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "cluster-admin".into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: user.into(),
            namespace: None,
        }]),
    })
}

/// The cert-manager release manifest (multi-document YAML) as objects, with the
/// guide's flags added to the controller: `--dns01-recursive-nameservers-only` and
/// `--dns01-recursive-nameservers=<spec's servers>`.
pub fn cert_manager_objects(manifest: &str, spec: &CertManagerSpec) -> Result<Vec<Value>> {
    let mut objects = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(manifest) {
        let v = Value::deserialize(doc).map_err(|e| {
            Error::invalid_input("the cert-manager manifest is not valid YAML").with_source(e)
        })?;
        if v.is_null() {
            continue;
        }
        objects.push(v);
    }
    let controller = objects
        .iter_mut()
        .find(|o| {
            o["kind"] == "Deployment"
                && o["metadata"]["name"] == CERT_MANAGER
                && o["metadata"]["namespace"] == spec.namespace.as_str()
        })
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "the cert-manager manifest has no Deployment {}/{CERT_MANAGER}",
                spec.namespace
            ))
        })?;
    let args = controller
        .pointer_mut("/spec/template/spec/containers/0/args")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| Error::invalid_input("the cert-manager controller has no args"))?;
    args.retain(|a| {
        a.as_str()
            .is_none_or(|a| !a.starts_with("--dns01-recursive-nameservers"))
    });
    args.push(json!("--dns01-recursive-nameservers-only"));
    args.push(json!(format!(
        "--dns01-recursive-nameservers={}",
        spec.recursive_nameservers.join(",")
    )));
    Ok(objects)
}

/// The `--dns01-recursive-nameservers` a controller Deployment runs with, if set.
pub fn recursive_nameservers(controller: &Value) -> Vec<String> {
    controller
        .pointer("/spec/template/spec/containers/0/args")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix("--dns01-recursive-nameservers="))
        .map(|s| s.split(',').map(String::from).collect())
        .unwrap_or_default()
}

/// A harmless ClusterIssuer sent as a server-side dry run: accepted once cert-manager's
/// webhook answers.
pub fn webhook_probe() -> Value {
    json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": "gitpod-refarch-webhook-probe"},
        "spec": {"selfSigned": {}},
    })
}

/// The DNS-01 solver's credentials secret in cert-manager's namespace (none for
/// Workload Identity or managed identity).
pub fn solver_secret(solver: &DnsSolver, cert_manager_ns: &str) -> Result<Option<Value>> {
    installer::solver_secret(solver)
        .map(|(name, key, value)| {
            secret(
                name,
                cert_manager_ns,
                "Opaque",
                &BTreeMap::from([(key.to_string(), value.clone())]),
            )
        })
        .transpose()
}

/// What cert-manager's own objects need for the solver's workload identity, as
/// partial server-side apply configurations of the objects its release made (to apply
/// with [`crate::api::IDENTITY_FIELD_MANAGER`], after the release, in this order):
///
/// - GKE Workload Identity (a Cloud DNS solver without key): the ServiceAccount
///   `cert-manager` annotated [`GKE_SA_ANNOTATION`] = the DNS service account;
/// - Azure DNS: the ServiceAccount `cert-manager` annotated
///   [`AZURE_CLIENT_ID_ANNOTATION`] = cert-manager's identity, then the controller
///   Deployment's pod template labelled [`AZURE_USE_LABEL`]` = "true"` (the
///   ServiceAccount first: the webhook reads its annotation when the pods the label
///   rolls out are admitted);
/// - otherwise nothing (the solver's credentials are a Secret, [`solver_secret`]).
///
/// Each carries only its name and the annotation or label: the rest of the object is
/// the release's.
pub fn cert_manager_identity(solver: &DnsSolver, cert_manager_ns: &str) -> Result<Vec<Value>> {
    let service_account = |key: &str, value: &str| {
        to_value(&ServiceAccount {
            metadata: ObjectMeta {
                name: Some(CERT_MANAGER.into()),
                namespace: Some(cert_manager_ns.into()),
                annotations: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        })
    };
    match solver {
        DnsSolver::CloudDns {
            service_account: sa,
            key: None,
            ..
        } => Ok(vec![service_account(GKE_SA_ANNOTATION, sa)?]),
        DnsSolver::AzureDns {
            cert_manager_client_id,
            ..
        } => Ok(vec![
            service_account(AZURE_CLIENT_ID_ANNOTATION, cert_manager_client_id)?,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": CERT_MANAGER, "namespace": cert_manager_ns},
                "spec": {"template": {"metadata": {"labels": {AZURE_USE_LABEL: "true"}}}},
            }),
        ]),
        _ => Ok(Vec::new()),
    }
}

/// The annotations and labels of `wanted` (at `metadata` and, for a workload, at
/// `spec.template.metadata`) that the server's object `live` lacks or holds another
/// value for, named `annotation <key>`, `label <key>` or `pod template label <key>`
/// (keys only, as in drift reasons). Other keys of `live` are someone else's and are
/// not compared.
pub fn metadata_differs(live: &Value, wanted: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (at, what) in [
        ("/metadata", ""),
        ("/spec/template/metadata", "pod template "),
    ] {
        for field in ["annotations", "labels"] {
            let ptr = format!("{at}/{field}");
            let Some(want) = wanted.pointer(&ptr).and_then(Value::as_object) else {
                continue;
            };
            let have = live.pointer(&ptr).and_then(Value::as_object);
            for (k, v) in want {
                if have.and_then(|h| h.get(k)) != Some(v) {
                    let singular = field.trim_end_matches('s');
                    out.push(format!("{what}{singular} {k}"));
                }
            }
        }
    }
    out
}

/// The `gitpod-issuer` ClusterIssuer with the solver.
pub fn issuer(spec: &IssuerSpec, solver: Option<&DnsSolver>) -> Value {
    let mut v = installer::cluster_issuer(&spec.email, &spec.server, solver);
    v["metadata"]["name"] = json!(spec.name);
    v["spec"]["acme"]["privateKeySecretRef"]["name"] = json!(spec.account_key_secret);
    v
}

/// The `https-certificates` Certificate.
pub fn certificate(spec: &CertificateSpec) -> Value {
    let mut v = installer::certificate(&spec.dns_names);
    v["metadata"]["name"] = json!(spec.name);
    v["metadata"]["namespace"] = json!(spec.namespace);
    v["spec"]["secretName"] = json!(spec.name);
    v["spec"]["issuerRef"]["name"] = json!(spec.issuer);
    v
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn env_secret(name: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: EXTERNAL_DNS.into(),
                key: key.into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// What external-dns needs for one DNS service: flags, environment, its credentials
/// secret's data, a file mount of that secret, and ServiceAccount annotations.
#[derive(Default)]
struct Backend {
    args: Vec<String>,
    env: Vec<EnvVar>,
    secret: BTreeMap<String, Secret>,
    mount: Option<&'static str>,
    annotations: BTreeMap<String, String>,
    pod_labels: BTreeMap<String, String>,
}

fn backend(solver: &DnsSolver, zone: &str) -> Result<Backend> {
    Ok(match solver {
        DnsSolver::CloudDns {
            project,
            service_account,
            key,
        } => {
            let mut b = Backend {
                args: vec![
                    "--provider=google".into(),
                    format!("--google-project={project}"),
                    "--google-zone-visibility=public".into(),
                ],
                ..Backend::default()
            };
            match key {
                Some(k) => {
                    b.secret.insert("credentials.json".into(), k.clone());
                    b.mount = Some("/etc/secrets/service-account");
                    b.env.push(env(
                        "GOOGLE_APPLICATION_CREDENTIALS",
                        "/etc/secrets/service-account/credentials.json",
                    ));
                }
                None => {
                    b.annotations
                        .insert(GKE_SA_ANNOTATION.into(), service_account.clone());
                }
            }
            b
        }
        DnsSolver::Route53 {
            region,
            hosted_zone_id,
            access_key_id,
            secret_access_key,
        } => Backend {
            args: vec![
                "--provider=aws".into(),
                "--aws-zone-type=public".into(),
                format!("--zone-id-filter={hosted_zone_id}"),
            ],
            env: vec![
                env("AWS_DEFAULT_REGION", region),
                env("AWS_ACCESS_KEY_ID", access_key_id),
                env_secret("AWS_SECRET_ACCESS_KEY", "secret-access-key"),
            ],
            secret: BTreeMap::from([("secret-access-key".into(), secret_access_key.clone())]),
            ..Backend::default()
        },
        DnsSolver::AzureDns {
            tenant_id,
            subscription_id,
            resource_group,
            external_dns_client_id,
            ..
        } => Backend {
            args: vec![
                "--provider=azure".into(),
                format!("--azure-resource-group={resource_group}"),
                format!("--azure-subscription-id={subscription_id}"),
                "--azure-config-file=/etc/kubernetes/azure.json".into(),
            ],
            // Workload Identity (external-dns >= 0.13.5): the client id comes from the
            // ServiceAccount's annotation through the webhook's `AZURE_CLIENT_ID`, the
            // token from the projected file; `azure.json` holds no credential.
            secret: BTreeMap::from([(
                "azure.json".into(),
                Secret::new(
                    json!({
                        "tenantId": tenant_id,
                        "subscriptionId": subscription_id,
                        "resourceGroup": resource_group,
                        "useWorkloadIdentityExtension": true,
                    })
                    .to_string(),
                ),
            )]),
            mount: Some("/etc/kubernetes"),
            annotations: BTreeMap::from([(
                AZURE_CLIENT_ID_ANNOTATION.into(),
                external_dns_client_id.clone(),
            )]),
            pod_labels: BTreeMap::from([(AZURE_USE_LABEL.into(), "true".into())]),
            ..Backend::default()
        },
        DnsSolver::Rfc2136 {
            nameserver,
            tsig_key_name,
            tsig_algorithm,
            tsig_secret,
        } => {
            let (host, port) = nameserver.rsplit_once(':').unwrap_or((nameserver, "53"));
            Backend {
                args: vec![
                    "--provider=rfc2136".into(),
                    format!("--rfc2136-host={host}"),
                    format!("--rfc2136-port={port}"),
                    format!("--rfc2136-zone={zone}"),
                    format!("--rfc2136-tsig-keyname={tsig_key_name}"),
                    format!(
                        "--rfc2136-tsig-secret-alg={}",
                        tsig_algorithm
                            .to_ascii_lowercase()
                            .replace("hmacsha", "hmac-sha")
                    ),
                    "--rfc2136-tsig-axfr".into(),
                ],
                env: vec![env_secret(
                    "EXTERNAL_DNS_RFC2136_TSIG_SECRET",
                    "tsig-secret",
                )],
                secret: BTreeMap::from([("tsig-secret".into(), tsig_secret.clone())]),
                ..Backend::default()
            }
        }
        _ => {
            return Err(Error::invalid_input(
                "external-dns has no backend for this DNS solver",
            ))
        }
    })
}

/// external-dns for the zone, as typed objects: namespace, credentials Secret (if
/// any), ServiceAccount, ClusterRole, ClusterRoleBinding, Deployment.
pub fn external_dns_objects(spec: &ExternalDnsSpec, solver: &DnsSolver) -> Result<Vec<Value>> {
    let ns = spec.namespace.as_str();
    let b = backend(solver, &spec.domain_filter)?;
    let mut out = vec![namespace(ns)?];
    if !b.secret.is_empty() {
        out.push(secret(EXTERNAL_DNS, ns, "Opaque", &b.secret)?);
    }
    let mut sa_meta = meta(EXTERNAL_DNS, Some(ns));
    if !b.annotations.is_empty() {
        sa_meta.annotations = Some(b.annotations.clone());
    }
    out.push(to_value(&ServiceAccount {
        metadata: sa_meta,
        ..ServiceAccount::default()
    })?);
    let read = |groups: &[&str], resources: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: ["get", "watch", "list"].map(String::from).to_vec(),
        ..PolicyRule::default()
    };
    out.push(to_value(&ClusterRole {
        metadata: meta(EXTERNAL_DNS, None),
        rules: Some(vec![
            read(&[""], &["services", "endpoints", "pods", "nodes"]),
            read(&["discovery.k8s.io"], &["endpointslices"]),
            read(&["extensions", "networking.k8s.io"], &["ingresses"]),
        ]),
        ..ClusterRole::default()
    })?);
    out.push(to_value(&ClusterRoleBinding {
        metadata: meta(EXTERNAL_DNS, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: EXTERNAL_DNS.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: EXTERNAL_DNS.into(),
            namespace: Some(ns.into()),
            api_group: None,
        }]),
    })?);
    let labels = BTreeMap::from([(
        "app.kubernetes.io/name".to_string(),
        EXTERNAL_DNS.to_string(),
    )]);
    let mut args = vec![
        "--source=service".to_string(),
        "--source=ingress".into(),
        format!("--domain-filter={}", spec.domain_filter),
        "--registry=txt".into(),
        format!("--txt-owner-id={}", spec.txt_owner_id),
        "--policy=sync".into(),
        "--log-format=json".into(),
    ];
    args.extend(b.args);
    let (volumes, mounts) = match b.mount {
        Some(path) => (
            Some(vec![Volume {
                name: "credentials".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(EXTERNAL_DNS.into()),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            Some(vec![VolumeMount {
                name: "credentials".into(),
                mount_path: path.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            }]),
        ),
        None => (None, None),
    };
    let mut dmeta = meta(EXTERNAL_DNS, Some(ns));
    if let Some(l) = dmeta.labels.as_mut() {
        l.extend(labels.clone());
    }
    out.push(to_value(&Deployment {
        metadata: dmeta,
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            strategy: Some(k8s_openapi::api::apps::v1::DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.into_iter().chain(b.pod_labels).collect()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(EXTERNAL_DNS.into()),
                    // The services pool (`gitpod.io/workload_services`).
                    node_selector: Some(BTreeMap::from([(
                        "gitpod.io/workload_services".to_string(),
                        "true".to_string(),
                    )])),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65534),
                        fs_group: Some(65534),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![Container {
                        name: EXTERNAL_DNS.into(),
                        image: Some(spec.image.clone()),
                        args: Some(args),
                        env: (!b.env.is_empty()).then_some(b.env),
                        volume_mounts: mounts,
                        security_context: Some(SecurityContext {
                            allow_privilege_escalation: Some(false),
                            read_only_root_filesystem: Some(true),
                            ..SecurityContext::default()
                        }),
                        ..Container::default()
                    }],
                    volumes,
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    })?);
    Ok(out)
}

/// The spec an external-dns Deployment on the server runs with (for drift): `desired`
/// with the image and flags found.
pub fn external_dns_actual(deployment: &Value, desired: &ExternalDnsSpec) -> ExternalDnsSpec {
    let c = deployment.pointer("/spec/template/spec/containers/0");
    let args: Vec<&str> = c
        .and_then(|c| c.get("args"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let flag = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(name))
            .unwrap_or_default()
            .to_string()
    };
    let mut s = desired.clone();
    s.image = c
        .and_then(|c| c.get("image"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .into();
    s.domain_filter = flag("--domain-filter=");
    s.txt_owner_id = flag("--txt-owner-id=");
    s
}
