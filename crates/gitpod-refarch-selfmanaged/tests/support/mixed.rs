//! The mixed installation both mixed tests run: the CLI's (`examples/tests/mixed.rs`)
//! and the controller's (`crates/gitpod-refarch-operator/tests/controller_selfmanaged.rs`).
//! An AWS cluster (EKS) with the four parts self-managed, each on one of this
//! directory's real servers; its secrets are references (`env`, `file`), answered by
//! the CLI's environment and working directory or by the installation's Secret.

/// The installation's name.
pub const NAME: &str = "gp-mixed";

/// Its domain, and the zone on the DNS server.
pub const ZONE: &str = "gitpod.example.test";

/// The spec (YAML): the database administrator `admin` on 127.0.0.1:`db_port`
/// (`env: GITPOD_DB_ADMIN_PASSWORD`), DNS on `dns_server` with the TSIG key
/// named `tsig_key_name` (`file: tsig.key`), the registry at `registry` for `registry_user`
/// (`env: GITPOD_REGISTRY_PASSWORD`), S3-compatible storage at `storage`
/// (`env: GITPOD_S3_ACCESS_KEY_ID`, `env: GITPOD_S3_SECRET_ACCESS_KEY`).
pub fn spec(
    db_port: u16,
    admin: &str,
    dns_server: &str,
    tsig_key_name: &str,
    registry: &str,
    registry_user: &str,
    storage: &str,
) -> String {
    format!(
        "cloud: aws
name: {NAME}
domain: {ZONE}
cluster:
  region: eu-west-1
  zones: [eu-west-1b, eu-west-1c]
certificates:
  issuer: acme
  email: ops@example.com
database:
  provider: selfManaged
  host: 127.0.0.1
  port: {db_port}
  adminUsername: {admin}
  adminPassword: {{env: GITPOD_DB_ADMIN_PASSWORD}}
  tls: {{mode: disabled}}
dns:
  provider: selfManaged
  zone: {ZONE}
  server: {dns_server}
  tsigKeyName: {tsig_key_name}
  tsigAlgorithm: hmac-sha256
  tsigSecret: {{file: tsig.key}}
  recordsTarget: {{ipv4: 203.0.113.10}}
registry:
  provider: selfManaged
  url: {registry}/gitpod
  username: {registry_user}
  password: {{env: GITPOD_REGISTRY_PASSWORD}}
storage:
  provider: selfManaged
  endpoint: {storage}
  region: us-east-1
  bucket: {NAME}-gitpod
  accessKeyId: {{env: GITPOD_S3_ACCESS_KEY_ID}}
  secretAccessKey: {{env: GITPOD_S3_SECRET_ACCESS_KEY}}
"
    )
}
