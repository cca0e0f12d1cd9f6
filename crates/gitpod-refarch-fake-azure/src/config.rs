//! [`FakeConfig`]: how the fake behaves.

use std::time::Duration;

/// The subscription that exists by default.
pub const DEFAULT_SUBSCRIPTION: &str = "6b1f3c2e-5d4a-4b3c-9a8f-00000000fa6e";
/// The tenant (directory) by default.
pub const DEFAULT_TENANT: &str = "72f988bf-86f1-41af-91ab-00000000fa6e";
/// The client (application) id the token endpoint accepts by default.
pub const DEFAULT_CLIENT_ID: &str = "0b1d2c3e-4f50-4172-8394-00000000fa6e";
/// The client secret of [`DEFAULT_CLIENT_ID`] (a test value, not a secret).
pub const DEFAULT_CLIENT_SECRET: &str = "fake-azure-client-secret";

/// How the fake behaves. Build it with [`FakeConfig::default`] and the `with_*` setters.
#[derive(Clone)]
#[non_exhaustive]
pub struct FakeConfig {
    /// Subscriptions that exist (default `[DEFAULT_SUBSCRIPTION]`).
    pub subscriptions: Vec<String>,
    /// The tenant id (default [`DEFAULT_TENANT`]); the token endpoint serves only it.
    pub tenant_id: String,
    /// Client id and secret pairs the token endpoint accepts (not shown by `Debug`).
    pub(crate) clients: Vec<(String, String)>,
    /// ARM requests need a bearer token this fake issued (default true).
    pub require_auth: bool,
    /// Lifetime of issued tokens in seconds (default 3599).
    pub token_lifetime_secs: u64,
    /// A long-running operation finishes on its Nth poll (default 2; 0 = at once).
    pub polls_to_finish: u32,
    /// If set, operations instead finish after their realistic duration (AKS create
    /// 6 min, pool 3 min, MySQL 10 min, ...) times this factor, e.g. `0.001`.
    pub time_scale: Option<f64>,
    /// The `Retry-After` (seconds) of LRO answers (default 0; ARM sends 10 to 60).
    pub retry_after_secs: u64,
    /// Fraction (0.0..=1.0) of ARM calls answered 429 / 500 / 503 before any effect.
    pub fault_rate: f64,
    /// `Retry-After` (seconds) of an injected 429 (default 1).
    pub throttle_retry_after_secs: u64,
    /// An operation kind (e.g. `managedClusters.create`, `flexibleServers.delete`,
    /// `managedClusters.agentPools.create`) whose operations end `Failed`.
    pub fail_operation: Option<String>,
    /// Seed of every random choice (ids, faults).
    pub seed: u64,
    /// Port on 127.0.0.1 (default 0: any free port).
    pub port: u16,
    /// If set, a Kubernetes fake at this URL (`https://127.0.0.1:PORT`) stands in for
    /// every AKS cluster's API server: the kubeconfigs of `listClusterUserCredential`
    /// and `listClusterAdminCredential` name it as `server` (the cluster's `fqdn`
    /// keeps AKS's shape), as `az aks get-credentials` would write them.
    pub kube_endpoint: Option<String>,
    /// The PEM of the CA the Kubernetes fake's certificate chains to: the kubeconfigs'
    /// `certificate-authority-data`.
    pub kube_ca_pem: Option<String>,
    /// Role assignments naming a newly created principal fail with 400
    /// `PrincipalNotFound` this many times first (default 0).
    pub principal_not_found_attempts: u32,
    /// After `register`, a namespace stays `Registering` for this many provider reads
    /// (default 1; 0 = `Registered` at once).
    pub registration_reads: u32,
    /// Every namespace starts `Registered` (default false: `NotRegistered`).
    pub providers_registered: bool,
    /// Extra principal object ids that exist (users, groups).
    pub principals: Vec<String>,
    /// Registry names taken elsewhere in Azure (global name conflicts).
    pub taken_registry_names: Vec<String>,
    /// MySQL server names taken elsewhere in Azure.
    pub taken_server_names: Vec<String>,
    /// How long a federated identity credential write holds its identity; a second
    /// write on that identity meanwhile gets 409 (default 20 ms).
    pub fic_write_window: Duration,
    /// The next N federated identity credential writes get the concurrency 409.
    pub fic_conflicts: u32,
    /// A new role assignment is left out of this many list answers that would show
    /// it (a GET by name sees it at once; default 0). ARM's role assignment reads are
    /// eventually consistent: a client that lists before it writes can still meet
    /// `RoleAssignmentExists`.
    pub role_list_delay: u32,
}

impl std::fmt::Debug for FakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let clients: Vec<&str> = self.clients.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("FakeConfig")
            .field("subscriptions", &self.subscriptions)
            .field("tenant_id", &self.tenant_id)
            .field("clients", &clients)
            .field("require_auth", &self.require_auth)
            .field("polls_to_finish", &self.polls_to_finish)
            .field("time_scale", &self.time_scale)
            .field("fault_rate", &self.fault_rate)
            .field("seed", &self.seed)
            .field("port", &self.port)
            .field("kube_endpoint", &self.kube_endpoint)
            .field("kube_ca_pem", &self.kube_ca_pem.as_ref().map(|_| "<PEM>"))
            .finish_non_exhaustive()
    }
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            subscriptions: vec![DEFAULT_SUBSCRIPTION.to_string()],
            tenant_id: DEFAULT_TENANT.to_string(),
            clients: vec![(
                DEFAULT_CLIENT_ID.to_string(),
                DEFAULT_CLIENT_SECRET.to_string(),
            )],
            require_auth: true,
            token_lifetime_secs: 3599,
            polls_to_finish: 2,
            time_scale: None,
            retry_after_secs: 0,
            fault_rate: 0.0,
            throttle_retry_after_secs: 1,
            fail_operation: None,
            seed: 0,
            port: 0,
            kube_endpoint: None,
            kube_ca_pem: None,
            principal_not_found_attempts: 0,
            registration_reads: 1,
            providers_registered: false,
            principals: Vec::new(),
            taken_registry_names: Vec::new(),
            taken_server_names: Vec::new(),
            fic_write_window: Duration::from_millis(20),
            fic_conflicts: 0,
            role_list_delay: 0,
        }
    }
}

macro_rules! setter {
    ($(#[$m:meta])* $name:ident, $field:ident, $ty:ty) => {
        $(#[$m])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.$field = value;
            self
        }
    };
}

impl FakeConfig {
    setter!(
        /// Set [`FakeConfig::tenant_id`].
        with_tenant, tenant_id, String);
    setter!(
        /// Set [`FakeConfig::require_auth`].
        with_require_auth, require_auth, bool);
    setter!(
        /// Set [`FakeConfig::token_lifetime_secs`].
        with_token_lifetime_secs, token_lifetime_secs, u64);
    setter!(
        /// Set [`FakeConfig::polls_to_finish`].
        with_polls_to_finish, polls_to_finish, u32);
    setter!(
        /// Set [`FakeConfig::time_scale`].
        with_time_scale, time_scale, Option<f64>);
    setter!(
        /// Set [`FakeConfig::retry_after_secs`].
        with_retry_after_secs, retry_after_secs, u64);
    setter!(
        /// Set [`FakeConfig::fault_rate`].
        with_fault_rate, fault_rate, f64);
    setter!(
        /// Set [`FakeConfig::throttle_retry_after_secs`].
        with_throttle_retry_after_secs, throttle_retry_after_secs, u64);
    setter!(
        /// Set [`FakeConfig::fail_operation`].
        with_fail_operation, fail_operation, Option<String>);
    setter!(
        /// Set [`FakeConfig::seed`].
        with_seed, seed, u64);
    setter!(
        /// Set [`FakeConfig::port`].
        with_port, port, u16);
    setter!(
        /// Set [`FakeConfig::kube_endpoint`].
        with_kube_endpoint, kube_endpoint, Option<String>);
    setter!(
        /// Set [`FakeConfig::kube_ca_pem`].
        with_kube_ca_pem, kube_ca_pem, Option<String>);
    /// Set [`FakeConfig::kube_endpoint`] and [`FakeConfig::kube_ca_pem`]: a Kubernetes
    /// fake at `url` whose certificate chains to `ca_pem` answers for every cluster.
    pub fn with_kube(mut self, url: impl Into<String>, ca_pem: impl Into<String>) -> Self {
        self.kube_endpoint = Some(url.into());
        self.kube_ca_pem = Some(ca_pem.into());
        self
    }
    setter!(
        /// Set [`FakeConfig::principal_not_found_attempts`].
        with_principal_not_found_attempts, principal_not_found_attempts, u32);
    setter!(
        /// Set [`FakeConfig::registration_reads`].
        with_registration_reads, registration_reads, u32);
    setter!(
        /// Set [`FakeConfig::providers_registered`].
        with_providers_registered, providers_registered, bool);
    setter!(
        /// Set [`FakeConfig::fic_write_window`].
        with_fic_write_window, fic_write_window, Duration);
    setter!(
        /// Set [`FakeConfig::fic_conflicts`].
        with_fic_conflicts, fic_conflicts, u32);
    setter!(
        /// Set [`FakeConfig::role_list_delay`].
        with_role_list_delay, role_list_delay, u32);

    /// Set [`FakeConfig::subscriptions`].
    pub fn with_subscriptions<I, S>(mut self, subs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subscriptions = subs.into_iter().map(Into::into).collect();
        self
    }

    /// Accept one more client id / secret pair at the token endpoint.
    pub fn with_client(mut self, client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.clients.push((client_id.into(), secret.into()));
        self
    }

    /// Add principals (object ids) that exist in the directory.
    pub fn with_principals<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.principals.extend(ids.into_iter().map(Into::into));
        self
    }

    /// Registry names already taken elsewhere.
    pub fn with_taken_registry_names<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.taken_registry_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// MySQL server names already taken elsewhere.
    pub fn with_taken_server_names<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.taken_server_names = names.into_iter().map(Into::into).collect();
        self
    }
}
