#!/usr/bin/env python3
"""Drive the Azure fake (crates/gitpod-refarch-fake-azure) with the official Azure
Python management clients, as an independent client nobody here wrote: every resource
type the provider uses goes through create (begin_* + .result(), so the SDK's own LRO
poller runs), get, update and delete. Exits non-zero with a clear message on the first
failure. Install the clients with scripts/install-azure-clients.sh.

Environment:
  AZURE_FAKE_URL            the fake's base URL (ARM and Entra ID), e.g. http://127.0.0.1:PORT
  AZURE_FAKE_SUBSCRIPTION   subscription id
  AZURE_FAKE_TENANT         tenant id
  AZURE_FAKE_CLIENT_ID      client id the fake's token endpoint accepts
  AZURE_FAKE_CLIENT_SECRET  its secret (a test value)
  AZURE_FAKE_LOCATION       region (default westeurope)
  AZURE_FAKE_PREFIX         name prefix (default py)

The fake is plain HTTP: azure-core's bearer-token policy refuses non-TLS URLs unless
the request context says `enforce_https=False`, which AllowHttp below sets on every
request (ahead of the real ARMChallengeAuthenticationPolicy, which still runs). The
token comes from the fake's Entra ID endpoint (client credentials) and is served by a
static TokenCredential.
"""

import json
import os
import sys
import time
import traceback
import urllib.parse
import urllib.request

from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.policies import SansIOHTTPPolicy

from azure.mgmt.authorization.v2022_04_01 import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01 import models as authz
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry import models as acr
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.containerservice import models as aks
from azure.mgmt.dns import DnsManagementClient
from azure.mgmt.dns import models as dns
from azure.mgmt.msi.v2024_11_30 import ManagedServiceIdentityClient
from azure.mgmt.msi.v2024_11_30 import models as msi
from azure.mgmt.mysqlflexibleservers import MySQLManagementClient
from azure.mgmt.mysqlflexibleservers import models as mysql
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network import models as net
from azure.mgmt.privatedns import PrivateDnsManagementClient
from azure.mgmt.privatedns import models as pdns
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.resources import models as res

URL = os.environ["AZURE_FAKE_URL"].rstrip("/")
SUB = os.environ["AZURE_FAKE_SUBSCRIPTION"]
TENANT = os.environ["AZURE_FAKE_TENANT"]
CLIENT_ID = os.environ["AZURE_FAKE_CLIENT_ID"]
CLIENT_SECRET = os.environ["AZURE_FAKE_CLIENT_SECRET"]
LOC = os.environ.get("AZURE_FAKE_LOCATION", "westeurope")
P = os.environ.get("AZURE_FAKE_PREFIX", "py")
RG = f"rg-{P}"
TAGS = {"gitpod-refarch/installation": P}

STEP = ["start"]


class Failed(Exception):
    pass


def step(name):
    STEP[0] = name
    print(f"-- {name}", flush=True)


def check(cond, msg):
    if not cond:
        raise Failed(msg)


class StaticToken:
    """A TokenCredential serving one bearer token (fetched from the fake's Entra ID)."""

    def __init__(self, token, expires_on):
        self._token, self._expires_on = token, expires_on

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self._token, self._expires_on)

    def get_token_info(self, *scopes, options=None):
        return AccessTokenInfo(self._token, self._expires_on)


class AllowHttp(SansIOHTTPPolicy):
    """Lets the bearer-token policy send its token to the fake's http:// URL."""

    def on_request(self, request):
        request.context["enforce_https"] = False


def fetch_token():
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": "https://management.azure.com/.default",
        }
    ).encode()
    req = urllib.request.Request(
        f"{URL}/{TENANT}/oauth2/v2.0/token",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        body = json.load(r)
    return StaticToken(body["access_token"], int(time.time()) + int(body.get("expires_in", 3599)))


def client(cls, cred):
    return cls(
        cred,
        SUB,
        base_url=URL,
        per_call_policies=[AllowHttp()],
        polling_interval=0,
        retry_total=3,
        retry_backoff_factor=0.01,
    )


def expect_not_found(fn, what):
    try:
        fn()
    except ResourceNotFoundError:
        return
    raise Failed(f"{what} still exists after delete")


def get_attr(obj, *path):
    """Read a nested value from an SDK model (msrest attrs or TypeSpec mapping)."""
    for p in path:
        obj = getattr(obj, p, None) if not isinstance(obj, dict) else obj.get(p)
        if obj is None:
            return None
    return obj


def main():
    step("token from the fake's Entra ID endpoint")
    cred = fetch_token()
    resources = client(ResourceManagementClient, cred)
    network = client(NetworkManagementClient, cred)
    identities = client(ManagedServiceIdentityClient, cred)
    authorization = client(AuthorizationManagementClient, cred)
    containers = client(ContainerServiceClient, cred)
    zones = client(DnsManagementClient, cred)
    private_zones = client(PrivateDnsManagementClient, cred)
    registries = client(ContainerRegistryManagementClient, cred)
    databases = client(MySQLManagementClient, cred)

    # ---------------------------------------------------------------- foundation
    step("resource group: check_existence, create_or_update, get, update (PUT)")
    check(not resources.resource_groups.check_existence(RG), "resource group exists before create")
    resources.resource_groups.create_or_update(RG, res.ResourceGroup(location=LOC, tags=TAGS))
    check(resources.resource_groups.check_existence(RG), "resource group missing after create")
    g = resources.resource_groups.get(RG)
    check(g.location == LOC and g.tags == TAGS, f"resource group read back: {g}")
    resources.resource_groups.create_or_update(RG, res.ResourceGroup(location=LOC, tags={**TAGS, "step": "2"}))
    check(resources.resource_groups.get(RG).tags.get("step") == "2", "resource group update not read back")

    step("providers: register, get until Registered")
    for ns in [
        "Microsoft.ContainerService",
        "Microsoft.Network",
        "Microsoft.Compute",
        "Microsoft.DBforMySQL",
        "Microsoft.ContainerRegistry",
        "Microsoft.ManagedIdentity",
    ]:
        resources.providers.register(ns)
        state = None
        for _ in range(10):
            state = resources.providers.get(ns).registration_state
            if state == "Registered":
                break
        check(state == "Registered", f"{ns}: registrationState {state}")

    # ---------------------------------------------------------------- identities
    step("user-assigned identities: create_or_update, get, update (PUT)")
    ids = {}
    for name in [f"id-{P}-cluster", f"id-{P}-cert-manager", f"id-{P}-external-dns"]:
        identities.user_assigned_identities.create_or_update(RG, name, msi.Identity(location=LOC, tags=TAGS))
        i = identities.user_assigned_identities.get(RG, name)
        check(i.principal_id and i.client_id and i.tenant_id, f"identity {name}: {i}")
        ids[name] = i
    name = f"id-{P}-cluster"
    identities.user_assigned_identities.create_or_update(RG, name, msi.Identity(location=LOC, tags={**TAGS, "step": "2"}))
    check(identities.user_assigned_identities.get(RG, name).tags.get("step") == "2", "identity update")

    # ---------------------------------------------------------------- network
    step("virtual network with subnets: begin_create_or_update (LRO), get, update")
    vnet_name = f"vnet-{P}"

    def vnet_body(tags):
        return net.VirtualNetwork(
            location=LOC,
            tags=tags,
            address_space=net.AddressSpace(address_prefixes=["10.0.0.0/16"]),
            subnets=[
                net.Subnet(name="nodes", address_prefix="10.0.0.0/20"),
                net.Subnet(
                    name="mysql",
                    address_prefix="10.0.16.0/24",
                    delegations=[net.Delegation(name="mysql", service_name="Microsoft.DBforMySQL/flexibleServers")],
                ),
            ],
        )

    vnet = network.virtual_networks.begin_create_or_update(RG, vnet_name, vnet_body(TAGS)).result()
    check(vnet.provisioning_state == "Succeeded", f"vnet provisioningState {vnet.provisioning_state}")
    check(sorted(s.name for s in vnet.subnets) == ["mysql", "nodes"], f"vnet subnets {vnet.subnets}")
    vnet = network.virtual_networks.begin_create_or_update(RG, vnet_name, vnet_body({**TAGS, "step": "2"})).result()
    check(network.virtual_networks.get(RG, vnet_name).tags.get("step") == "2", "vnet update")
    mysql_subnet = network.subnets.get(RG, vnet_name, "mysql")
    check(
        mysql_subnet.delegations and mysql_subnet.delegations[0].service_name == "Microsoft.DBforMySQL/flexibleServers",
        f"mysql subnet delegation: {mysql_subnet.delegations}",
    )
    nodes_subnet = network.subnets.get(RG, vnet_name, "nodes")

    # ---------------------------------------------------------------- role assignments
    step("role assignment: create (retrying PrincipalNotFound), get, RoleAssignmentExists, list")
    ra_name = "2b6f1c3e-7d8a-4e4b-9c2d-0a1b2c3d4e5f"
    ra_params = authz.RoleAssignmentCreateParameters(
        role_definition_id=f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/4d97b98b-1d4f-4787-a291-c67834d212e7",
        principal_id=ids[f"id-{P}-cluster"].principal_id,
        principal_type="ServicePrincipal",
    )

    def create_role(scope, name, params):
        """Entra ID replication: a new principal is PrincipalNotFound for a while."""
        for attempt in range(10):
            try:
                return authorization.role_assignments.create(scope, name, params)
            except HttpResponseError as e:
                if e.error is not None and e.error.code == "PrincipalNotFound" and attempt < 9:
                    continue
                raise

    create_role(vnet.id, ra_name, ra_params)
    ra = authorization.role_assignments.get(vnet.id, ra_name)
    check(ra.principal_id == ra_params.principal_id, f"role assignment read back: {ra}")
    authorization.role_assignments.create(vnet.id, ra_name, ra_params)  # same name: idempotent
    try:
        authorization.role_assignments.create(vnet.id, "5e0c4f6b-1a2d-4c3e-8f5a-6b7c8d9e0f12", ra_params)
        raise Failed("the same role assignment under another name was not refused")
    except HttpResponseError as e:
        check(e.status_code == 409 and e.error and e.error.code == "RoleAssignmentExists", f"second create: {e}")
    listed = list(authorization.role_assignments.list_for_scope(vnet.id, filter="atScope()"))
    check(any(r.name == ra_name for r in listed), f"list_for_scope: {[r.name for r in listed]}")

    # ---------------------------------------------------------------- AKS
    step("managed cluster: begin_create_or_update (LRO), get, update, credentials")
    cluster_name = f"aks-{P}"
    cluster_identity = ids[f"id-{P}-cluster"]

    def pool_profile(**kw):
        return dict(
            count=1,
            vm_size="Standard_D4_v4",
            os_disk_size_gb=100,
            os_disk_type="Managed",
            os_type="Linux",
            os_sku="Ubuntu",
            max_pods=110,
            enable_auto_scaling=True,
            min_count=1,
            max_count=3,
            vnet_subnet_id=nodes_subnet.id,
            node_labels={"gitpod.io/workload_meta": "true"},
            **kw,
        )

    def cluster_body(tags):
        return aks.ManagedCluster(
            location=LOC,
            tags=tags,
            identity=aks.ManagedClusterIdentity(
                type="UserAssigned",
                user_assigned_identities={cluster_identity.id: aks.ManagedServiceIdentityUserAssignedIdentitiesValue()},
            ),
            sku=aks.ManagedClusterSKU(name="Base", tier="Standard"),
            properties=aks.ManagedClusterProperties(
                kubernetes_version="1.33",
                dns_prefix=P,
                enable_rbac=True,
                disable_local_accounts=True,
                agent_pool_profiles=[aks.ManagedClusterAgentPoolProfile(name="services", mode="System", type="VirtualMachineScaleSets", **pool_profile())],
                network_profile=aks.ContainerServiceNetworkProfile(
                    network_plugin="azure",
                    network_plugin_mode="overlay",
                    network_policy="calico",
                    network_dataplane="azure",
                    pod_cidr="192.168.0.0/16",
                    service_cidr="172.16.0.0/16",
                    dns_service_ip="172.16.0.10",
                ),
                auto_upgrade_profile=aks.ManagedClusterAutoUpgradeProfile(upgrade_channel="none", node_os_upgrade_channel="NodeImage"),
                oidc_issuer_profile=aks.ManagedClusterOIDCIssuerProfile(enabled=True),
                security_profile=aks.ManagedClusterSecurityProfile(
                    workload_identity=aks.ManagedClusterSecurityProfileWorkloadIdentity(enabled=True)
                ),
                aad_profile=aks.ManagedClusterAADProfile(managed=True, enable_azure_rbac=True, tenant_id=TENANT),
            ),
        )

    cluster = containers.managed_clusters.begin_create_or_update(RG, cluster_name, cluster_body(TAGS)).result()
    check(get_attr(cluster, "properties", "provisioning_state") == "Succeeded", f"cluster state {get_attr(cluster, 'properties', 'provisioning_state')}")
    issuer = get_attr(cluster, "properties", "oidc_issuer_profile", "issuer_url")
    check(issuer, "cluster has no OIDC issuer URL")
    cluster = containers.managed_clusters.get(RG, cluster_name)
    check(get_attr(cluster, "properties", "fqdn"), "cluster has no fqdn")
    containers.managed_clusters.begin_create_or_update(RG, cluster_name, cluster_body({**TAGS, "step": "2"})).result()
    check(containers.managed_clusters.get(RG, cluster_name).tags.get("step") == "2", "cluster update")
    creds = containers.managed_clusters.list_cluster_user_credentials(RG, cluster_name)
    check(creds.kubeconfigs and creds.kubeconfigs[0].value, "no user kubeconfig")

    step("agent pools: begin_create_or_update (LRO), get, list, update (scale)")
    for name in ["regularws", "headlessws"]:
        p = containers.agent_pools.begin_create_or_update(
            RG,
            cluster_name,
            name,
            aks.AgentPool(properties=aks.AgentPoolManagedClusterAgentPoolProfileProperties(
                    mode="User", type_properties_type="VirtualMachineScaleSets", **pool_profile()
                )),
        ).result()
        check(get_attr(p, "properties", "provisioning_state") == "Succeeded", f"pool {name}: {p}")
    pools = sorted(p.name for p in containers.agent_pools.list(RG, cluster_name))
    check(pools == ["headlessws", "regularws", "services"], f"pools {pools}")
    props = aks.AgentPoolManagedClusterAgentPoolProfileProperties(
        mode="User", type_properties_type="VirtualMachineScaleSets", **{**pool_profile(), "max_count": 5}
    )
    containers.agent_pools.begin_create_or_update(RG, cluster_name, "regularws", aks.AgentPool(properties=props)).result()
    got = containers.agent_pools.get(RG, cluster_name, "regularws")
    check(get_attr(got, "properties", "max_count") == 5, f"pool update: {got}")

    # ---------------------------------------------------------------- DNS
    step("DNS zone and record set: create_or_update, get, update, delete")
    zone_name = f"{P}.example.com"
    zone = zones.zones.create_or_update(RG, zone_name, dns.Zone(location="global", tags=TAGS))
    check(zone.name_servers, f"zone has no name servers: {zone}")
    zones.zones.create_or_update(RG, zone_name, dns.Zone(location="global", tags={**TAGS, "step": "2"}))
    check(zones.zones.get(RG, zone_name).tags.get("step") == "2", "zone update")
    rs = dns.RecordSet(ttl=300, a_records=[dns.ARecord(ipv4_address="203.0.113.10")], metadata={"owner": P})
    zones.record_sets.create_or_update(RG, zone_name, "www", "A", rs)
    got = zones.record_sets.get(RG, zone_name, "www", "A")
    check(got.ttl == 300 and got.a_records[0].ipv4_address == "203.0.113.10", f"record set: {got}")
    rs.ttl = 60
    zones.record_sets.create_or_update(RG, zone_name, "www", "A", rs)
    check(zones.record_sets.get(RG, zone_name, "www", "A").ttl == 60, "record set update")
    zones.record_sets.delete(RG, zone_name, "www", "A")
    expect_not_found(lambda: zones.record_sets.get(RG, zone_name, "www", "A"), "record set")

    step("federated identity credentials and DNS Zone Contributor roles")
    for i, controller in enumerate(["cert-manager", "external-dns"]):
        ident = ids[f"id-{P}-{controller}"]
        fic = msi.FederatedIdentityCredential(
            issuer=issuer,
            subject=f"system:serviceaccount:{controller}:{controller}",
            audiences=["api://AzureADTokenExchange"],
        )
        identities.federated_identity_credentials.create_or_update(RG, ident.name, controller, fic)
        got = identities.federated_identity_credentials.get(RG, ident.name, controller)
        check(got.issuer == issuer and got.subject == fic.subject, f"FIC read back: {got}")
        params = authz.RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/befefa01-2a29-4197-83a8-272ff33ce314",
            principal_id=ident.principal_id,
            principal_type="ServicePrincipal",
        )
        create_role(zone.id, f"4d8b3e5a-9f0c-4a6d-8e4f-2c3d4e5f607{i}", params)

    # ---------------------------------------------------------------- registry
    step("container registry: check_name_availability, begin_create (LRO), get, update")
    reg_name = f"{P}abcdef01"
    avail = registries.registries.check_name_availability(acr.RegistryNameCheckRequest(name=reg_name, type="Microsoft.ContainerRegistry/registries"))
    check(avail.name_available, f"registry name not available: {avail}")

    def registry_body(tags):
        return acr.Registry(location=LOC, tags=tags, sku=acr.Sku(name="Standard"), properties=acr.RegistryProperties(admin_user_enabled=False))

    reg = registries.registries.begin_create(RG, reg_name, registry_body(TAGS)).result()
    check(get_attr(reg, "properties", "login_server"), f"registry has no login server: {reg}")
    registries.registries.begin_create(RG, reg_name, registry_body({**TAGS, "step": "2"})).result()
    check(registries.registries.get(RG, reg_name).tags.get("step") == "2", "registry update")
    taken = registries.registries.check_name_availability(acr.RegistryNameCheckRequest(name=reg_name, type="Microsoft.ContainerRegistry/registries"))
    check(not taken.name_available, "an existing registry name is reported available")

    step("scope map and token: begin_create (LRO), get; generate credentials (LRO)")
    sm = registries.scope_maps.begin_create(
        RG,
        reg_name,
        "gitpod-push",
        acr.ScopeMap(properties=acr.ScopeMapProperties(description="gitpod push", actions=["repositories/*/content/read", "repositories/*/content/write", "repositories/*/metadata/read"])),
    ).result()
    check(registries.scope_maps.get(RG, reg_name, "gitpod-push").id == sm.id, "scope map get")
    registries.scope_maps.begin_create(
        RG,
        reg_name,
        "gitpod-push",
        acr.ScopeMap(properties=acr.ScopeMapProperties(description="gitpod push v2", actions=["repositories/*/content/read", "repositories/*/content/write", "repositories/*/metadata/read"])),
    ).result()
    check(get_attr(registries.scope_maps.get(RG, reg_name, "gitpod-push"), "properties", "description") == "gitpod push v2", "scope map update")
    tok = registries.tokens.begin_create(
        RG, reg_name, "gitpod-push", acr.Token(properties=acr.TokenProperties(scope_map_id=sm.id, status="enabled"))
    ).result()
    check(get_attr(registries.tokens.get(RG, reg_name, "gitpod-push"), "properties", "scope_map_id") == sm.id, "token get")
    cred_result = registries.registries.begin_generate_credentials(
        RG, reg_name, acr.GenerateCredentialsParameters(token_id=tok.id, name="password1")
    ).result()
    check(cred_result.passwords and cred_result.passwords[0].value, f"generateCredentials: {cred_result}")

    # ---------------------------------------------------------------- database
    step("MySQL: name check, private DNS zone + link (LRO), server (LRO), get, update")
    server_name = f"mysql-{P}-abcdef01"
    avail = databases.check_name_availability_without_location.execute(
        mysql.NameAvailabilityRequest(name=server_name, type="Microsoft.DBforMySQL/flexibleServers")
    )
    check(avail.name_available, f"server name not available: {avail}")
    pzone_name = f"{P}.private.mysql.database.azure.com"
    pzone = private_zones.private_zones.begin_create_or_update(RG, pzone_name, pdns.PrivateZone(location="global", tags=TAGS)).result()
    check(private_zones.private_zones.get(RG, pzone_name).id == pzone.id, "private zone get")
    private_zones.private_zones.begin_create_or_update(RG, pzone_name, pdns.PrivateZone(location="global", tags={**TAGS, "step": "2"})).result()
    check(private_zones.private_zones.get(RG, pzone_name).tags.get("step") == "2", "private zone update")
    link = private_zones.virtual_network_links.begin_create_or_update(
        RG,
        pzone_name,
        vnet_name,
        pdns.VirtualNetworkLink(
            location="global",
            tags=TAGS,
            properties=pdns.VirtualNetworkLinkProperties(virtual_network=pdns.SubResource(id=vnet.id), registration_enabled=False),
        ),
    ).result()
    check(get_attr(private_zones.virtual_network_links.get(RG, pzone_name, vnet_name), "properties", "virtual_network", "id") == vnet.id, f"link get: {link}")

    def server_body(tags):
        return mysql.Server(
            location=LOC,
            tags=tags,
            sku=mysql.MySQLServerSku(name="Standard_D2ds_v4", tier="GeneralPurpose"),
            administrator_login="gitpod",
            administrator_login_password="Fake-Passw0rd-For-Tests",
            version="8.0.21",
            create_mode="Default",
            storage=mysql.Storage(storage_size_gb=128, auto_grow="Enabled"),
            backup=mysql.Backup(backup_retention_days=7, geo_redundant_backup="Disabled"),
            high_availability=mysql.HighAvailability(mode="ZoneRedundant"),
            network=mysql.Network(
                delegated_subnet_resource_id=mysql_subnet.id,
                private_dns_zone_resource_id=pzone.id,
                public_network_access="Disabled",
            ),
        )

    server = databases.servers.begin_create(RG, server_name, server_body(TAGS)).result()
    check(server.fully_qualified_domain_name, f"server has no FQDN: {server}")
    got = databases.servers.get(RG, server_name)
    check(got.administrator_login_password is None, "GET answered the admin password")
    check(got.administrator_login == "gitpod", f"admin login {got.administrator_login}")
    databases.servers.begin_update(RG, server_name, mysql.ServerForUpdate(tags={**TAGS, "step": "2"})).result()
    check(databases.servers.get(RG, server_name).tags.get("step") == "2", "server update (PATCH)")

    step("MySQL: configuration (LRO) and database (LRO)")
    conf = databases.configurations.begin_create_or_update(
        RG, server_name, "explicit_defaults_for_timestamp", mysql.Configuration(value="OFF", source="user-override")
    ).result()
    check(databases.configurations.get(RG, server_name, "explicit_defaults_for_timestamp").value == "OFF", f"configuration: {conf}")
    databases.databases.begin_create_or_update(RG, server_name, "gitpod", mysql.Database(charset="utf8mb4", collation="utf8mb4_unicode_ci")).result()
    check(databases.databases.get(RG, server_name, "gitpod").charset == "utf8mb4", "database get")

    # ---------------------------------------------------------------- destroy
    step("delete everything (LROs where the API has them)")
    databases.databases.begin_delete(RG, server_name, "gitpod").result()
    expect_not_found(lambda: databases.databases.get(RG, server_name, "gitpod"), "database")
    databases.servers.begin_delete(RG, server_name).result()
    expect_not_found(lambda: databases.servers.get(RG, server_name), "server")
    private_zones.virtual_network_links.begin_delete(RG, pzone_name, vnet_name).result()
    private_zones.private_zones.begin_delete(RG, pzone_name).result()
    expect_not_found(lambda: private_zones.private_zones.get(RG, pzone_name), "private zone")
    registries.tokens.begin_delete(RG, reg_name, "gitpod-push").result()
    registries.scope_maps.begin_delete(RG, reg_name, "gitpod-push").result()
    registries.registries.begin_delete(RG, reg_name).result()
    expect_not_found(lambda: registries.registries.get(RG, reg_name), "registry")
    for i, controller in enumerate(["cert-manager", "external-dns"]):
        authorization.role_assignments.delete(zone.id, f"4d8b3e5a-9f0c-4a6d-8e4f-2c3d4e5f607{i}")
        identities.federated_identity_credentials.delete(RG, f"id-{P}-{controller}", controller)
    authorization.role_assignments.delete(vnet.id, ra_name)
    expect_not_found(lambda: authorization.role_assignments.get(vnet.id, ra_name), "role assignment")
    zones.zones.begin_delete(RG, zone_name).result()
    expect_not_found(lambda: zones.zones.get(RG, zone_name), "DNS zone")
    for name in ["headlessws", "regularws"]:
        containers.agent_pools.begin_delete(RG, cluster_name, name).result()
    containers.managed_clusters.begin_delete(RG, cluster_name).result()
    expect_not_found(lambda: containers.managed_clusters.get(RG, cluster_name), "cluster")
    network.virtual_networks.begin_delete(RG, vnet_name).result()
    expect_not_found(lambda: network.virtual_networks.get(RG, vnet_name), "virtual network")
    for name in ids:
        identities.user_assigned_identities.delete(RG, name)
        expect_not_found(lambda: identities.user_assigned_identities.get(RG, name), f"identity {name}")
    resources.resource_groups.begin_delete(RG).result()
    check(not resources.resource_groups.check_existence(RG), "resource group exists after delete")
    print("azure-python-clients: all resource life cycles passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Failed as e:
        print(f"azure-python-clients: FAILED at '{STEP[0]}': {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except HttpResponseError as e:
        print(
            f"azure-python-clients: FAILED at '{STEP[0]}': HTTP {e.status_code} {e.reason}: {e.message}",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)
    except Exception:  # noqa: BLE001 - any SDK or fake error is a failure with a trace
        print(f"azure-python-clients: FAILED at '{STEP[0]}':", file=sys.stderr, flush=True)
        traceback.print_exc()
        sys.exit(1)
