#!/usr/bin/env python3
"""Drive the GCP fake (crates/gitpod-refarch-fake-gcp) with Google's official
discovery-based Python client (google-api-python-client, installed by
scripts/install-google-clients.sh): an independent client nobody here wrote, with
its own request building and URL templates.

It runs the GCP sequence of the reference architecture guide (what its gcloud
commands do, call for call where gcloud uses the same APIs): project, billing, the
7 APIs one at a time, service accounts and role bindings, the network, the cluster
with the guide's settings, default pool removal, the three pools, the DNS zone, the
MySQL 5.7 instance with explicit_defaults_for_timestamp=off, database and user, the
keys; then reads, values the fake must refuse as GCP does, and deletes.

Environment:
  GCP_FAKE_URL             base URL of the fake (required)
  GCP_FAKE_DISCOVERY_DIR   discovery documents (default ~/.cache/gitpod-refarch/discovery,
                           or $GITPOD_REFARCH_DISCOVERY_DIR)
  GCP_FAKE_PROJECT         the project to create (default gitpod-py)

Prints one line per step and "guide sequence passed" at the end; exits non-zero on
the first failure.
"""

import json
import os
import sys
import time

from google.auth.credentials import AnonymousCredentials
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError

URL = os.environ["GCP_FAKE_URL"].rstrip("/")
DISCOVERY = os.environ.get("GCP_FAKE_DISCOVERY_DIR") or os.environ.get(
    "GITPOD_REFARCH_DISCOVERY_DIR"
) or os.path.expanduser("~/.cache/gitpod-refarch/discovery")
PROJECT = os.environ.get("GCP_FAKE_PROJECT", "gitpod-py")
REGION = "us-central1"
CLUSTER = "gitpod"
DOMAIN = "gitpod.example.com"
BILLING_ACCOUNT = "billingAccounts/0X0X0X-0X0X0X-0X0X0X"
APIS = [
    "cloudbilling.googleapis.com",
    "containerregistry.googleapis.com",
    "iam.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "dns.googleapis.com",
    "sqladmin.googleapis.com",
]
# gcloud's "gke-default" scope alias, expanded as gcloud sends it.
GKE_DEFAULT_SCOPES = [
    "https://www.googleapis.com/auth/devstorage.read_only",
    "https://www.googleapis.com/auth/logging.write",
    "https://www.googleapis.com/auth/monitoring",
    "https://www.googleapis.com/auth/servicecontrol",
    "https://www.googleapis.com/auth/service.management.readonly",
    "https://www.googleapis.com/auth/trace.append",
]
DNS_SCOPE = "https://www.googleapis.com/auth/ndev.clouddns.readwrite"


def client(doc_name):
    """A client built from the cached discovery document, pointed at the fake."""
    with open(os.path.join(DISCOVERY, f"{doc_name}.json"), encoding="utf-8") as f:
        doc = json.load(f)
    # api_endpoint replaces rootUrl + servicePath.
    endpoint = f"{URL}/{doc.get('servicePath', '')}"
    return build_from_document(
        doc,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )


crm = client("cloudresourcemanager.v1")
billing = client("cloudbilling.v1")
usage = client("serviceusage.v1")
iam = client("iam.v1")
compute = client("compute.v1")
gke = client("container.v1")
dns = client("dns.v1")
sql = client("sqladmin.v1beta4")


def step(msg):
    print(f"- {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def until(fn, done, what, tries=50):
    for _ in range(tries):
        v = fn()
        if done(v):
            return v
        time.sleep(0.02)
    raise AssertionError(f"{what} never finished: {v}")


def lro(get, name):
    """Poll a google.longrunning.Operation (Resource Manager, Service Usage)."""
    op = until(lambda: get(name=name).execute(), lambda o: o.get("done"), name)
    check("error" not in op, f"{name} failed: {op}")
    return op


def gke_op(op):
    name = f"projects/{PROJECT}/locations/{REGION}/operations/{op['name']}"
    done = until(
        lambda: gke.projects().locations().operations().get(name=name).execute(),
        lambda o: o.get("status") == "DONE",
        name,
    )
    check("error" not in done, f"{name} failed: {done}")
    return done


def sql_op(op):
    done = until(
        lambda: sql.operations().get(project=PROJECT, operation=op["name"]).execute(),
        lambda o: o.get("status") == "DONE",
        op["name"],
    )
    check("error" not in done, f"{op['name']} failed: {done}")
    return done


def compute_wait(op):
    """operations.wait, as gcloud uses it: one call that returns when it is done."""
    if "region" in op:
        region = op["region"].rsplit("/", 1)[-1]
        done = compute.regionOperations().wait(
            project=PROJECT, region=region, operation=op["name"]
        ).execute()
    else:
        done = compute.globalOperations().wait(project=PROJECT, operation=op["name"]).execute()
    check(done.get("status") == "DONE", f"wait answered before the end: {done}")
    check("error" not in done, f"{op['name']} failed: {done}")
    return done


def refused(what, fn, status=400, contains=None):
    try:
        fn().execute()
    except HttpError as e:
        got = e.resp.status
        body = e.content.decode("utf-8", "replace")
        check(got == status, f"{what}: expected {status}, got {got}: {body}")
        if contains:
            check(contains in body, f"{what}: {contains!r} not in {body}")
        step(f"refused as GCP does ({got}): {what}")
        return
    raise AssertionError(f"{what}: the fake accepted it")


def sa_email(name):
    return f"{name}@{PROJECT}.iam.gserviceaccount.com"


def add_binding(member, role):
    """gcloud projects add-iam-policy-binding: read, modify, write with the etag."""
    policy = crm.projects().getIamPolicy(resource=PROJECT, body={}).execute()
    bindings = policy.setdefault("bindings", [])
    for b in bindings:
        if b["role"] == role:
            if member not in b["members"]:
                b["members"].append(member)
            break
    else:
        bindings.append({"role": role, "members": [member]})
    crm.projects().setIamPolicy(resource=PROJECT, body={"policy": policy}).execute()


def pool(name, machine, disk_gb, labels, min_nodes, max_nodes):
    """A node pool as `gcloud container node-pools create` sends the guide's flags."""
    return {
        "nodePool": {
            "name": name,
            "initialNodeCount": 1,
            "config": {
                "machineType": machine,
                "diskType": "pd-ssd",
                "diskSizeGb": disk_gb,
                "imageType": "UBUNTU_CONTAINERD",
                "metadata": {"disable-legacy-endpoints": "true"},
                "oauthScopes": GKE_DEFAULT_SCOPES + [DNS_SCOPE],
                "labels": labels,
            },
            "autoscaling": {"enabled": True, "minNodeCount": min_nodes, "maxNodeCount": max_nodes},
            "management": {"autoUpgrade": False, "autoRepair": True},
            "maxPodsConstraint": {"maxPodsPerNode": "110"},
        }
    }


def main():
    parent = f"projects/{PROJECT}/locations/{REGION}"
    cluster_name = f"{parent}/clusters/{CLUSTER}"

    # --- Project and billing (gcloud projects create; gcloud billing projects link)
    op = crm.projects().create(body={"projectId": PROJECT, "name": PROJECT}).execute()
    done = lro(crm.operations().get, op["name"])
    check(done["response"]["projectId"] == PROJECT, done)
    project = crm.projects().get(projectId=PROJECT).execute()
    check(project["lifecycleState"] == "ACTIVE", project)
    step(f"project {PROJECT} created (number {project['projectNumber']})")
    info = billing.projects().updateBillingInfo(
        name=f"projects/{PROJECT}", body={"billingAccountName": BILLING_ACCOUNT}
    ).execute()
    check(info["billingEnabled"] is True, info)
    step("billing linked")

    # --- The 7 APIs, one `gcloud services enable` each
    for api in APIS:
        op = usage.services().enable(name=f"projects/{PROJECT}/services/{api}", body={}).execute()
        lro(usage.operations().get, op["name"])
    enabled = usage.services().list(parent=f"projects/{PROJECT}", filter="state:ENABLED").execute()
    names = sorted(s["config"]["name"] for s in enabled.get("services", []))
    check(names == sorted(APIS), names)
    step(f"{len(APIS)} APIs enabled")

    # --- Service accounts and their project roles
    accounts = {
        "gitpod-gke": ["roles/storage.admin", "roles/logging.logWriter",
                       "roles/monitoring.metricWriter", "roles/container.admin"],
        "gitpod-dns": ["roles/dns.admin"],
        "gitpod-storage": ["roles/storage.admin", "roles/storage.objectAdmin"],
        "gitpod-mysql": ["roles/cloudsql.client"],
    }
    for name, roles in accounts.items():
        sa = iam.projects().serviceAccounts().create(
            name=f"projects/{PROJECT}",
            body={"accountId": name, "serviceAccount": {"displayName": name}},
        ).execute()
        check(sa["email"] == sa_email(name), sa)
        for role in roles:
            add_binding(f"serviceAccount:{sa_email(name)}", role)
    policy = crm.projects().getIamPolicy(resource=PROJECT, body={}).execute()
    bound = {(b["role"], m) for b in policy["bindings"] for m in b["members"]}
    for name, roles in accounts.items():
        for role in roles:
            check((role, f"serviceAccount:{sa_email(name)}") in bound, (role, name))
    step(f"{len(accounts)} service accounts with their roles")

    # --- The network (the guide lets GKE create the subnetwork; the fake needs it in Compute)
    net = compute.networks().insert(
        project=PROJECT, body={"name": "gitpod-vpc", "autoCreateSubnetworks": False}
    ).execute()
    compute_wait(net)
    sub = compute.subnetworks().insert(
        project=PROJECT,
        region=REGION,
        body={
            "name": f"gitpod-{CLUSTER}",
            "network": f"projects/{PROJECT}/global/networks/gitpod-vpc",
            "ipCidrRange": "10.0.0.0/20",
            "privateIpGoogleAccess": True,
            "secondaryIpRanges": [
                {"rangeName": "pods", "ipCidrRange": "10.4.0.0/14"},
                {"rangeName": "services", "ipCidrRange": "10.8.0.0/20"},
            ],
        },
    ).execute()
    compute_wait(sub)
    agg = compute.subnetworks().aggregatedList(project=PROJECT).execute()
    subs = agg["items"][f"regions/{REGION}"]["subnetworks"]
    check([s["name"] for s in subs] == [f"gitpod-{CLUSTER}"], agg)
    step("network and subnetwork (operations.wait, aggregated list)")

    # --- The cluster with the guide's settings
    server = gke.projects().locations().getServerConfig(name=parent).execute()
    check(len(server["validMasterVersions"]) > 0, server)
    mt = compute.machineTypes().get(project=PROJECT, zone=f"{REGION}-b", machineType="e2-standard-2").execute()
    check(mt["guestCpus"] == 2, mt)
    guide_cluster = {
        "name": CLUSTER,
        "initialClusterVersion": "1.33",
        "network": f"projects/{PROJECT}/global/networks/gitpod-vpc",
        "subnetwork": f"projects/{PROJECT}/regions/{REGION}/subnetworks/gitpod-{CLUSTER}",
        "releaseChannel": {"channel": "UNSPECIFIED"},
        "masterAuth": {"clientCertificateConfig": {"issueClientCertificate": False}},
        "ipAllocationPolicy": {
            "useIpAliases": True,
            "clusterSecondaryRangeName": "pods",
            "servicesSecondaryRangeName": "services",
        },
        "networkPolicy": {"provider": "CALICO", "enabled": True},
        "addonsConfig": {
            "horizontalPodAutoscaling": {"disabled": False},
            "dnsCacheConfig": {"enabled": True},
            "networkPolicyConfig": {"disabled": False},
        },
        "defaultMaxPodsConstraint": {"maxPodsPerNode": "110"},
        "nodePools": [{
            "name": "default-pool",
            "initialNodeCount": 1,
            "config": {
                "machineType": "e2-standard-2",
                "diskType": "pd-ssd",
                "diskSizeGb": 50,
                "imageType": "UBUNTU_CONTAINERD",
                "serviceAccount": sa_email("gitpod-gke"),
                "metadata": {"disable-legacy-endpoints": "true"},
                "oauthScopes": GKE_DEFAULT_SCOPES,
            },
            "autoscaling": {"enabled": True, "minNodeCount": 0, "maxNodeCount": 1},
            "management": {"autoUpgrade": False, "autoRepair": True},
            "maxPodsConstraint": {"maxPodsPerNode": "110"},
        }],
    }
    # The guide's own version (1.22) is no longer offered: refused, as GKE does.
    old = json.loads(json.dumps(guide_cluster))
    old["initialClusterVersion"] = "1.22.12-gke.1200"
    refused(
        "cluster at the guide's Kubernetes 1.22.12-gke.1200",
        lambda: gke.projects().locations().clusters().create(parent=parent, body={"cluster": old}),
        contains="is unsupported",
    )
    missing = json.loads(json.dumps(guide_cluster))
    missing["network"] = f"projects/{PROJECT}/global/networks/no-such-vpc"
    refused(
        "cluster on a network that does not exist",
        lambda: gke.projects().locations().clusters().create(parent=parent, body={"cluster": missing}),
        contains="does not exist",
    )
    channel = json.loads(json.dumps(guide_cluster))
    channel["releaseChannel"] = {"channel": "REGULAR"}
    refused(
        "auto-upgrade off in a release channel",
        lambda: gke.projects().locations().clusters().create(parent=parent, body={"cluster": channel}),
    )
    op = gke.projects().locations().clusters().create(parent=parent, body={"cluster": guide_cluster}).execute()
    gke_op(op)
    cl = gke.projects().locations().clusters().get(name=cluster_name).execute()
    check(cl["status"] == "RUNNING", cl)
    check(cl["currentMasterVersion"].startswith("1.33."), cl["currentMasterVersion"])
    check(cl["currentMasterVersion"] in server["validMasterVersions"], cl["currentMasterVersion"])
    step(f"cluster {CLUSTER} running {cl['currentMasterVersion']}")

    # --- Remove the default pool, add the guide's three pools
    op = gke.projects().locations().clusters().nodePools().delete(
        name=f"{cluster_name}/nodePools/default-pool"
    ).execute()
    gke_op(op)
    pools_api = gke.projects().locations().clusters().nodePools()
    refused(
        "node pool of an unknown machine type",
        lambda: pools_api.create(parent=cluster_name, body=pool("x", "n2d-standard-17", 100, {}, 1, 1)),
        contains="n2d-standard-17",
    )
    too_new = pool("x", "n2d-standard-4", 100, {}, 1, 1)
    too_new["nodePool"]["version"] = "1.99"
    refused("node pool at a version GKE does not offer",
            lambda: pools_api.create(parent=cluster_name, body=too_new))
    for body in [
        pool("services", "n2d-standard-4", 100, {
            "gitpod.io/workload_meta": "true",
            "gitpod.io/workload_ide": "true",
            "gitpod.io/workload_workspace_services": "true",
        }, 1, 4),
        pool("regular-workspaces", "n2d-standard-16", 512,
             {"gitpod.io/workload_workspace_regular": "true"}, 1, 50),
        pool("headless-workspaces", "n2d-standard-16", 512,
             {"gitpod.io/workload_workspace_headless": "true"}, 1, 50),
    ]:
        gke_op(pools_api.create(parent=cluster_name, body=body).execute())
    listed = pools_api.list(parent=cluster_name).execute()
    check(sorted(p["name"] for p in listed["nodePools"])
          == ["headless-workspaces", "regular-workspaces", "services"], listed)
    for p in listed["nodePools"]:
        check(p["management"]["autoUpgrade"] is False, p)
        check(p["version"] == cl["currentMasterVersion"], p)
    ops = gke.projects().locations().operations().list(parent=parent).execute()
    check(len(ops["operations"]) >= 5, ops)
    step("default pool removed, 3 pools added")

    # --- DNS zone
    zone = dns.managedZones().create(project=PROJECT, body={
        "name": CLUSTER,
        "dnsName": f"{DOMAIN}.",
        "description": "Automatically managed zone by kubernetes.io/external-dns",
    }).execute()
    check(len(zone["nameServers"]) == 4, zone)
    step("DNS zone")

    # --- Cloud SQL (gcloud uses sqladmin v1beta4)
    tiers = sql.tiers().list(project=PROJECT).execute()
    check(any(t["tier"] == "db-n1-standard-2" for t in tiers["items"]), tiers)
    flags = sql.flags().list(databaseVersion="MYSQL_5_7").execute()
    edft = [f for f in flags["items"] if f["name"] == "explicit_defaults_for_timestamp"]
    check(edft and edft[0]["type"] == "BOOLEAN", flags)
    instance = "gitpod-mysql"
    body = {
        "name": instance,
        "region": REGION,
        "databaseVersion": "MYSQL_5_7",
        "settings": {
            "tier": "db-n1-standard-2",
            "dataDiskSizeGb": "20",
            "storageAutoResize": True,
            "availabilityType": "REGIONAL",
            "backupConfiguration": {"enabled": True, "binaryLogEnabled": True},
        },
    }
    bad_tier = json.loads(json.dumps(body))
    bad_tier["settings"]["tier"] = "db-n1-standard-3"
    refused("Cloud SQL tier that does not exist",
            lambda: sql.instances().insert(project=PROJECT, body=bad_tier), contains="Tier")
    private = json.loads(json.dumps(body))
    private["settings"]["ipConfiguration"] = {
        "ipv4Enabled": False,
        "privateNetwork": f"projects/{PROJECT}/global/networks/no-such-vpc",
    }
    refused("Cloud SQL private IP on a network that does not exist",
            lambda: sql.instances().insert(project=PROJECT, body=private), contains="does not exist")
    sql_op(sql.instances().insert(project=PROJECT, body=body).execute())
    for name, value, what in [
        ("explicit_defaults_for_timestamp", "maybe", "invalid value of a boolean flag"),
        ("no_such_flag", "on", "unknown database flag"),
        ("cloudsql.iam_authentication", "on", "PostgreSQL flag on MySQL"),
    ]:
        refused(f"{what} ({name}={value})",
                lambda n=name, v=value: sql.instances().patch(
                    project=PROJECT, instance=instance,
                    body={"settings": {"databaseFlags": [{"name": n, "value": v}]}}),
                contains="Invalid Flag Name or Value")
    sql_op(sql.instances().patch(project=PROJECT, instance=instance, body={
        "settings": {"databaseFlags": [{"name": "explicit_defaults_for_timestamp", "value": "off"}]}
    }).execute())
    sql_op(sql.databases().insert(project=PROJECT, instance=instance, body={"name": "gitpod"}).execute())
    sql_op(sql.users().insert(project=PROJECT, instance=instance,
                              body={"name": "gitpod", "password": "not-a-real-password"}).execute())
    inst = sql.instances().get(project=PROJECT, instance=instance).execute()
    check(inst["state"] == "RUNNABLE", inst)
    check(inst["settings"]["databaseFlags"]
          == [{"name": "explicit_defaults_for_timestamp", "value": "off"}], inst["settings"])
    db = sql.databases().get(project=PROJECT, instance=instance, database="gitpod").execute()
    check(db["collation"] == "utf8_general_ci", db)
    step("MySQL 5.7 instance with explicit_defaults_for_timestamp=off, database and user")

    # --- Keys (gcloud iam service-accounts keys create)
    keys = {}
    for name in ["gitpod-dns", "gitpod-storage", "gitpod-mysql"]:
        key = iam.projects().serviceAccounts().keys().create(
            name=f"projects/{PROJECT}/serviceAccounts/{sa_email(name)}",
            body={"privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE"},
        ).execute()
        check(key.get("privateKeyData"), key)
        keys[name] = key["name"]
    step("3 service account keys")

    # --- Reads
    check(crm.projects().get(projectId=PROJECT).execute()["projectId"] == PROJECT, "project")
    check(billing.projects().getBillingInfo(name=f"projects/{PROJECT}").execute()["billingEnabled"], "billing")
    sas = iam.projects().serviceAccounts().list(name=f"projects/{PROJECT}").execute()
    check(len(sas["accounts"]) == len(accounts), sas)
    for name in keys:
        listed_keys = iam.projects().serviceAccounts().keys().list(
            name=f"projects/{PROJECT}/serviceAccounts/{sa_email(name)}", keyTypes="USER_MANAGED"
        ).execute()
        check(len(listed_keys["keys"]) == 1, listed_keys)
    check(gke.projects().locations().clusters().list(parent=parent).execute()["clusters"][0]["name"] == CLUSTER, "clusters")
    check(dns.managedZones().get(project=PROJECT, managedZone=CLUSTER).execute()["dnsName"] == f"{DOMAIN}.", "zone")
    check(len(sql.users().list(project=PROJECT, instance=instance).execute()["items"]) == 2, "users")
    check(any(d["name"] == "gitpod" for d in sql.databases().list(project=PROJECT, instance=instance).execute()["items"]), "databases")
    sql_ops = sql.operations().list(project=PROJECT, instance=instance).execute()
    check(len(sql_ops["items"]) == 4, sql_ops)
    refused("machine type that does not exist",
            lambda: compute.machineTypes().get(project=PROJECT, zone=f"{REGION}-b", machineType="n2d-standard-17"),
            status=404)
    step("reads")

    # --- Deletes
    for key in keys.values():
        iam.projects().serviceAccounts().keys().delete(name=key).execute()
    sql_op(sql.users().delete(project=PROJECT, instance=instance, name="gitpod", host="%").execute())
    sql_op(sql.databases().delete(project=PROJECT, instance=instance, database="gitpod").execute())
    sql_op(sql.instances().delete(project=PROJECT, instance=instance).execute())
    dns.managedZones().delete(project=PROJECT, managedZone=CLUSTER).execute()
    for p in ["services", "regular-workspaces", "headless-workspaces"]:
        gke_op(pools_api.delete(name=f"{cluster_name}/nodePools/{p}").execute())
    gke_op(gke.projects().locations().clusters().delete(name=cluster_name).execute())
    compute_wait(compute.subnetworks().delete(project=PROJECT, region=REGION, subnetwork=f"gitpod-{CLUSTER}").execute())
    compute_wait(compute.networks().delete(project=PROJECT, network="gitpod-vpc").execute())
    for name in accounts:
        iam.projects().serviceAccounts().delete(
            name=f"projects/{PROJECT}/serviceAccounts/{sa_email(name)}"
        ).execute()
    check(gke.projects().locations().clusters().list(parent=parent).execute().get("clusters") is None, "clusters left")
    check(sql.instances().list(project=PROJECT).execute().get("items") is None, "instances left")
    check(dns.managedZones().list(project=PROJECT).execute().get("managedZones") in (None, []), "zones left")
    check(iam.projects().serviceAccounts().list(name=f"projects/{PROJECT}").execute().get("accounts") is None, "accounts left")
    check(compute.networks().list(project=PROJECT).execute().get("items") is None, "networks left")
    step("deleted")
    print("guide sequence passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except HttpError as e:
        print(f"FAILED: {e.resp.status} {e.uri}\n{e.content.decode('utf-8', 'replace')}", file=sys.stderr)
        sys.exit(1)
