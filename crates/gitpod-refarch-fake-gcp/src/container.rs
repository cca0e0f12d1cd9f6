//! GKE (container v1): clusters, node pools and their operations, with GKE's rule of
//! one running operation per cluster.

use serde_json::{json, Map, Value};

use crate::catalog::{self, VersionUse};
use crate::error::{ApiError, ApiResult};
use crate::ops::{self, Api, Op};
use crate::state::{b64, is_rfc1035, now_millis, now_rfc3339, s, Effect, State};
use crate::{unserved, Req};

const BASE: &str = "https://container.googleapis.com/v1/";

struct Loc {
    project: String,
    location: String,
}

impl Loc {
    fn parent(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.location)
    }
    fn cluster(&self, c: &str) -> String {
        format!("{}/clusters/{c}", self.parent())
    }
}

/// A control-plane version as GKE resolves it from `serverConfig` (the catalogue):
/// `-`/none is the default (of the channel), `latest` the newest, `1.33` or `1.33.5`
/// the newest patch, a full version as offered; anything else is a 400.
fn master_version(v: &str, channel: Option<&str>) -> Result<String, ApiError> {
    catalog::resolve_gke_version(v, VersionUse::Master, channel)
}

/// A node version: `-`, `latest` or none is the control plane's version; otherwise
/// one of `validNodeVersions`, and never newer than the control plane.
fn node_version(v: &str, master: &str) -> Result<String, ApiError> {
    let resolved = if v.is_empty() || v == "-" || v == "latest" {
        master.to_string()
    } else {
        catalog::resolve_gke_version(v, VersionUse::Node, None)?
    };
    if !master.is_empty() && catalog::newer(&resolved, master) {
        return Err(ApiError::invalid(format!(
            "Node version \"{resolved}\" must not be newer than the cluster's master version \"{master}\"."
        )));
    }
    Ok(resolved)
}

/// The region of a GKE location (a region or a zone).
fn region_of(location: &str) -> &str {
    match location.rsplit_once('-') {
        Some((region, zone)) if zone.len() == 1 => region,
        _ => location,
    }
}

/// The last path segment of a reference (`projects/p/global/networks/n` → `n`).
fn short_name(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// GKE's checks across APIs: the network and subnetwork a cluster names must exist in
/// Compute (the subnetwork in the cluster's region, on that network), and the
/// secondary ranges it names must be ranges of that subnetwork. The network named
/// `default` (explicit or implied) is taken to exist, as in a project whose Compute
/// API created it.
fn check_network(st: &State, loc: &Loc, spec: &Map<String, Value>) -> Result<(), ApiError> {
    let field = |name: &str| -> Option<String> {
        spec.get(name)
            .and_then(Value::as_str)
            .or_else(|| {
                spec.get("networkConfig")
                    .and_then(|n| n.get(name))
                    .and_then(Value::as_str)
            })
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let network = field("network");
    let mut network_link = None;
    if let Some(n) = &network {
        let key = crate::compute::network_key(&loc.project, n);
        match st.res.get(&key) {
            Some(net) => network_link = Some(s(net, "selfLink").to_string()),
            None if short_name(n) == "default" => {}
            None => {
                return Err(ApiError::invalid(format!(
                    "Network \"{}\" does not exist.",
                    short_name(n)
                )))
            }
        }
    }
    let Some(sub) = field("subnetwork") else {
        return Ok(());
    };
    if short_name(&sub) == "default" && network_link.is_none() {
        return Ok(());
    }
    let region = region_of(&loc.location);
    let key = crate::compute::subnetwork_key(&loc.project, region, &sub);
    let Some(subnet) = st.res.get(&key) else {
        return Err(ApiError::invalid(format!(
            "Subnetwork \"{key}\" does not exist."
        )));
    };
    if let Some(link) = network_link {
        if s(subnet, "network") != link {
            return Err(ApiError::invalid(format!(
                "Subnetwork \"{key}\" does not belong to network \"{}\".",
                short_name(network.as_deref().unwrap_or(""))
            )));
        }
    }
    let ranges: Vec<&str> = subnet
        .get("secondaryIpRanges")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| s(r, "rangeName"))
        .collect();
    let policy = spec.get("ipAllocationPolicy");
    for (field, what) in [
        ("clusterSecondaryRangeName", "cluster_secondary_range_name"),
        (
            "servicesSecondaryRangeName",
            "services_secondary_range_name",
        ),
    ] {
        if let Some(range) = policy
            .and_then(|p| p.get(field))
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            if !ranges.contains(&range) {
                return Err(ApiError::invalid(format!(
                    "Invalid value for field 'cluster.ip_allocation_policy.{what}': \"{range}\". Subnetwork \"{key}\" has no secondary range with that name."
                )));
            }
        }
    }
    Ok(())
}

fn cluster_not_found(loc: &Loc, c: &str) -> ApiError {
    ApiError::not_found(format!("Not found: {}.", loc.cluster(c)))
}

/// A cluster with its node pools, as GKE answers it.
fn render_cluster(st: &State, key: &str) -> Option<Value> {
    let mut c = st.res.get(key)?.clone();
    let pools: Vec<Value> = st
        .children(&format!("{key}/nodePools/"))
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    if !pools.is_empty() {
        c["nodePools"] = Value::Array(pools);
    }
    Some(c)
}

/// GKE's 400 while another operation runs on the cluster.
fn check_idle(st: &State, cluster_key: &str, cluster: &str) -> Result<(), ApiError> {
    if let Some(op) = ops::pending_on(st, cluster_key) {
        let short = op.name.rsplit('/').next().unwrap_or("");
        let pool = s(&op.base, "targetLink")
            .rsplit("/nodePools/")
            .next()
            .unwrap_or("")
            .to_string();
        let doing = match op.op_type.as_str() {
            "CREATE_CLUSTER" => format!("creating cluster {cluster}"),
            "DELETE_CLUSTER" => format!("deleting cluster {cluster}"),
            "UPGRADE_MASTER" => format!("upgrading cluster {cluster}"),
            "CREATE_NODE_POOL" => format!("creating node pool {pool} in cluster {cluster}"),
            "DELETE_NODE_POOL" => format!("deleting node pool {pool} in cluster {cluster}"),
            "UPGRADE_NODES" => format!("upgrading node pool {pool} in cluster {cluster}"),
            _ => format!("updating cluster {cluster}"),
        };
        return Err(ApiError::precondition(
            "failedPrecondition",
            format!("Operation {short} is currently {doing}. Please wait and try again once it is done."),
        ));
    }
    Ok(())
}

fn operation(st: &mut State, loc: &Loc, op_type: &str, lock_key: &str, target_path: &str) -> Op {
    let number = st.project_number(&loc.project);
    let short = format!("operation-{}-{}", now_millis(), st.hex(8));
    let name = format!("{}/operations/{short}", loc.parent());
    let base = json!({
        "name": short,
        "zone": loc.location,
        "location": loc.location,
        "operationType": op_type,
        "selfLink": format!("{BASE}projects/{number}/locations/{}/operations/{short}", loc.location),
        "targetLink": format!("{BASE}projects/{number}/locations/{}/{target_path}", loc.location),
    });
    Op::new(name, Api::Container, op_type, lock_key.to_string(), base)
}

pub(crate) fn handle(st: &mut State, method: &str, req: &Req) -> ApiResult {
    let project = st.require_project(req.p("projectsId"))?;
    let loc = Loc {
        project,
        location: req.p("locationsId").to_string(),
    };
    let cluster = req.p("clustersId").to_string();
    let ckey = loc.cluster(&cluster);
    let pool = req.p("nodePoolsId").to_string();
    let pkey = format!("{ckey}/nodePools/{pool}");
    match method {
        "container.projects.locations.operations.get" => {
            let name = format!("{}/operations/{}", loc.parent(), req.p("operationsId"));
            ops::poll(st, &name, &[Api::Container]).ok_or_else(|| {
                ApiError::not_found(format!("Not found: operation {}.", req.p("operationsId")))
            })
        }
        "container.projects.locations.getServerConfig" => Ok(catalog::server_config()),
        "container.projects.locations.operations.list" => {
            let prefix = if loc.location == "-" {
                format!("projects/{}/locations/", loc.project)
            } else {
                format!("{}/operations/", loc.parent())
            };
            let names: Vec<String> = st
                .ops
                .values()
                .filter(|op| op.api == Api::Container && op.name.starts_with(&prefix))
                .map(|op| op.name.clone())
                .collect();
            let operations: Vec<Value> = names.iter().map(|n| ops::render(st, n)).collect();
            if operations.is_empty() {
                Ok(json!({}))
            } else {
                Ok(json!({ "operations": operations }))
            }
        }
        "container.projects.locations.clusters.get" => {
            render_cluster(st, &ckey).ok_or_else(|| cluster_not_found(&loc, &cluster))
        }
        "container.projects.locations.clusters.list" => {
            let prefix = if loc.location == "-" {
                format!("projects/{}/locations/", loc.project)
            } else {
                format!("{}/clusters/", loc.parent())
            };
            let keys: Vec<String> = st
                .res
                .keys()
                .filter(|k| {
                    k.starts_with(&prefix) && k.split('/').count() == 6 && k.contains("/clusters/")
                })
                .cloned()
                .collect();
            let clusters: Vec<Value> = keys.iter().filter_map(|k| render_cluster(st, k)).collect();
            if clusters.is_empty() {
                Ok(json!({}))
            } else {
                Ok(json!({ "clusters": clusters }))
            }
        }
        "container.projects.locations.clusters.create" => create_cluster(st, &loc, req),
        "container.projects.locations.clusters.delete" => {
            let c = st
                .res
                .get(&ckey)
                .cloned()
                .ok_or_else(|| cluster_not_found(&loc, &cluster))?;
            check_idle(st, &ckey, &cluster)?;
            let previous = c.get("status").cloned().unwrap_or(json!("RUNNING"));
            st.apply(Effect::Merge(ckey.clone(), json!({"status": "STOPPING"})));
            let op = operation(
                st,
                &loc,
                "DELETE_CLUSTER",
                &ckey,
                &format!("clusters/{cluster}"),
            )
            .on_done(vec![Effect::Remove(ckey.clone())])
            .on_fail(vec![Effect::Merge(ckey, json!({ "status": previous }))]);
            Ok(ops::register(st, method, op))
        }
        "container.projects.locations.clusters.update" => update_cluster(st, &loc, &cluster, req),
        "container.projects.locations.clusters.nodePools.get" => {
            if !st.res.contains_key(&ckey) {
                return Err(cluster_not_found(&loc, &cluster));
            }
            st.res
                .get(&pkey)
                .cloned()
                .ok_or_else(|| ApiError::not_found(format!("Not found: {pkey}.")))
        }
        "container.projects.locations.clusters.nodePools.list" => {
            let c = render_cluster(st, &ckey).ok_or_else(|| cluster_not_found(&loc, &cluster))?;
            match c.get("nodePools") {
                Some(p) => Ok(json!({ "nodePools": p })),
                None => Ok(json!({})),
            }
        }
        "container.projects.locations.clusters.nodePools.create" => {
            create_pool(st, &loc, &cluster, req)
        }
        _ => pool_mutation(st, method, &loc, &cluster, &pool, req),
    }
}

/// The release channel a `releaseChannel` message enrolls in (`None`: no channel).
/// The channel is a name or (from the official Rust clients) its enum number;
/// `UNSPECIFIED`, 0 or a missing channel is no channel.
fn enrolled_channel(rc: &Value) -> Option<String> {
    match rc.get("channel") {
        Some(Value::String(c)) if c != "UNSPECIFIED" && !c.is_empty() => Some(c.clone()),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(1) => Some("RAPID".into()),
            Some(2) => Some("REGULAR".into()),
            Some(3) => Some("STABLE".into()),
            Some(4) => Some("EXTENDED".into()),
            _ => None,
        },
        _ => None,
    }
}

/// The channel of a stored cluster.
fn cluster_channel(cluster: &Value) -> Option<String> {
    cluster.get("releaseChannel").and_then(enrolled_channel)
}

/// GKE's rule: node pools of a cluster enrolled in a release channel must have
/// auto-upgrade and auto-repair on. A `management` message that is present but
/// leaves a field out has it false (proto3).
fn check_management(channel: Option<&str>, management: Option<&Value>) -> Result<(), ApiError> {
    let (Some(channel), Some(m)) = (channel, management) else {
        return Ok(());
    };
    for (field, what) in [
        ("autoUpgrade", "auto_upgrade"),
        ("autoRepair", "auto_repair"),
    ] {
        if m.get(field).and_then(Value::as_bool) != Some(true) {
            return Err(ApiError::invalid(format!(
                "Node pool {what} must be enabled for clusters enrolled in a release channel ({channel}); unenroll the cluster from the release channel (releaseChannel UNSPECIFIED) to turn it off."
            )));
        }
    }
    Ok(())
}

/// Whether Compute offers machine type `mt` (the catalogue `machineTypes.list`
/// answers; every known zone has every type). Anything else is a 400, as GKE answers.
fn check_machine_type(mt: &str, location: &str) -> Result<(), ApiError> {
    if catalog::is_machine_type(mt) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "Invalid machine type \"{mt}\" in location \"{location}\": no such machine type."
        )))
    }
}

fn default_locations(location: &str) -> Vec<Value> {
    let is_zone = location
        .rsplit('-')
        .next()
        .is_some_and(|last| last.len() == 1);
    if is_zone {
        vec![json!(location)]
    } else {
        ["b", "c", "d"]
            .iter()
            .map(|z| json!(format!("{location}-{z}")))
            .collect()
    }
}

/// `127.0.0.1:6443` of `https://127.0.0.1:6443/`: a GKE endpoint has no scheme.
fn bare_address(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.trim_end_matches('/')
}

fn ca_pem(st: &mut State) -> String {
    let body = b64(format!("fake-gcp cluster CA {}", st.hex(48)));
    b64(format!(
        "-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"
    ))
}

fn create_cluster(st: &mut State, loc: &Loc, req: &Req) -> ApiResult {
    let Some(Value::Object(spec)) = req.body().get("cluster").cloned() else {
        return Err(ApiError::invalid("Cluster is required."));
    };
    let name = spec
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !is_rfc1035(&name, 40) {
        return Err(ApiError::invalid(format!(
            "Invalid value for field \"cluster.name\": \"{name}\". Must match regex [a-z]([-a-z0-9]*[a-z0-9])? and be at most 40 characters."
        )));
    }
    let key = loc.cluster(&name);
    if st.res.contains_key(&key) {
        return Err(ApiError::already_exists(format!("Already exists: {key}.")));
    }
    let mut pools: Vec<Value> = spec
        .get("nodePools")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let autopilot = spec
        .get("autopilot")
        .and_then(|a| a.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let initial = spec
        .get("initialNodeCount")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if pools.is_empty() && initial > 0 {
        let mut p = json!({"name": "default-pool", "initialNodeCount": initial});
        if let Some(cfg) = spec.get("nodeConfig") {
            p["config"] = cfg.clone();
        }
        pools.push(p);
    }
    if pools.is_empty() && !autopilot {
        return Err(ApiError::invalid(
            "Cluster.initial_node_count must be greater than zero, or node_pools must be set.",
        ));
    }
    // An absent releaseChannel enrolls the cluster in REGULAR, as GKE does today.
    let channel = match spec.get("releaseChannel") {
        Some(rc) => enrolled_channel(rc),
        None => Some("REGULAR".to_string()),
    };
    for p in &pools {
        check_management(channel.as_deref(), p.get("management"))?;
    }
    let version = master_version(
        spec.get("initialClusterVersion")
            .and_then(Value::as_str)
            .unwrap_or(""),
        channel.as_deref(),
    )?;
    check_network(st, loc, &spec)?;
    let number = st.project_number(&loc.project);
    let mut c: Map<String, Value> = spec.clone();
    c.remove("nodePools");
    let now = now_rfc3339();
    let locations = spec
        .get("locations")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .cloned()
        .unwrap_or_else(|| default_locations(&loc.location));
    let ca = ca_pem(st);
    let set = |c: &mut Map<String, Value>, k: &str, v: Value| {
        c.insert(k.to_string(), v);
    };
    set(
        &mut c,
        "selfLink",
        json!(format!(
            "{BASE}projects/{number}/locations/{}/clusters/{name}",
            loc.location
        )),
    );
    set(&mut c, "zone", json!(loc.location));
    set(&mut c, "location", json!(loc.location));
    set(&mut c, "locations", Value::Array(locations.clone()));
    match st.config.kube_endpoint.clone() {
        Some(url) => {
            // GKE's shape: a bare address (no scheme) and the base64 of the CA's PEM.
            let ca = b64(st.config.kube_ca_pem.clone().unwrap_or_default());
            set(&mut c, "endpoint", json!(bare_address(&url)));
            set(&mut c, "masterAuth", json!({"clusterCaCertificate": ca}));
        }
        None => {
            set(&mut c, "endpoint", json!(st.ip(34)));
            set(&mut c, "masterAuth", json!({"clusterCaCertificate": ca}));
        }
    }
    set(&mut c, "initialClusterVersion", json!(version));
    set(&mut c, "currentMasterVersion", json!(version));
    set(&mut c, "currentNodeVersion", json!(version));
    set(&mut c, "status", json!("PROVISIONING"));
    set(&mut c, "createTime", json!(now));
    set(&mut c, "id", json!(st.hex(64)));
    set(&mut c, "etag", json!(st.hex(32)));
    set(&mut c, "labelFingerprint", json!(st.hex(8)));
    for (k, v) in [
        ("network", json!("default")),
        ("subnetwork", json!("default")),
        ("loggingService", json!("logging.googleapis.com/kubernetes")),
        (
            "monitoringService",
            json!("monitoring.googleapis.com/kubernetes"),
        ),
        ("clusterIpv4Cidr", json!("10.4.0.0/14")),
        ("servicesIpv4Cidr", json!("10.8.0.0/20")),
        ("releaseChannel", json!({"channel": "REGULAR"})),
    ] {
        c.entry(k.to_string()).or_insert(v);
    }
    c.remove("initialNodeCount");
    c.remove("nodeConfig");
    let mut effects_done = vec![Effect::Merge(key.clone(), json!({"status": "RUNNING"}))];
    let mut effects_fail = vec![Effect::Merge(
        key.clone(),
        json!({"status": "ERROR", "statusMessage": "Cluster creation failed (injected by the fake)."}),
    )];
    let mut built = Vec::new();
    for p in pools {
        let pname = s(&p, "name").to_string();
        let pv = new_pool(st, loc, &name, &version, &locations, p)?;
        built.push((format!("{key}/nodePools/{pname}"), pv));
    }
    st.apply(Effect::Insert(key.clone(), Value::Object(c)));
    for (pk, pv) in built {
        st.apply(Effect::Insert(pk.clone(), pv));
        effects_done.push(Effect::Merge(pk.clone(), json!({"status": "RUNNING"})));
        effects_fail.push(Effect::Merge(pk, json!({"status": "ERROR"})));
    }
    let op = operation(st, loc, "CREATE_CLUSTER", &key, &format!("clusters/{name}"))
        .on_done(effects_done)
        .on_fail(effects_fail);
    Ok(ops::register(
        st,
        "container.projects.locations.clusters.create",
        op,
    ))
}

fn new_pool(
    st: &mut State,
    loc: &Loc,
    cluster: &str,
    version: &str,
    locations: &[Value],
    spec: Value,
) -> Result<Value, ApiError> {
    let Value::Object(mut p) = spec else {
        return Err(ApiError::invalid("Node pool must be an object."));
    };
    let name = p
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !is_rfc1035(&name, 40) {
        return Err(ApiError::invalid(format!(
            "Invalid value for field \"node_pool.name\": \"{name}\". Must match regex [a-z]([-a-z0-9]*[a-z0-9])?."
        )));
    }
    if let Some(mt) = p
        .get("config")
        .and_then(|c| c.get("machineType"))
        .and_then(Value::as_str)
    {
        check_machine_type(mt, &loc.location)?;
    }
    let number = st.project_number(&loc.project);
    let cfg = p.entry("config".to_string()).or_insert_with(|| json!({}));
    if let Value::Object(cfg) = cfg {
        cfg.entry("machineType".to_string())
            .or_insert(json!("e2-medium"));
        cfg.entry("diskSizeGb".to_string()).or_insert(json!(100));
        cfg.entry("imageType".to_string())
            .or_insert(json!("COS_CONTAINERD"));
    }
    p.entry("initialNodeCount".to_string()).or_insert(json!(1));
    p.entry("management".to_string())
        .or_insert(json!({"autoUpgrade": true, "autoRepair": true}));
    p.entry("locations".to_string())
        .or_insert(Value::Array(locations.to_vec()));
    let v = node_version(
        p.get("version").and_then(Value::as_str).unwrap_or(""),
        version,
    )?;
    p.insert("version".into(), json!(v));
    p.insert("status".into(), json!("PROVISIONING"));
    p.insert("etag".into(), json!(st.hex(32)));
    p.insert(
        "selfLink".into(),
        json!(format!(
            "{BASE}projects/{number}/locations/{}/clusters/{cluster}/nodePools/{name}",
            loc.location
        )),
    );
    let groups: Vec<Value> = locations
        .iter()
        .filter_map(Value::as_str)
        .map(|z| {
            json!(format!(
                "https://www.googleapis.com/compute/v1/projects/{}/zones/{z}/instanceGroupManagers/gke-{cluster}-{name}-{}-grp",
                loc.project,
                &st.hex(8)
            ))
        })
        .collect();
    p.insert("instanceGroupUrls".into(), Value::Array(groups));
    Ok(Value::Object(p))
}

fn update_cluster(st: &mut State, loc: &Loc, cluster: &str, req: &Req) -> ApiResult {
    let key = loc.cluster(cluster);
    let c = st
        .res
        .get(&key)
        .cloned()
        .ok_or_else(|| cluster_not_found(loc, cluster))?;
    let Some(Value::Object(update)) = req.body().get("update").cloned() else {
        return Err(ApiError::invalid("Update is required."));
    };
    let update: Map<String, Value> = update.into_iter().filter(|(_, v)| !v.is_null()).collect();
    if update.is_empty() {
        return Err(ApiError::invalid("Update must set at least one field."));
    }
    check_idle(st, &key, cluster)?;
    if let Some(channel) = update
        .get("desiredReleaseChannel")
        .and_then(enrolled_channel)
    {
        let prefix = format!("{key}/nodePools/");
        for (pk, pool) in st.res.range(prefix.clone()..) {
            if !pk.starts_with(&prefix) {
                break;
            }
            check_management(
                Some(&channel),
                Some(pool.get("management").unwrap_or(&json!({}))),
            )?;
        }
    }
    let previous = c.get("status").cloned().unwrap_or(json!("RUNNING"));
    let pool_id = update
        .get("desiredNodePoolId")
        .and_then(Value::as_str)
        .map(str::to_string);
    let (op_type, target, done): (&str, String, Vec<Effect>) =
        if let Some(v) = update.get("desiredMasterVersion").and_then(Value::as_str) {
            let v = master_version(v, cluster_channel(&c).as_deref())?;
            (
                "UPGRADE_MASTER",
                format!("clusters/{cluster}"),
                vec![Effect::Merge(
                    key.clone(),
                    json!({"currentMasterVersion": v}),
                )],
            )
        } else if let (Some(v), Some(pool)) = (
            update.get("desiredNodeVersion").and_then(Value::as_str),
            &pool_id,
        ) {
            let pk = format!("{key}/nodePools/{pool}");
            if !st.res.contains_key(&pk) {
                return Err(ApiError::not_found(format!("Not found: {pk}.")));
            }
            let v = node_version(v, s(&c, "currentMasterVersion"))?;
            (
                "UPGRADE_NODES",
                format!("clusters/{cluster}/nodePools/{pool}"),
                vec![
                    Effect::Merge(pk, json!({"version": v})),
                    Effect::Merge(key.clone(), json!({"currentNodeVersion": v})),
                ],
            )
        } else {
            let mut patch = Map::new();
            let mut effects = Vec::new();
            for (k, v) in &update {
                if k == "desiredNodePoolId" || k == "etag" {
                    continue;
                }
                if k == "desiredNodePoolAutoscaling" {
                    if let Some(pool) = &pool_id {
                        effects.push(Effect::Merge(
                            format!("{key}/nodePools/{pool}"),
                            json!({"autoscaling": v}),
                        ));
                    }
                    continue;
                }
                let field = k.strip_prefix("desired").unwrap_or(k);
                let mut chars = field.chars();
                let field = match chars.next() {
                    Some(first) => first.to_lowercase().collect::<String>() + chars.as_str(),
                    None => continue,
                };
                patch.insert(field, v.clone());
            }
            effects.push(Effect::Merge(key.clone(), Value::Object(patch)));
            ("UPDATE_CLUSTER", format!("clusters/{cluster}"), effects)
        };
    let mut done = done;
    done.push(Effect::Merge(
        key.clone(),
        json!({"status": previous.clone()}),
    ));
    st.apply(Effect::Merge(key.clone(), json!({"status": "RECONCILING"})));
    let op = operation(st, loc, op_type, &key, &target)
        .on_done(done)
        .on_fail(vec![Effect::Merge(
            key.clone(),
            json!({ "status": previous }),
        )]);
    Ok(ops::register(
        st,
        "container.projects.locations.clusters.update",
        op,
    ))
}

fn create_pool(st: &mut State, loc: &Loc, cluster: &str, req: &Req) -> ApiResult {
    let key = loc.cluster(cluster);
    let c = st
        .res
        .get(&key)
        .cloned()
        .ok_or_else(|| cluster_not_found(loc, cluster))?;
    let spec = req.body().get("nodePool").cloned().unwrap_or(Value::Null);
    let name = s(&spec, "name").to_string();
    let pk = format!("{key}/nodePools/{name}");
    if st.res.contains_key(&pk) {
        return Err(ApiError::already_exists(format!("Already exists: {pk}.")));
    }
    check_idle(st, &key, cluster)?;
    check_management(cluster_channel(&c).as_deref(), spec.get("management"))?;
    let version = s(&c, "currentMasterVersion").to_string();
    let locations = c
        .get("locations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let pv = new_pool(st, loc, cluster, &version, &locations, spec)?;
    st.apply(Effect::Insert(pk.clone(), pv));
    let op = operation(st, loc, "CREATE_NODE_POOL", &key, &format!("clusters/{cluster}/nodePools/{name}"))
        .on_done(vec![Effect::Merge(pk.clone(), json!({"status": "RUNNING"}))])
        .on_fail(vec![Effect::Merge(
            pk,
            json!({"status": "ERROR", "statusMessage": "Node pool creation failed (injected by the fake)."}),
        )]);
    Ok(ops::register(
        st,
        "container.projects.locations.clusters.nodePools.create",
        op,
    ))
}

fn pool_mutation(
    st: &mut State,
    method: &str,
    loc: &Loc,
    cluster: &str,
    pool: &str,
    req: &Req,
) -> ApiResult {
    let key = loc.cluster(cluster);
    if !st.res.contains_key(&key) {
        return Err(cluster_not_found(loc, cluster));
    }
    let pk = format!("{key}/nodePools/{pool}");
    let p = st
        .res
        .get(&pk)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("Not found: {pk}.")))?;
    check_idle(st, &key, cluster)?;
    let body = req.body();
    let previous = p.get("status").cloned().unwrap_or(json!("RUNNING"));
    let (op_type, transient, done): (&str, &str, Vec<Effect>) = match method {
        "container.projects.locations.clusters.nodePools.delete" => (
            "DELETE_NODE_POOL",
            "STOPPING",
            vec![Effect::Remove(pk.clone())],
        ),
        "container.projects.locations.clusters.nodePools.setAutoscaling" => (
            "UPDATE_CLUSTER",
            "RECONCILING",
            vec![Effect::Merge(
                pk.clone(),
                json!({"autoscaling": body.get("autoscaling").cloned().unwrap_or(json!({}))}),
            )],
        ),
        "container.projects.locations.clusters.nodePools.setManagement" => {
            let channel = st.res.get(&key).and_then(cluster_channel);
            check_management(
                channel.as_deref(),
                Some(body.get("management").unwrap_or(&json!({}))),
            )?;
            (
                "SET_NODE_POOL_MANAGEMENT",
                "RECONCILING",
                vec![Effect::Merge(
                    pk.clone(),
                    json!({"management": body.get("management").cloned().unwrap_or(json!({}))}),
                )],
            )
        }
        "container.projects.locations.clusters.nodePools.setSize" => {
            let n = body.get("nodeCount").and_then(Value::as_i64).unwrap_or(-1);
            if n < 0 {
                return Err(ApiError::invalid("nodeCount must be zero or more."));
            }
            (
                "SET_NODE_POOL_SIZE",
                "RECONCILING",
                vec![Effect::Merge(pk.clone(), json!({"initialNodeCount": n}))],
            )
        }
        "container.projects.locations.clusters.nodePools.update" => {
            if let Some(mt) = body.get("machineType").and_then(Value::as_str) {
                check_machine_type(mt, &loc.location)?;
            }
            let mut body = body.clone();
            if let Some(v) = body.get("nodeVersion").and_then(Value::as_str) {
                let master = st
                    .res
                    .get(&key)
                    .map(|c| s(c, "currentMasterVersion").to_string())
                    .unwrap_or_default();
                body["nodeVersion"] = json!(node_version(v, &master)?);
            }
            let (t, patch) = pool_update(&p, &body);
            (t, "RECONCILING", vec![Effect::Merge(pk.clone(), patch)])
        }
        _ => return Err(unserved(method)),
    };
    let mut done = done;
    if op_type != "DELETE_NODE_POOL" {
        done.push(Effect::Merge(
            pk.clone(),
            json!({"status": previous.clone(), "etag": st.hex(32)}),
        ));
    }
    st.apply(Effect::Merge(pk.clone(), json!({ "status": transient })));
    let op = operation(
        st,
        loc,
        op_type,
        &key,
        &format!("clusters/{cluster}/nodePools/{pool}"),
    )
    .on_done(done)
    .on_fail(vec![Effect::Merge(pk, json!({ "status": previous }))]);
    Ok(ops::register(st, method, op))
}

/// The operation type and node pool patch of an `UpdateNodePoolRequest`.
fn pool_update(pool: &Value, body: &Value) -> (&'static str, Value) {
    let mut patch = Map::new();
    let mut config = pool.get("config").cloned().unwrap_or_else(|| json!({}));
    let mut op_type = "UPDATE_CLUSTER";
    if let Some(v) = body.get("nodeVersion").and_then(Value::as_str) {
        // Resolved by the caller (node_version).
        patch.insert("version".into(), json!(v));
        op_type = "UPGRADE_NODES";
    }
    for field in ["locations", "upgradeSettings"] {
        if let Some(v) = body.get(field) {
            patch.insert(field.into(), v.clone());
        }
    }
    for field in [
        "machineType",
        "diskSizeGb",
        "diskType",
        "imageType",
        "workloadMetadataConfig",
        "kubeletConfig",
        "linuxNodeConfig",
        "gcfsConfig",
        "gvnic",
    ] {
        if let Some(v) = body.get(field) {
            // UpdateNodePoolRequest.diskSizeGb is an int64 (a string); NodeConfig's is an int32.
            config[field] = match (field, v.as_str().and_then(|x| x.parse::<i64>().ok())) {
                ("diskSizeGb", Some(n)) => json!(n),
                _ => v.clone(),
            };
        }
    }
    for (field, inner) in [
        ("labels", "labels"),
        ("taints", "taints"),
        ("tags", "tags"),
        ("resourceLabels", "labels"),
    ] {
        if let Some(v) = body.get(field) {
            config[field] = v.get(inner).cloned().unwrap_or_else(|| json!({}));
        }
    }
    patch.insert("config".into(), config);
    (op_type, Value::Object(patch))
}
