//! The route table: every method the fake serves, with the HTTP verb and the path
//! template (`flatPath`) of its discovery document.

use crate::CallKind::{self, Mutate, Poll, Read};

/// One served method.
pub(crate) struct Route {
    /// Discovery method id.
    pub id: &'static str,
    /// HTTP verb.
    pub verb: &'static str,
    /// Full path template: `/` + servicePath + flatPath.
    pub template: &'static str,
    /// How the call is counted.
    pub kind: CallKind,
}

const fn r(id: &'static str, verb: &'static str, template: &'static str, kind: CallKind) -> Route {
    Route {
        id,
        verb,
        template,
        kind,
    }
}

/// Every route, in matching order (first match wins).
pub(crate) const ROUTES: &[Route] = &[
    // Resource Manager v3
    r("cloudresourcemanager.projects.get", "GET", "/v3/projects/{projectsId}", Read),
    r("cloudresourcemanager.projects.create", "POST", "/v3/projects", Mutate),
    r("cloudresourcemanager.operations.get", "GET", "/v3/operations/{operationsId}", Poll),
    r("cloudresourcemanager.projects.getIamPolicy", "POST", "/v3/projects/{projectsId}:getIamPolicy", Read),
    r("cloudresourcemanager.projects.setIamPolicy", "POST", "/v3/projects/{projectsId}:setIamPolicy", Mutate),
    // Resource Manager v1 (what gcloud uses), on the same projects and policies. Its
    // operations (`/v1/operations/...`) share Service Usage's path: the registry tells
    // them apart.
    r("cloudresourcemanager.projects.get", "GET", "/v1/projects/{projectId}", Read),
    r("cloudresourcemanager.projects.create", "POST", "/v1/projects", Mutate),
    r("cloudresourcemanager.projects.getIamPolicy", "POST", "/v1/projects/{resource}:getIamPolicy", Read),
    r("cloudresourcemanager.projects.setIamPolicy", "POST", "/v1/projects/{resource}:setIamPolicy", Mutate),
    // Cloud Billing v1
    r("cloudbilling.projects.getBillingInfo", "GET", "/v1/projects/{projectsId}/billingInfo", Read),
    r("cloudbilling.projects.updateBillingInfo", "PUT", "/v1/projects/{projectsId}/billingInfo", Mutate),
    // Service Usage v1
    r("serviceusage.services.batchEnable", "POST", "/v1/{v1Id}/{v1Id1}/services:batchEnable", Mutate),
    r("serviceusage.services.batchGet", "GET", "/v1/{v1Id}/{v1Id1}/services:batchGet", Read),
    r("serviceusage.services.enable", "POST", "/v1/{v1Id}/{v1Id1}/services/{servicesId}:enable", Mutate),
    r("serviceusage.services.get", "GET", "/v1/{v1Id}/{v1Id1}/services/{servicesId}", Read),
    r("serviceusage.services.list", "GET", "/v1/{v1Id}/{v1Id1}/services", Read),
    r("serviceusage.operations.get", "GET", "/v1/operations/{operationsId}", Poll),
    // IAM v1
    r("iam.projects.serviceAccounts.get", "GET", "/v1/projects/{projectsId}/serviceAccounts/{serviceAccountsId}", Read),
    r("iam.projects.serviceAccounts.create", "POST", "/v1/projects/{projectsId}/serviceAccounts", Mutate),
    r("iam.projects.serviceAccounts.delete", "DELETE", "/v1/projects/{projectsId}/serviceAccounts/{serviceAccountsId}", Mutate),
    r("iam.projects.serviceAccounts.list", "GET", "/v1/projects/{projectsId}/serviceAccounts", Read),
    r("iam.projects.serviceAccounts.keys.create", "POST", "/v1/projects/{projectsId}/serviceAccounts/{serviceAccountsId}/keys", Mutate),
    r("iam.projects.serviceAccounts.keys.list", "GET", "/v1/projects/{projectsId}/serviceAccounts/{serviceAccountsId}/keys", Read),
    r("iam.projects.serviceAccounts.keys.delete", "DELETE", "/v1/projects/{projectsId}/serviceAccounts/{serviceAccountsId}/keys/{keysId}", Mutate),
    r("iam.projects.serviceAccounts.getIamPolicy", "POST", "/v1/projects/{projectsId}/serviceAccounts/{serviceAccountsId}:getIamPolicy", Read),
    r("iam.projects.serviceAccounts.setIamPolicy", "POST", "/v1/projects/{projectsId}/serviceAccounts/{serviceAccountsId}:setIamPolicy", Mutate),
    // Compute v1
    r("compute.networks.get", "GET", "/compute/v1/projects/{project}/global/networks/{network}", Read),
    r("compute.networks.insert", "POST", "/compute/v1/projects/{project}/global/networks", Mutate),
    r("compute.networks.delete", "DELETE", "/compute/v1/projects/{project}/global/networks/{network}", Mutate),
    r("compute.networks.list", "GET", "/compute/v1/projects/{project}/global/networks", Read),
    r("compute.subnetworks.get", "GET", "/compute/v1/projects/{project}/regions/{region}/subnetworks/{subnetwork}", Read),
    r("compute.subnetworks.insert", "POST", "/compute/v1/projects/{project}/regions/{region}/subnetworks", Mutate),
    r("compute.subnetworks.delete", "DELETE", "/compute/v1/projects/{project}/regions/{region}/subnetworks/{subnetwork}", Mutate),
    r("compute.subnetworks.list", "GET", "/compute/v1/projects/{project}/regions/{region}/subnetworks", Read),
    r("compute.subnetworks.aggregatedList", "GET", "/compute/v1/projects/{project}/aggregated/subnetworks", Read),
    r("compute.machineTypes.get", "GET", "/compute/v1/projects/{project}/zones/{zone}/machineTypes/{machineType}", Read),
    r("compute.machineTypes.list", "GET", "/compute/v1/projects/{project}/zones/{zone}/machineTypes", Read),
    r("compute.globalOperations.get", "GET", "/compute/v1/projects/{project}/global/operations/{operation}", Poll),
    r("compute.globalOperations.wait", "POST", "/compute/v1/projects/{project}/global/operations/{operation}/wait", Poll),
    r("compute.regionOperations.get", "GET", "/compute/v1/projects/{project}/regions/{region}/operations/{operation}", Poll),
    r("compute.regionOperations.wait", "POST", "/compute/v1/projects/{project}/regions/{region}/operations/{operation}/wait", Poll),
    // GKE (container v1)
    r("container.projects.locations.getServerConfig", "GET", "/v1/projects/{projectsId}/locations/{locationsId}/serverConfig", Read),
    r("container.projects.locations.operations.list", "GET", "/v1/projects/{projectsId}/locations/{locationsId}/operations", Read),
    r("container.projects.locations.clusters.get", "GET", "/v1/projects/{projectsId}/locations/{locationsId}/clusters/{clustersId}", Read),
    r("container.projects.locations.clusters.create", "POST", "/v1/projects/{projectsId}/locations/{locationsId}/clusters", Mutate),
    r("container.projects.locations.clusters.delete", "DELETE", "/v1/projects/{projectsId}/locations/{locationsId}/clusters/{clustersId}", Mutate),
    r("container.projects.locations.clusters.list", "GET", "/v1/projects/{projectsId}/locations/{locationsId}/clusters", Read),
    r("container.projects.locations.clusters.update", "PUT", "/v1/projects/{projectsId}/locations/{locationsId}/clusters/{clustersId}", Mutate),
    r("container.projects.locations.clusters.nodePools.get", "GET", "/v1/projects/{projectsId}/locations/{locationsId}/clusters/{clustersId}/nodePools/{nodePoolsId}", Read),
    r("container.projects.locations.clusters.nodePools.create", "POST", "/v1/projects/{projectsId}/locations/{locationsId}/clusters/{clustersId}/nodePools", Mutate),
    r("container.projects.locations.clusters.nodePools.delete", "DELETE", "/v1/projects/{projectsId}/locations/{locationsId}/clusters/{clustersId}/nodePools/{nodePoolsId}", Mutate),
    r("container.projects.locations.clusters.nodePools.list", "GET", "/v1/projects/{projectsId}/locations/{locationsId}/clusters/{clustersId}/nodePools", Read),
    r("container.projects.locations.clusters.nodePools.update", "PUT", "/v1/projects/{projectsId}/locations/{locationsId}/clusters/{clustersId}/nodePools/{nodePoolsId}", Mutate),
    r("container.projects.locations.clusters.nodePools.setAutoscaling", "POST", "/v1/projects/{projectsId}/locations/{locationsId}/clusters/{clustersId}/nodePools/{nodePoolsId}:setAutoscaling", Mutate),
    r("container.projects.locations.clusters.nodePools.setManagement", "POST", "/v1/projects/{projectsId}/locations/{locationsId}/clusters/{clustersId}/nodePools/{nodePoolsId}:setManagement", Mutate),
    r("container.projects.locations.clusters.nodePools.setSize", "POST", "/v1/projects/{projectsId}/locations/{locationsId}/clusters/{clustersId}/nodePools/{nodePoolsId}:setSize", Mutate),
    // GKE and Artifact Registry share this path; the operation registry tells them apart.
    r("container.projects.locations.operations.get", "GET", "/v1/projects/{projectsId}/locations/{locationsId}/operations/{operationsId}", Poll),
    // Cloud SQL Admin v1
    r("sql.instances.get", "GET", "/v1/projects/{project}/instances/{instance}", Read),
    r("sql.instances.list", "GET", "/v1/projects/{project}/instances", Read),
    r("sql.instances.insert", "POST", "/v1/projects/{project}/instances", Mutate),
    r("sql.instances.patch", "PATCH", "/v1/projects/{project}/instances/{instance}", Mutate),
    r("sql.instances.delete", "DELETE", "/v1/projects/{project}/instances/{instance}", Mutate),
    r("sql.operations.get", "GET", "/v1/projects/{project}/operations/{operation}", Poll),
    r("sql.operations.list", "GET", "/v1/projects/{project}/operations", Read),
    r("sql.tiers.list", "GET", "/v1/projects/{project}/tiers", Read),
    r("sql.flags.list", "GET", "/v1/flags", Read),
    r("sql.databases.get", "GET", "/v1/projects/{project}/instances/{instance}/databases/{database}", Read),
    r("sql.databases.insert", "POST", "/v1/projects/{project}/instances/{instance}/databases", Mutate),
    r("sql.databases.delete", "DELETE", "/v1/projects/{project}/instances/{instance}/databases/{database}", Mutate),
    r("sql.databases.list", "GET", "/v1/projects/{project}/instances/{instance}/databases", Read),
    r("sql.users.list", "GET", "/v1/projects/{project}/instances/{instance}/users", Read),
    r("sql.users.get", "GET", "/v1/projects/{project}/instances/{instance}/users/{name}", Read),
    r("sql.users.insert", "POST", "/v1/projects/{project}/instances/{instance}/users", Mutate),
    r("sql.users.update", "PUT", "/v1/projects/{project}/instances/{instance}/users", Mutate),
    r("sql.users.delete", "DELETE", "/v1/projects/{project}/instances/{instance}/users", Mutate),
    // Cloud SQL Admin v1beta4 (what gcloud uses): the same methods and handlers
    r("sql.instances.get", "GET", "/sql/v1beta4/projects/{project}/instances/{instance}", Read),
    r("sql.instances.list", "GET", "/sql/v1beta4/projects/{project}/instances", Read),
    r("sql.instances.insert", "POST", "/sql/v1beta4/projects/{project}/instances", Mutate),
    r("sql.instances.patch", "PATCH", "/sql/v1beta4/projects/{project}/instances/{instance}", Mutate),
    r("sql.instances.delete", "DELETE", "/sql/v1beta4/projects/{project}/instances/{instance}", Mutate),
    r("sql.operations.get", "GET", "/sql/v1beta4/projects/{project}/operations/{operation}", Poll),
    r("sql.operations.list", "GET", "/sql/v1beta4/projects/{project}/operations", Read),
    r("sql.tiers.list", "GET", "/sql/v1beta4/projects/{project}/tiers", Read),
    r("sql.flags.list", "GET", "/sql/v1beta4/flags", Read),
    r("sql.databases.get", "GET", "/sql/v1beta4/projects/{project}/instances/{instance}/databases/{database}", Read),
    r("sql.databases.insert", "POST", "/sql/v1beta4/projects/{project}/instances/{instance}/databases", Mutate),
    r("sql.databases.delete", "DELETE", "/sql/v1beta4/projects/{project}/instances/{instance}/databases/{database}", Mutate),
    r("sql.databases.list", "GET", "/sql/v1beta4/projects/{project}/instances/{instance}/databases", Read),
    r("sql.users.list", "GET", "/sql/v1beta4/projects/{project}/instances/{instance}/users", Read),
    r("sql.users.get", "GET", "/sql/v1beta4/projects/{project}/instances/{instance}/users/{name}", Read),
    r("sql.users.insert", "POST", "/sql/v1beta4/projects/{project}/instances/{instance}/users", Mutate),
    r("sql.users.update", "PUT", "/sql/v1beta4/projects/{project}/instances/{instance}/users", Mutate),
    r("sql.users.delete", "DELETE", "/sql/v1beta4/projects/{project}/instances/{instance}/users", Mutate),
    // Cloud DNS v1
    r("dns.managedZones.get", "GET", "/dns/v1/projects/{project}/managedZones/{managedZone}", Read),
    r("dns.managedZones.create", "POST", "/dns/v1/projects/{project}/managedZones", Mutate),
    r("dns.managedZones.delete", "DELETE", "/dns/v1/projects/{project}/managedZones/{managedZone}", Mutate),
    r("dns.managedZones.list", "GET", "/dns/v1/projects/{project}/managedZones", Read),
    r("dns.resourceRecordSets.list", "GET", "/dns/v1/projects/{project}/managedZones/{managedZone}/rrsets", Read),
    r("dns.resourceRecordSets.get", "GET", "/dns/v1/projects/{project}/managedZones/{managedZone}/rrsets/{name}/{type}", Read),
    r("dns.resourceRecordSets.create", "POST", "/dns/v1/projects/{project}/managedZones/{managedZone}/rrsets", Mutate),
    r("dns.resourceRecordSets.delete", "DELETE", "/dns/v1/projects/{project}/managedZones/{managedZone}/rrsets/{name}/{type}", Mutate),
    r("dns.resourceRecordSets.patch", "PATCH", "/dns/v1/projects/{project}/managedZones/{managedZone}/rrsets/{name}/{type}", Mutate),
    r("dns.changes.create", "POST", "/dns/v1/projects/{project}/managedZones/{managedZone}/changes", Mutate),
    r("dns.changes.get", "GET", "/dns/v1/projects/{project}/managedZones/{managedZone}/changes/{changeId}", Poll),
    // Artifact Registry v1
    r("artifactregistry.projects.locations.repositories.get", "GET", "/v1/projects/{projectsId}/locations/{locationsId}/repositories/{repositoriesId}", Read),
    r("artifactregistry.projects.locations.repositories.create", "POST", "/v1/projects/{projectsId}/locations/{locationsId}/repositories", Mutate),
    r("artifactregistry.projects.locations.repositories.delete", "DELETE", "/v1/projects/{projectsId}/locations/{locationsId}/repositories/{repositoriesId}", Mutate),
    r("artifactregistry.projects.locations.repositories.list", "GET", "/v1/projects/{projectsId}/locations/{locationsId}/repositories", Read),
    r("artifactregistry.projects.locations.repositories.getIamPolicy", "GET", "/v1/projects/{projectsId}/locations/{locationsId}/repositories/{repositoriesId}:getIamPolicy", Read),
    r("artifactregistry.projects.locations.repositories.setIamPolicy", "POST", "/v1/projects/{projectsId}/locations/{locationsId}/repositories/{repositoriesId}:setIamPolicy", Mutate),
];

/// Match a path against a template with `{name}` captures (a capture may carry a
/// literal prefix or a `:verb` suffix within its segment). Captures are percent-decoded.
pub fn match_path(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut caps = Vec::new();
    for (ts, ps) in t.iter().zip(p.iter()) {
        match (ts.find('{'), ts.find('}')) {
            (Some(open), Some(close)) if close > open => {
                let prefix = &ts[..open];
                let name = ts[open + 1..close].trim_start_matches('+');
                let suffix = &ts[close + 1..];
                let inner = ps.strip_prefix(prefix)?.strip_suffix(suffix)?;
                if inner.is_empty() || inner.contains(':') {
                    return None;
                }
                caps.push((name.to_string(), percent_decode(inner)));
            }
            _ => {
                if ts != ps {
                    return None;
                }
            }
        }
    }
    Some(caps)
}

/// Decode `%XX` escapes (and, with `plus`, `+` as a space).
pub(crate) fn percent_decode_with(s: &str, plus: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decode a path segment.
pub(crate) fn percent_decode(s: &str) -> String {
    percent_decode_with(s, false)
}

/// Parse a query string into decoded pairs, in order.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode_with(k, true), percent_decode_with(v, true))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_templates() {
        let caps = match_path(
            "/v3/projects/{projectsId}:getIamPolicy",
            "/v3/projects/p:getIamPolicy",
        )
        .unwrap();
        assert_eq!(caps, vec![("projectsId".to_string(), "p".to_string())]);
        assert!(match_path("/v3/projects/{projectsId}", "/v3/projects/p:getIamPolicy").is_none());
        assert!(match_path(
            "/v1/{a}/{b}/services:batchGet",
            "/v1/projects/p/services:batchGet"
        )
        .is_some());
        assert!(match_path(
            "/v1/{a}/{b}/services/{c}",
            "/v1/projects/p/services:batchGet"
        )
        .is_none());
        let caps = match_path(
            "/v1/projects/{p}/serviceAccounts/{sa}",
            "/v1/projects/p/serviceAccounts/a%40p.iam",
        )
        .unwrap();
        assert_eq!(caps[1].1, "a@p.iam");
        assert_eq!(
            parse_query("names=a%2Fb&names=c+d&x"),
            vec![
                ("names".to_string(), "a/b".to_string()),
                ("names".to_string(), "c d".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(percent_decode("%4"), "%4");
    }
}
