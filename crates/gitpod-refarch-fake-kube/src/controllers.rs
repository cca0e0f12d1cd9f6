//! What the API server's defaulting and validation, and the few simulated
//! controllers, do: namespaces, Services (cluster IPs, cloud load balancers),
//! Deployments, CRDs, the cert-manager webhook and cert-manager itself.

use std::time::Instant;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::catalog::{self, ResType};
use crate::status::{ApiError, ApiResult};
use crate::store::{i64_at, meta_mut, now_rfc3339, rfc3339, str_at, Key, Store};

/// The finalizer the service controller puts on `type: LoadBalancer` Services.
pub(crate) const LB_FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";

/// Groups whose objects the cert-manager webhook validates.
const CERT_MANAGER_GROUPS: &[&str] = &["cert-manager.io", "acme.cert-manager.io"];

/// True while the simulated cert-manager webhook answers.
pub(crate) fn webhook_ready(st: &Store) -> bool {
    let key = Store::key(
        "apps",
        "deployments",
        &st.config.webhook_namespace,
        &st.config.webhook_deployment,
    );
    st.objects.get(&key).is_some_and(|d| {
        d.pointer("/metadata/deletionTimestamp").is_none()
            && i64_at(d, "/status/readyReplicas").unwrap_or(0) > 0
    })
}

/// The admission step: refuse writes of cert-manager objects while its webhook is down.
pub(crate) fn admit(st: &Store, t: &ResType) -> ApiResult<()> {
    if !CERT_MANAGER_GROUPS.contains(&t.group.as_str()) || webhook_ready(st) {
        return Ok(());
    }
    let ns = &st.config.webhook_namespace;
    let svc_key = Store::key("", "services", ns, &st.config.webhook_deployment);
    let ip = st
        .objects
        .get(&svc_key)
        .map(|s| str_at(s, "/spec/clusterIP").to_string())
        .filter(|ip| !ip.is_empty() && ip != "None")
        .unwrap_or_else(|| "10.96.0.254".to_string());
    Err(ApiError::internal(format!(
        "Internal error occurred: failed calling webhook \"webhook.cert-manager.io\": failed to call webhook: Post \"https://{}.{ns}.svc:443/mutate?timeout=10s\": dial tcp {ip}:443: connect: connection refused",
        st.config.webhook_deployment
    )))
}

fn invalid(t: &ResType, name: &str, field: &str, msg: &str) -> ApiError {
    ApiError::invalid(
        &t.kind,
        &t.group,
        name,
        &[(field.to_string(), msg.to_string())],
    )
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label)
}

/// Check an object's name for its type.
pub(crate) fn validate_name(t: &ResType, name: &str) -> ApiResult<()> {
    let ok = match (t.group.as_str(), t.plural.as_str()) {
        ("", "namespaces") | ("", "services") => is_label(name),
        ("rbac.authorization.k8s.io", _) => {
            !name.is_empty()
                && !name.contains('/')
                && !name.contains('%')
                && name != "."
                && name != ".."
        }
        _ => is_subdomain(name),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            t,
            name,
            "metadata.name",
            &format!("Invalid value: \"{name}\": a lowercase RFC 1123 name must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ))
    }
}

/// Defaulting and validation of one write. `old` is the stored object on update.
/// Runs after the server-owned fields (and, for types with a status subresource, the
/// status) were restored.
pub(crate) fn on_write(
    st: &mut Store,
    t: &ResType,
    old: Option<&Value>,
    obj: &mut Value,
) -> ApiResult<()> {
    let name = str_at(obj, "/metadata/name").to_string();
    check_finalizers(t, &name, old, obj)?;
    check_owner_references(t, &name, obj)?;
    match (t.group.as_str(), t.plural.as_str()) {
        ("", "namespaces") => {
            let meta = meta_mut(obj);
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Value::Object(l) = labels {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            if obj.pointer("/spec/finalizers").is_none() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            if obj.pointer("/status/phase").is_none() {
                obj["status"] = json!({"phase": "Active"});
            }
        }
        ("", "secrets") => {
            if let Some(Value::Object(sd)) =
                obj.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                let data = obj
                    .as_object_mut()
                    .map(|o| o.entry("data").or_insert_with(|| json!({})));
                if let Some(Value::Object(d)) = data {
                    for (k, v) in sd {
                        let raw = v.as_str().unwrap_or_default().to_string();
                        d.insert(
                            k,
                            json!(base64::engine::general_purpose::STANDARD.encode(raw)),
                        );
                    }
                }
            }
            if str_at(obj, "/type").is_empty() {
                obj["type"] = json!("Opaque");
            }
            if let Some(old) = old {
                if str_at(old, "/type") != str_at(obj, "/type") {
                    return Err(invalid(
                        t,
                        &name,
                        "type",
                        "Invalid value: field is immutable",
                    ));
                }
            }
            let required: &[&str] = match str_at(obj, "/type") {
                "kubernetes.io/tls" => &["tls.crt", "tls.key"],
                "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
                _ => &[],
            };
            for k in required {
                if obj.pointer("/data").and_then(|d| d.get(*k)).is_none() {
                    return Err(invalid(t, &name, &format!("data[{k}]"), "Required value"));
                }
            }
            if let Some(Value::Object(d)) = obj.get("data") {
                for (k, v) in d {
                    let ok = v.as_str().is_some_and(|s| {
                        base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                    });
                    if !ok {
                        return Err(ApiError::bad_request(format!(
                            "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data[{k:?}]"
                        )));
                    }
                }
            }
        }
        ("", "services") => service_defaults(st, &name, t, old, obj)?,
        ("", "events") | ("events.k8s.io", "events") => validate_event(t, &name, old, obj)?,
        ("apps", "deployments") => {
            let sel = obj.pointer("/spec/selector/matchLabels").cloned();
            let has_exprs = obj
                .pointer("/spec/selector/matchExpressions")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            let labels = obj
                .pointer("/spec/template/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            match &sel {
                Some(Value::Object(m)) if !m.is_empty() => {
                    for (k, v) in m {
                        if labels.get(k) != Some(v) {
                            return Err(invalid(
                                t,
                                &name,
                                "spec.template.metadata.labels",
                                "Invalid value: `selector` does not match template `labels`",
                            ));
                        }
                    }
                }
                _ if has_exprs => {}
                _ => return Err(invalid(t, &name, "spec.selector", "Required value")),
            }
            let containers = obj
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if containers == 0 {
                return Err(invalid(
                    t,
                    &name,
                    "spec.template.spec.containers",
                    "Required value",
                ));
            }
            if let Some(old) = old {
                if old.pointer("/spec/selector") != obj.pointer("/spec/selector") {
                    return Err(invalid(
                        t,
                        &name,
                        "spec.selector",
                        "Invalid value: field is immutable",
                    ));
                }
            }
            let spec = &mut obj["spec"];
            if spec.get("replicas").is_none() {
                spec["replicas"] = json!(1);
            }
            if spec.get("strategy").is_none() {
                spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}});
            }
            if spec.get("revisionHistoryLimit").is_none() {
                spec["revisionHistoryLimit"] = json!(10);
            }
            if spec.get("progressDeadlineSeconds").is_none() {
                spec["progressDeadlineSeconds"] = json!(600);
            }
        }
        ("rbac.authorization.k8s.io", "clusterrolebindings" | "rolebindings") => {
            if str_at(obj, "/roleRef/name").is_empty() || str_at(obj, "/roleRef/kind").is_empty() {
                return Err(invalid(t, &name, "roleRef", "Required value"));
            }
            if let Some(old) = old {
                if old.get("roleRef") != obj.get("roleRef") {
                    return Err(invalid(
                        t,
                        &name,
                        "roleRef",
                        &format!("Invalid value: {}: cannot change roleRef", obj["roleRef"]),
                    ));
                }
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => validate_crd(t, &name, old, obj)?,
        _ => {}
    }
    Ok(())
}

fn validate_crd(t: &ResType, name: &str, old: Option<&Value>, obj: &Value) -> ApiResult<()> {
    let mut causes: Vec<(String, String)> = Vec::new();
    let group = str_at(obj, "/spec/group");
    let plural = str_at(obj, "/spec/names/plural");
    if group.is_empty() {
        causes.push(("spec.group".into(), "Required value".into()));
    }
    if plural.is_empty() {
        causes.push(("spec.names.plural".into(), "Required value".into()));
    }
    if str_at(obj, "/spec/names/kind").is_empty() {
        causes.push(("spec.names.kind".into(), "Required value".into()));
    }
    if !matches!(str_at(obj, "/spec/scope"), "Cluster" | "Namespaced") {
        causes.push((
            "spec.scope".into(),
            "Unsupported value: must be Cluster or Namespaced".into(),
        ));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let versions = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push((
            "spec.versions".into(),
            "Invalid value: must have exactly one version marked as storage version".into(),
        ));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .count();
        if storage != 1 {
            causes.push((
                "spec.versions".into(),
                "Invalid value: must have exactly one version marked as storage version".into(),
            ));
        }
        for (i, v) in versions.iter().enumerate() {
            if v.pointer("/schema/openAPIV3Schema").is_none() {
                causes.push((
                    format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "Required value: schemas are required".into(),
                ));
            }
        }
    }
    if let Some(old) = old {
        if str_at(old, "/spec/group") != group {
            causes.push((
                "spec.group".into(),
                "Invalid value: field is immutable".into(),
            ));
        }
        if str_at(old, "/spec/names/plural") != plural {
            causes.push((
                "status.acceptedNames.plural".into(),
                "Invalid value: field is immutable".into(),
            ));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&t.kind, &t.group, name, &causes))
    }
}

fn service_defaults(
    st: &mut Store,
    name: &str,
    t: &ResType,
    old: Option<&Value>,
    obj: &mut Value,
) -> ApiResult<()> {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let svc_type = match str_at(obj, "/spec/type") {
        "" => "ClusterIP".to_string(),
        s => s.to_string(),
    };
    if !matches!(
        svc_type.as_str(),
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        return Err(invalid(
            t,
            name,
            "spec.type",
            &format!("Unsupported value: \"{svc_type}\""),
        ));
    }
    obj["spec"]["type"] = json!(svc_type);
    // The cluster IP is kept from the stored object; a new one is allocated.
    let old_ip = old.map(|o| str_at(o, "/spec/clusterIP").to_string());
    let ip = match (str_at(obj, "/spec/clusterIP"), old_ip) {
        (_, Some(ip)) if !ip.is_empty() => ip,
        ("None", _) => "None".to_string(),
        ("", _) if svc_type != "ExternalName" => {
            st.next_cluster_ip += 1;
            let n = st.next_cluster_ip;
            format!("10.96.{}.{}", (n / 254) % 256, n % 254 + 1)
        }
        (s, _) => s.to_string(),
    };
    if !ip.is_empty() {
        obj["spec"]["clusterIP"] = json!(ip);
        obj["spec"]["clusterIPs"] = json!([ip]);
    }
    if obj.pointer("/spec/sessionAffinity").is_none() {
        obj["spec"]["sessionAffinity"] = json!("None");
    }
    if svc_type != "ExternalName" {
        obj["spec"]["ipFamilies"] = json!(["IPv4"]);
        obj["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        obj["spec"]["internalTrafficPolicy"] = obj
            .pointer("/spec/internalTrafficPolicy")
            .cloned()
            .unwrap_or(json!("Cluster"));
    }
    let old_ports: Vec<Value> = old
        .and_then(|o| o.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let wants_node_port = matches!(svc_type.as_str(), "NodePort" | "LoadBalancer");
    if let Some(Value::Array(ports)) = obj.pointer_mut("/spec/ports") {
        for p in ports.iter_mut() {
            if p.get("protocol").is_none() {
                p["protocol"] = json!("TCP");
            }
            if p.get("targetPort").is_none() {
                p["targetPort"] = p.get("port").cloned().unwrap_or(Value::Null);
            }
            if wants_node_port && p.get("nodePort").is_none() {
                let same = old_ports
                    .iter()
                    .find(|o| o.get("port") == p.get("port") && o.get("name") == p.get("name"))
                    .and_then(|o| o.get("nodePort").cloned());
                let np = match same {
                    Some(np) => np,
                    None => {
                        st.next_node_port += 1;
                        json!(st.next_node_port)
                    }
                };
                p["nodePort"] = np;
            }
        }
    }
    if svc_type == "LoadBalancer" {
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            add_finalizer(obj, LB_FINALIZER);
        }
        if obj.pointer("/status/loadBalancer").is_none() {
            obj["status"] = json!({"loadBalancer": {}});
        }
    } else {
        remove_finalizer(obj, LB_FINALIZER);
        obj["status"] = json!({"loadBalancer": {}});
    }
    Ok(())
}

/// The API server's validation of an Event: the legacy rules for both APIs, and
/// for `events.k8s.io/v1` the strict ones (required `eventTime`, `type`, no
/// `deprecated*` fields, a valid `series`, immutable fields on update).
fn validate_event(t: &ResType, name: &str, old: Option<&Value>, obj: &Value) -> ApiResult<()> {
    let strict = t.group == "events.k8s.io";
    let f = |core: &'static str, events: &'static str| if strict { events } else { core };
    let (involved, note, controller) = (
        f("involvedObject", "regarding"),
        f("message", "note"),
        f("reportingComponent", "reportingController"),
    );
    let text = |field: &str| str_at(obj, &format!("/{field}")).to_string();
    let ns = str_at(obj, "/metadata/namespace");
    let involved_ns = str_at(obj, &format!("/{involved}/namespace"));
    let mut errs: Vec<(String, String)> = Vec::new();
    let required = |errs: &mut Vec<(String, String)>, field: &str| {
        errs.push((field.to_string(), "Required value".to_string()));
    };
    let mismatch = format!("Invalid value: \"{involved_ns}\": does not match event.namespace");
    if text("eventTime").is_empty() {
        let ok = if involved_ns.is_empty() {
            ns.is_empty() || ns == "default"
        } else {
            ns == involved_ns
        };
        if !ok {
            errs.push((format!("{involved}.namespace"), mismatch));
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push((format!("{involved}.namespace"), mismatch));
        }
        let rc = text(controller);
        if rc.is_empty() {
            required(&mut errs, controller);
        } else if !is_qualified_name(&rc) {
            errs.push((
                controller.to_string(),
                format!("Invalid value: \"{rc}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
            ));
        }
        for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
            let v = text(field);
            if v.is_empty() {
                required(&mut errs, field);
            } else if v.len() > limit {
                errs.push((
                    field.to_string(),
                    format!("Invalid value: \"\": can have at most {limit} characters"),
                ));
            }
        }
        if text(note).len() > 1024 {
            errs.push((
                note.to_string(),
                "Invalid value: \"\": can have at most 1024 characters".to_string(),
            ));
        }
    }
    if strict {
        let series_changed = old.is_none_or(|o| o.get("series") != obj.get("series"));
        if let Some(series) = obj.get("series").filter(|s| !s.is_null()) {
            if series_changed {
                if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
                    errs.push((
                        "series.count".into(),
                        "Invalid value: \"\": should be at least 2".into(),
                    ));
                }
                if str_at(series, "/lastObservedTime").is_empty() {
                    required(&mut errs, "series.lastObservedTime");
                }
            }
        }
        match old {
            None => {
                if text("eventTime").is_empty() {
                    required(&mut errs, "eventTime");
                }
                let ty = text("type");
                if ty != "Normal" && ty != "Warning" {
                    errs.push((
                        "type".into(),
                        format!("Invalid value: \"\": has invalid value: {ty}"),
                    ));
                }
                for field in [
                    "deprecatedFirstTimestamp",
                    "deprecatedLastTimestamp",
                    "deprecatedCount",
                    "deprecatedSource",
                ] {
                    let set = obj.get(field).is_some_and(|v| {
                        !v.is_null() && *v != json!(0) && *v != json!({}) && *v != json!("")
                    });
                    if set {
                        errs.push((
                            field.into(),
                            "Invalid value: \"\": needs to be unset".into(),
                        ));
                    }
                }
            }
            Some(old) => {
                for field in [
                    "regarding",
                    "related",
                    "reason",
                    "note",
                    "type",
                    "action",
                    "reportingController",
                    "reportingInstance",
                    "eventTime",
                    "deprecatedSource",
                    "deprecatedFirstTimestamp",
                    "deprecatedLastTimestamp",
                    "deprecatedCount",
                ] {
                    if old.get(field) != obj.get(field) {
                        errs.push((field.into(), "Invalid value: field is immutable".into()));
                    }
                }
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&t.kind, &t.group, name, &errs))
    }
}

/// A qualified name (`[prefix/]name`), as `metadata.finalizers` entries must be.
fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    name_ok && prefix.is_none_or(|p| !p.is_empty() && is_subdomain(p))
}

/// The API server's rules for `metadata.finalizers`: each a qualified name, and
/// none added to an object that is being deleted.
/// `metadata.ownerReferences` as the API server validates them: apiVersion (with a
/// version), kind, name and uid required; at most one `controller: true`.
fn check_owner_references(t: &ResType, name: &str, obj: &Value) -> ApiResult<()> {
    let Some(list) = obj
        .get("metadata")
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
    else {
        return Ok(());
    };
    let mut causes = Vec::new();
    let field = "metadata.ownerReferences";
    for r in list {
        let api_version = str_at(r, "/apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or("");
        let checks = [
            (
                "apiVersion",
                api_version,
                version.is_empty(),
                "version must not be empty",
            ),
            (
                "kind",
                str_at(r, "/kind"),
                str_at(r, "/kind").is_empty(),
                "kind must not be empty",
            ),
            (
                "name",
                str_at(r, "/name"),
                str_at(r, "/name").is_empty(),
                "name must not be empty",
            ),
            (
                "uid",
                str_at(r, "/uid"),
                str_at(r, "/uid").is_empty(),
                "uid must not be empty",
            ),
        ];
        for (f, value, bad, message) in checks {
            if bad {
                causes.push((
                    format!("{field}.{f}"),
                    format!("Invalid value: \"{value}\": {message}"),
                ));
            }
        }
    }
    let controllers: Vec<String> = list
        .iter()
        .filter(|r| r.get("controller") == Some(&json!(true)))
        .map(|r| format!("{}/{}", str_at(r, "/kind"), str_at(r, "/name")))
        .collect();
    if controllers.len() > 1 {
        causes.push((
            field.to_string(),
            format!(
                "Invalid value: \"ownerReferences\": Only one reference can have Controller \
                 set to true. Found \"true\" in references for {}",
                controllers
                    .iter()
                    .take(2)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        ));
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(&t.kind, &t.group, name, &causes))
}

fn check_finalizers(t: &ResType, name: &str, old: Option<&Value>, obj: &Value) -> ApiResult<()> {
    let now = finalizers(obj);
    if let Some((i, bad)) = now.iter().enumerate().find(|(_, f)| !is_qualified_name(f)) {
        return Err(invalid(
            t,
            name,
            &format!("metadata.finalizers[{i}]"),
            &format!(
                "Invalid value: \"{bad}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
            ),
        ));
    }
    let Some(old) = old else {
        return Ok(());
    };
    if old.pointer("/metadata/deletionTimestamp").is_none() {
        return Ok(());
    }
    let before = finalizers(old);
    let mut added: Vec<String> = now.into_iter().filter(|f| !before.contains(f)).collect();
    if added.is_empty() {
        return Ok(());
    }
    added.sort();
    added.dedup();
    let listed: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
    Err(invalid(
        t,
        name,
        "metadata.finalizers",
        &format!(
            "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
            listed.join(", ")
        ),
    ))
}

/// The finalizers of an object.
pub(crate) fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// True when an object being deleted can go now: no finalizers hold it. Namespaces
/// only go through their own finalization.
pub(crate) fn releasable(key: &Key, obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
        && finalizers(obj).is_empty()
        && !(key.group.is_empty() && key.plural == "namespaces")
}

fn add_finalizer(obj: &mut Value, f: &str) {
    let mut fs = finalizers(obj);
    if !fs.iter().any(|x| x == f) {
        fs.push(f.to_string());
        meta_mut(obj).insert("finalizers".into(), json!(fs));
    }
}

fn remove_finalizer(obj: &mut Value, f: &str) {
    let fs = finalizers(obj);
    if fs.iter().any(|x| x == f) {
        let rest: Vec<String> = fs.into_iter().filter(|x| x != f).collect();
        let meta = meta_mut(obj);
        if rest.is_empty() {
            meta.remove("finalizers");
        } else {
            meta.insert("finalizers".into(), json!(rest));
        }
    }
}

/// Timers and side tables after an object was stored (created or changed).
pub(crate) fn after_write(st: &mut Store, key: &Key, now: Instant) {
    let watched = matches!(
        (key.group.as_str(), key.plural.as_str()),
        ("apiextensions.k8s.io", "customresourcedefinitions")
            | ("apps", "deployments")
            | ("", "services")
    );
    if !watched {
        return;
    }
    let Some(obj) = st.objects.get(key).cloned() else {
        return;
    };
    let uid = str_at(&obj, "/metadata/uid").to_string();
    match (key.group.as_str(), key.plural.as_str()) {
        ("apiextensions.k8s.io", "customresourcedefinitions")
            if !catalog::crd_established(&obj) && !st.crd_established_at.contains_key(&uid) =>
        {
            let at = now + st.config.crd_established_delay;
            st.crd_established_at.insert(uid, at);
        }
        ("apps", "deployments") => {
            let generation = i64_at(&obj, "/metadata/generation").unwrap_or(1);
            let observed = i64_at(&obj, "/status/observedGeneration").unwrap_or(0);
            let pending = st.deployment_ready_at.get(&uid).map(|(g, _)| *g);
            if observed < generation && pending != Some(generation) {
                let webhook = key.namespace == st.config.webhook_namespace
                    && key.name == st.config.webhook_deployment;
                let delay = if webhook {
                    st.config.webhook_ready_delay
                } else {
                    st.config.deployment_ready_delay
                };
                st.deployment_ready_at
                    .insert(uid, (generation, now + delay));
            }
        }
        ("", "services") => {
            let is_lb = str_at(&obj, "/spec/type") == "LoadBalancer";
            if is_lb && !st.load_balancers.contains_key(&uid) {
                let n = st.next_lb_ip;
                st.next_lb_ip = n % 254 + 1;
                let lb = crate::store::CloudLb {
                    ip: format!("203.0.113.{n}"),
                    ready_at: now + st.config.lb_provision_delay,
                    release_at: None,
                };
                st.load_balancers.insert(uid.clone(), lb);
            } else if !is_lb {
                st.load_balancers.remove(&uid);
            }
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                if let Some(lb) = st.load_balancers.get_mut(&uid) {
                    if lb.release_at.is_none() {
                        lb.release_at = Some(now + st.config.lb_delete_delay);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Remove an object that has no finalizers left, with what depends on it.
pub(crate) fn remove_cascade(st: &mut Store, key: &Key) {
    let now = Instant::now();
    // A CRD's objects go first, while their type is still served, so that the
    // garbage collector resolves the references to them.
    if key.group == "apiextensions.k8s.io" && key.plural == "customresourcedefinitions" {
        if let Some(crd) = st.objects.get(key) {
            let group = str_at(crd, "/spec/group").to_string();
            let plural = str_at(crd, "/spec/names/plural").to_string();
            for k in st.keys_of(&group, &plural) {
                if let Some(o) = st.remove(&k) {
                    crate::gc::owner_removed(st, str_at(&o, "/metadata/uid"), now);
                }
            }
        }
    }
    let Some(obj) = st.remove(key) else {
        return;
    };
    // The garbage collector: what it owned goes too (see `gc.rs`).
    crate::gc::owner_removed(st, str_at(&obj, "/metadata/uid"), now);
}

/// Change a stored object with `f`; bump its resourceVersion if it changed. Removes
/// it if it is being deleted and has no finalizers left.
pub(crate) fn controller_write(
    st: &mut Store,
    key: &Key,
    now: Instant,
    f: impl FnOnce(&mut Value),
) {
    let Some(old) = st.objects.get(key).cloned() else {
        return;
    };
    let mut new = old.clone();
    f(&mut new);
    if new == old {
        return;
    }
    if releasable(key, &new) {
        remove_cascade(st, key);
        return;
    }
    let rv = st.next_rv();
    meta_mut(&mut new).insert("resourceVersion".into(), json!(rv));
    st.objects.insert(key.clone(), new);
    after_write(st, key, now);
}

/// Mark an object as being deleted (it has finalizers).
pub(crate) fn start_deletion(st: &mut Store, key: &Key, now: Instant) {
    controller_write(st, key, now, |o| {
        if o.pointer("/metadata/deletionTimestamp").is_none() {
            let meta = meta_mut(o);
            meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            // Marking an object for deletion changes how its controllers treat it:
            // the API server bumps a generation it has.
            if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
                meta.insert("generation".into(), json!(g + 1));
            }
        }
    });
}

/// Mark a namespace Terminating and schedule the removal of its contents.
pub(crate) fn delete_namespace(st: &mut Store, key: &Key, now: Instant) {
    controller_write(st, key, now, |o| {
        if o.pointer("/metadata/deletionTimestamp").is_none() {
            meta_mut(o).insert("deletionTimestamp".into(), json!(now_rfc3339()));
        }
        o["status"] = json!({"phase": "Terminating"});
    });
    let at = now + st.config.namespace_delete_delay;
    st.namespace_finalize_at
        .entry(key.name.clone())
        .or_insert(at);
}

fn find_uid(st: &Store, group: &str, plural: &str, uid: &str) -> Option<Key> {
    st.objects
        .iter()
        .find(|(k, v)| k.group == group && k.plural == plural && str_at(v, "/metadata/uid") == uid)
        .map(|(k, _)| k.clone())
}

fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now_rfc3339(),
    })
}

/// Run every simulated controller whose time has come.
pub(crate) fn settle(st: &mut Store, now: Instant) {
    settle_crds(st, now);
    settle_deployments(st, now);
    settle_load_balancers(st, now);
    settle_namespaces(st, now);
    settle_issuers(st, now);
    settle_certificates(st, now);
    crate::gc::settle(st, now);
}

fn settle_crds(st: &mut Store, now: Instant) {
    let due: Vec<String> = st
        .crd_established_at
        .iter()
        .filter(|(_, at)| **at <= now)
        .map(|(u, _)| u.clone())
        .collect();
    for uid in due {
        st.crd_established_at.remove(&uid);
        let Some(key) = find_uid(
            st,
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            &uid,
        ) else {
            continue;
        };
        controller_write(st, &key, now, |crd| {
            let mut names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
            let kind = str_at(&names, "/kind").to_string();
            if names.get("singular").is_none() {
                names["singular"] = json!(kind.to_lowercase());
            }
            if names.get("listKind").is_none() {
                names["listKind"] = json!(format!("{kind}List"));
            }
            let stored: Vec<Value> = crd
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                        .filter_map(|v| v.get("name").cloned())
                        .collect()
                })
                .unwrap_or_default();
            crd["status"] = json!({
                "conditions": [
                    condition("NamesAccepted", "True", "NoConflicts", "no conflicts found"),
                    condition("Established", "True", "InitialNamesAccepted", "the initial names have been accepted"),
                ],
                "acceptedNames": names,
                "storedVersions": stored,
            });
        });
    }
}

fn settle_deployments(st: &mut Store, now: Instant) {
    let due: Vec<(String, i64)> = st
        .deployment_ready_at
        .iter()
        .filter(|(_, (_, at))| *at <= now)
        .map(|(u, (g, _))| (u.clone(), *g))
        .collect();
    for (uid, generation) in due {
        st.deployment_ready_at.remove(&uid);
        let Some(key) = find_uid(st, "apps", "deployments", &uid) else {
            continue;
        };
        controller_write(st, &key, now, |d| {
            if i64_at(d, "/metadata/generation") != Some(generation) {
                return;
            }
            let n = i64_at(d, "/spec/replicas").unwrap_or(1);
            let mut status = Map::new();
            status.insert("observedGeneration".into(), json!(generation));
            if n > 0 {
                for f in [
                    "replicas",
                    "updatedReplicas",
                    "readyReplicas",
                    "availableReplicas",
                ] {
                    status.insert(f.into(), json!(n));
                }
            }
            status.insert(
                "conditions".into(),
                json!([
                    condition(
                        "Available",
                        "True",
                        "MinimumReplicasAvailable",
                        "Deployment has minimum availability."
                    ),
                    condition(
                        "Progressing",
                        "True",
                        "NewReplicaSetAvailable",
                        &format!(
                            "ReplicaSet \"{}-5d8f7c9b6d\" has successfully progressed.",
                            str_at(d, "/metadata/name")
                        )
                    ),
                ]),
            );
            d["status"] = Value::Object(status);
        });
    }
}

fn settle_load_balancers(st: &mut Store, now: Instant) {
    let lbs: Vec<(String, crate::store::CloudLb)> = st
        .load_balancers
        .iter()
        .map(|(u, l)| (u.clone(), l.clone()))
        .collect();
    for (uid, lb) in lbs {
        let Some(key) = find_uid(st, "", "services", &uid) else {
            st.load_balancers.remove(&uid);
            continue;
        };
        if let Some(at) = lb.release_at {
            if at <= now {
                st.load_balancers.remove(&uid);
                controller_write(st, &key, now, |s| {
                    remove_finalizer(s, LB_FINALIZER);
                    s["status"] = json!({"loadBalancer": {}});
                });
            }
            continue;
        }
        if lb.ready_at <= now {
            controller_write(st, &key, now, |s| {
                if s.pointer("/status/loadBalancer/ingress").is_none() {
                    s["status"] =
                        json!({"loadBalancer": {"ingress": [{"ip": lb.ip, "ipMode": "VIP"}]}});
                }
            });
        }
    }
}

fn settle_namespaces(st: &mut Store, now: Instant) {
    let due: Vec<String> = st
        .namespace_finalize_at
        .iter()
        .filter(|(_, at)| **at <= now)
        .map(|(n, _)| n.clone())
        .collect();
    for ns in due {
        let inside: Vec<Key> = st
            .objects
            .keys()
            .filter(|k| k.namespace == ns)
            .cloned()
            .collect();
        for k in &inside {
            let Some(obj) = st.objects.get(k) else {
                continue;
            };
            if finalizers(obj).is_empty() {
                remove_cascade(st, k);
            } else {
                start_deletion(st, k, now);
            }
        }
        if !st.objects.keys().any(|k| k.namespace == ns) {
            st.namespace_finalize_at.remove(&ns);
            remove_cascade(st, &Store::key("", "namespaces", "", &ns));
        }
    }
}

fn settle_issuers(st: &mut Store, now: Instant) {
    let mut keys = st.keys_of("cert-manager.io", "clusterissuers");
    keys.extend(st.keys_of("cert-manager.io", "issuers"));
    for key in keys {
        let Some(issuer) = st.objects.get(&key) else {
            continue;
        };
        let uid = str_at(issuer, "/metadata/uid").to_string();
        let generation = i64_at(issuer, "/metadata/generation").unwrap_or(1);
        // Reconciled: its Ready condition is at the current generation.
        let current = cond_status(issuer, "Ready")
            .is_some_and(|c| c.get("observedGeneration") == Some(&json!(generation)));
        if current {
            st.issuers.remove(&uid);
            continue;
        }
        let due = match st.issuers.get(&uid) {
            Some((g, at)) if *g == generation => *at <= now,
            _ => {
                let at = now + st.config.issuer_ready_delay;
                st.issuers.insert(uid.clone(), (generation, at));
                at <= now
            }
        };
        if !due {
            continue;
        }
        st.issuers.remove(&uid);
        controller_write(st, &key, now, |i| {
            let (reason, message) = if i.pointer("/spec/acme").is_some() {
                (
                    "ACMEAccountRegistered",
                    "The ACME account was registered with the ACME server",
                )
            } else {
                ("IsReady", "Signing CA verified")
            };
            let mut c = condition("Ready", "True", reason, message);
            c["observedGeneration"] = json!(generation);
            if i.pointer("/spec/acme").is_some() {
                let server = str_at(i, "/spec/acme/server").to_string();
                let email = str_at(i, "/spec/acme/email").to_string();
                i["status"] = json!({
                    "conditions": [c],
                    "acme": {"uri": format!("{server}/acct/123456"), "lastRegisteredEmail": email},
                });
            } else {
                i["status"] = json!({"conditions": [c]});
            }
        });
    }
}

fn cond_status<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c.get("type") == Some(&json!(kind))))
}

const FAKE_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBfakeKUBEcertificateNOTvalidAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n";
const FAKE_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIBfakeKUBEprivateKEYnotVALIDAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END RSA PRIVATE KEY-----\n";

/// A self-signed certificate for `dns_names`, valid from `not_before` for `valid`
/// (what the issued Secret's `tls.crt` and `tls.key` hold, so that a reader sees the
/// `notAfter` the Certificate's status reports); the dummy PEM if rcgen refuses the
/// names.
fn issued_pem(
    dns_names: &[String],
    not_before: std::time::SystemTime,
    valid: std::time::Duration,
) -> (String, String) {
    self_signed(dns_names, not_before, valid)
        .unwrap_or_else(|| (FAKE_CERT.to_string(), FAKE_KEY.to_string()))
}

fn self_signed(
    dns_names: &[String],
    not_before: std::time::SystemTime,
    valid: std::time::Duration,
) -> Option<(String, String)> {
    let key = rcgen::KeyPair::generate().ok()?;
    let mut params = rcgen::CertificateParams::new(dns_names.to_vec()).ok()?;
    params.not_before = not_before.into();
    params.not_after = (not_before + valid).into();
    let cert = params.self_signed(&key).ok()?;
    Some((cert.pem(), key.serialize_pem()))
}

fn short_hash(s: &str) -> u64 {
    // FNV-1a: stable names for generated objects.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn settle_certificates(st: &mut Store, now: Instant) {
    for key in st.keys_of("cert-manager.io", "certificates") {
        let Some(cert) = st.objects.get(&key).cloned() else {
            continue;
        };
        if cert.pointer("/metadata/deletionTimestamp").is_some()
            || st.namespace_finalize_at.contains_key(&key.namespace)
        {
            continue;
        }
        let uid = str_at(&cert, "/metadata/uid").to_string();
        let generation = i64_at(&cert, "/metadata/generation").unwrap_or(1);
        let secret_name = str_at(&cert, "/spec/secretName").to_string();
        let secret_key = Store::key("", "secrets", &key.namespace, &secret_name);
        let ready = cond_status(&cert, "Ready").is_some_and(|c| {
            c.get("status") == Some(&json!("True"))
                && c.get("observedGeneration") == Some(&json!(generation))
        });
        if ready && st.objects.contains_key(&secret_key) {
            continue;
        }
        let issuer_name = str_at(&cert, "/spec/issuerRef/name").to_string();
        let issuer_kind = match str_at(&cert, "/spec/issuerRef/kind") {
            "" => "Issuer".to_string(),
            k => k.to_string(),
        };
        let issuer_key = if issuer_kind == "ClusterIssuer" {
            Store::key("cert-manager.io", "clusterissuers", "", &issuer_name)
        } else {
            Store::key("cert-manager.io", "issuers", &key.namespace, &issuer_name)
        };
        let issuer = st.objects.get(&issuer_key).cloned();
        let pending_msg = match &issuer {
            None => format!("Issuing certificate as Secret does not exist; waiting for {issuer_kind} \"{issuer_name}\", which does not exist"),
            Some(_) => "Issuing certificate as Secret does not exist".to_string(),
        };
        let set_pending = |c: &mut Value| {
            let mut ready = condition("Ready", "False", "DoesNotExist", &pending_msg);
            ready["observedGeneration"] = json!(generation);
            let mut issuing = condition("Issuing", "True", "DoesNotExist", &pending_msg);
            issuing["observedGeneration"] = json!(generation);
            let same = cond_status(c, "Ready").and_then(|r| r.get("message"))
                == Some(&json!(pending_msg))
                && cond_status(c, "Ready").and_then(|r| r.get("observedGeneration"))
                    == Some(&json!(generation));
            if !same {
                c["status"]["conditions"] = json!([ready, issuing]);
            }
        };
        let Some(issuer) = issuer else {
            st.certificates.remove(&uid);
            controller_write(st, &key, now, set_pending);
            continue;
        };
        let progress = st.certificates.get(&uid).cloned();
        let due = match progress {
            Some(p) if p.generation == generation => p.issue_at <= now,
            _ => {
                let at = now + st.config.certificate_ready_delay;
                st.certificates.insert(
                    uid.clone(),
                    crate::store::CertProgress {
                        generation,
                        issue_at: at,
                    },
                );
                controller_write(st, &key, now, set_pending);
                at <= now
            }
        };
        if !due {
            continue;
        }
        let acme = issuer.pointer("/spec/acme").is_some();
        if let (true, Some(reason)) = (acme, st.config.acme_challenges_fail.clone()) {
            present_failing_challenge(st, &key, &cert, &issuer, &reason, now);
            continue;
        }
        issue(
            st,
            &key,
            &cert,
            &secret_key,
            &issuer_kind,
            &issuer_name,
            now,
        );
        st.certificates.remove(&uid);
    }
}

fn present_failing_challenge(
    st: &mut Store,
    key: &Key,
    cert: &Value,
    issuer: &Value,
    reason: &str,
    now: Instant,
) {
    let dns_name = cert
        .pointer("/spec/dnsNames/0")
        .and_then(Value::as_str)
        .unwrap_or_else(|| str_at(cert, "/spec/commonName"))
        .to_string();
    let h = short_hash(str_at(cert, "/metadata/uid"));
    let name = format!(
        "{}-1-{}-{}",
        key.name,
        h % 10_000_000_000,
        (h >> 20) % 10_000_000_000
    );
    let ckey = Store::key("acme.cert-manager.io", "challenges", &key.namespace, &name);
    if st.objects.contains_key(&ckey) {
        return;
    }
    let solver = issuer
        .pointer("/spec/acme/solvers/0")
        .cloned()
        .unwrap_or(json!({}));
    let kind = if solver.get("http01").is_some() {
        "HTTP-01"
    } else {
        "DNS-01"
    };
    let mut obj = json!({
        "apiVersion": "acme.cert-manager.io/v1",
        "kind": "Challenge",
        "metadata": {
            "name": name,
            "namespace": key.namespace,
            "labels": {"acme.cert-manager.io/certificate-name": key.name},
            "finalizers": ["finalizer.acme.cert-manager.io"],
        },
        "spec": {
            "authorizationURL": format!("{}/authz/{h}", str_at(issuer, "/spec/acme/server")),
            "dnsName": dns_name,
            "issuerRef": cert.pointer("/spec/issuerRef").cloned().unwrap_or(json!({})),
            "key": "fake-key-authorization",
            "solver": solver,
            "token": "fake-token",
            "type": kind,
            "url": format!("{}/chall/{h}", str_at(issuer, "/spec/acme/server")),
            "wildcard": dns_name.starts_with("*."),
        },
        "status": {
            "presented": false,
            "processing": true,
            "reason": reason,
            "state": "pending",
        },
    });
    // A Challenge is a custom resource: it has a generation.
    st.stamp_new(&mut obj, true);
    st.objects.insert(ckey.clone(), obj);
    after_write(st, &ckey, now);
}

fn issue(
    st: &mut Store,
    key: &Key,
    cert: &Value,
    secret_key: &Key,
    issuer_kind: &str,
    issuer_name: &str,
    now: Instant,
) {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let dns_names: Vec<String> = cert
        .pointer("/spec/dnsNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let annotations = json!({
        "cert-manager.io/alt-names": dns_names.join(","),
        "cert-manager.io/certificate-name": key.name,
        "cert-manager.io/common-name": str_at(cert, "/spec/commonName"),
        "cert-manager.io/issuer-group": "cert-manager.io",
        "cert-manager.io/issuer-kind": issuer_kind,
        "cert-manager.io/issuer-name": issuer_name,
    });
    let issued_at = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        );
    let (crt, tls_key) = issued_pem(
        &dns_names,
        issued_at,
        std::time::Duration::from_secs(90 * 86_400),
    );
    let data = json!({"tls.crt": b64(&crt), "tls.key": b64(&tls_key), "ca.crt": ""});
    if st.objects.contains_key(secret_key) {
        controller_write(st, secret_key, now, |s| {
            s["data"] = data.clone();
            s["type"] = json!("kubernetes.io/tls");
            let meta = meta_mut(s);
            let ann = meta.entry("annotations").or_insert_with(|| json!({}));
            if let (Value::Object(a), Value::Object(new)) = (ann, &annotations) {
                for (k, v) in new {
                    a.insert(k.clone(), v.clone());
                }
            }
        });
    } else {
        let mut secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": secret_key.name,
                "namespace": key.namespace,
                "annotations": annotations,
                "labels": {"controller.cert-manager.io/fao": "true"},
            },
            "type": "kubernetes.io/tls",
            "data": data,
        });
        st.stamp_new(&mut secret, false);
        st.objects.insert(secret_key.clone(), secret);
    }
    let generation = i64_at(cert, "/metadata/generation").unwrap_or(1);
    // The status's validity is the issued certificate's.
    let secs = issued_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    controller_write(st, key, now, |c| {
        let revision = i64_at(c, "/status/revision").unwrap_or(0) + 1;
        let mut ready = condition(
            "Ready",
            "True",
            "Ready",
            "Certificate is up to date and has not expired",
        );
        ready["observedGeneration"] = json!(generation);
        c["status"] = json!({
            "conditions": [ready],
            "notBefore": rfc3339(secs),
            "notAfter": rfc3339(secs + 90 * 86_400),
            "renewalTime": rfc3339(secs + 60 * 86_400),
            "revision": revision,
        });
    });
}
