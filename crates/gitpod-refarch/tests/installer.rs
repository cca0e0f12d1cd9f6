//! The installer config and secrets have exactly the keys Gitpod's installer expects.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unused_must_use
)]

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use common::{spec, Harness};
use gitpod_refarch::installer::{self, REGISTRY_SECRET};
use gitpod_refarch::outputs::Outputs;
use gitpod_refarch::resource::*;
use gitpod_refarch::sim::LatencyProfile;
use gitpod_refarch::spec::Cloud;
use gitpod_refarch::Secret;

const WELL_KNOWN_SAMPLE_KEY: &str = "4uGh1q8y2DYryJwrVMHs0kWXJlqvHWWt/KJuNi04edI=";

fn keys(b: &installer::InstallerBundle, name: &str) -> Vec<String> {
    b.secret(name)
        .unwrap_or_else(|| panic!("no secret {name}"))
        .data
        .keys()
        .cloned()
        .collect()
}

fn material(enc: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(enc).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 1);
    assert_eq!(arr[0]["name"], "general");
    assert_eq!(arr[0]["version"], 1);
    assert_eq!(arr[0]["primary"], true);
    arr[0]["material"].as_str().unwrap().to_string()
}

#[tokio::test(start_paused = true)]
async fn external_database_s3_storage_and_registry_from_a_full_apply() {
    let s = spec(Cloud::Gcp);
    let h = Harness::new(LatencyProfile::instant());
    h.engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let b = h.engine().installer_bundle(&s).await.unwrap();
    let c = &b.config;
    assert_eq!(c["kind"], "Full");
    assert_eq!(c["domain"], "gitpod.example.com");
    assert_eq!(c["certificate"]["name"], "https-certificates");
    assert_eq!(c["database"]["inCluster"], false);
    assert_eq!(c["database"]["external"]["certificate"]["name"], "database");
    assert_eq!(
        c["objectStorage"]["s3"]["credentials"]["name"],
        "storage-s3"
    );
    assert_eq!(
        c["containerRegistry"]["external"]["certificate"]["name"],
        REGISTRY_SECRET
    );
    assert_eq!(c["metadata"]["region"], "europe-west1");
    assert_eq!(
        keys(&b, "database"),
        ["encryptionKeys", "host", "password", "port", "username"]
    );
    assert_eq!(keys(&b, "storage-s3"), ["accessKeyId", "secretAccessKey"]);
    assert_eq!(keys(&b, REGISTRY_SECRET), [".dockerconfigjson"]);
    let reg = b.secret(REGISTRY_SECRET).unwrap();
    assert_eq!(reg.type_, "kubernetes.io/dockerconfigjson");
    let docker: serde_json::Value =
        serde_json::from_str(reg.data[".dockerconfigjson"].expose()).unwrap();
    let entry = &docker["auths"]["registry.sim.invalid"];
    let auth = base64::engine::general_purpose::STANDARD
        .decode(entry["auth"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(auth).unwrap(),
        format!(
            "{}:{}",
            entry["username"].as_str().unwrap(),
            entry["password"].as_str().unwrap()
        )
    );
    assert_eq!(b.secret("database").unwrap().data["port"].expose(), "3306");

    // A fresh 32-byte key, kept across renders, never the well-known sample.
    let m = material(b.secret("database").unwrap().data["encryptionKeys"].expose());
    assert_ne!(m, WELL_KNOWN_SAMPLE_KEY);
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&m)
            .unwrap()
            .len(),
        32
    );
    let again = h.engine().installer_bundle(&s).await.unwrap();
    assert_eq!(
        material(again.secret("database").unwrap().data["encryptionKeys"].expose()),
        m
    );
    let other = Harness::new(LatencyProfile::instant());
    other
        .engine()
        .apply_spec(&s)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    let b2 = other.engine().installer_bundle(&s).await.unwrap();
    assert_ne!(
        material(b2.secret("database").unwrap().data["encryptionKeys"].expose()),
        m
    );

    // cert-manager objects: the ClusterIssuer and the certificate for all three names.
    let cert = b
        .cert_manager
        .iter()
        .find(|o| o["kind"] == "Certificate")
        .unwrap();
    assert_eq!(cert["metadata"]["name"], "https-certificates");
    assert_eq!(cert["spec"]["secretName"], "https-certificates");
    assert_eq!(cert["spec"]["issuerRef"]["name"], "gitpod-issuer");
    assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(
        cert["spec"]["dnsNames"],
        serde_json::json!([
            "gitpod.example.com",
            "*.gitpod.example.com",
            "*.ws.gitpod.example.com"
        ])
    );
    let issuer = b
        .cert_manager
        .iter()
        .find(|o| o["kind"] == "ClusterIssuer")
        .unwrap();
    assert_eq!(issuer["spec"]["acme"]["email"], "ops@example.com");
    assert_eq!(
        issuer["spec"]["acme"]["privateKeySecretRef"]["name"],
        "issuer-account-key"
    );

    // Written files: secrets private, config public.
    let dir = std::env::temp_dir().join(format!("grefarch-bundle-{}", std::process::id()));
    let files = b.write_to(&dir).unwrap();
    assert!(files.iter().any(|f| f.ends_with("gitpod.config.yaml")));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("secrets").join("database.yaml");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let yaml = std::fs::read_to_string(dir.join("secrets").join("storage-s3.yaml")).unwrap();
    let doc: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(doc["kind"], "Secret");
    assert_eq!(doc["metadata"]["namespace"], "gitpod");
    std::fs::remove_dir_all(dir).unwrap();
}

fn outputs(
    endpoint: DatabaseEndpoint,
    storage: StorageOutput,
    registry: RegistryOutput,
) -> Outputs {
    let mut m = BTreeMap::new();
    m.insert(
        ResourceId::new(ResourceKind::DatabaseInstance, "gp"),
        Output::DatabaseInstance {
            instance: "i".into(),
            endpoint,
        },
    );
    m.insert(
        ResourceId::new(ResourceKind::Database, "gitpod"),
        Output::Database {
            database: "gitpod".into(),
            username: "gitpod".into(),
            password: Secret::new("pw-0123456789abcdef".into()),
            client_credentials: Some(Secret::new("{\"type\":\"service_account\"}".into())),
        },
    );
    m.insert(
        ResourceId::new(ResourceKind::ObjectStorage, "gp"),
        Output::ObjectStorage(storage),
    );
    m.insert(
        ResourceId::new(ResourceKind::Registry, "gp"),
        Output::Registry(registry),
    );
    Outputs::new(m)
}

#[test]
fn cloud_sql_gcs_and_artifact_registry_shapes() {
    let s = spec(Cloud::Gcp);
    let o = outputs(
        DatabaseEndpoint::CloudSql {
            connection_name: "my-project-123:europe-west1:sql-gp-ab12".into(),
        },
        StorageOutput::Gcs {
            project: "my-project-123".into(),
            region: "europe-west1".into(),
            service_account_json: Secret::new("{}".into()),
        },
        RegistryOutput::External {
            url: "europe-docker.pkg.dev/my-project-123/gitpod".into(),
            server: "europe-docker.pkg.dev".into(),
            username: "_json_key".into(),
            password: Secret::new("{\"k\":1}".into()),
        },
    );
    let b = installer::render(&s, &o, &Secret::generate_base64_key(32)).unwrap();
    assert_eq!(
        b.config["database"]["cloudSQL"]["instance"],
        "my-project-123:europe-west1:sql-gp-ab12"
    );
    assert_eq!(
        b.config["database"]["cloudSQL"]["serviceAccount"]["name"],
        "cloudsql"
    );
    assert!(b.config["database"].get("external").is_none());
    assert_eq!(
        keys(&b, "cloudsql"),
        ["credentials.json", "encryptionKeys", "password", "username"]
    );
    assert_eq!(
        b.config["objectStorage"]["cloudStorage"]["project"],
        "my-project-123"
    );
    assert_eq!(keys(&b, "storage-gcp"), ["service-account.json"]);
    assert_eq!(
        b.config["containerRegistry"]["external"]["url"],
        "europe-docker.pkg.dev/my-project-123/gitpod"
    );
}

#[test]
fn aws_in_cluster_registry_on_s3() {
    let s = spec(Cloud::Aws);
    let o = outputs(
        DatabaseEndpoint::Host {
            host: "db.example".into(),
            port: 3306,
            ca_certificate_pem: None,
        },
        StorageOutput::S3 {
            endpoint: "s3.eu-west-1.amazonaws.com".into(),
            region: "eu-west-1".into(),
            bucket: "gp-gitpod".into(),
            access_key_id: "AKIA".into(),
            secret_access_key: Secret::new("s".into()),
            allow_insecure_connection: false,
        },
        RegistryOutput::InClusterS3 {
            bucket: "gp-registry".into(),
            region: "eu-west-1".into(),
            endpoint: "s3.eu-west-1.amazonaws.com".into(),
            access_key_id: "AKIA2".into(),
            secret_access_key: Secret::new("s2".into()),
        },
    );
    let b = installer::render(&s, &o, &Secret::generate_base64_key(32)).unwrap();
    assert_eq!(b.config["containerRegistry"]["inCluster"], true);
    assert_eq!(
        b.config["containerRegistry"]["s3storage"]["bucket"],
        "gp-registry"
    );
    assert_eq!(
        b.config["containerRegistry"]["s3storage"]["certificate"]["name"],
        "container-registry-s3-backend"
    );
    assert_eq!(
        keys(&b, "container-registry-s3-backend"),
        ["s3AccessKey", "s3SecretKey"]
    );
    assert_eq!(b.config["objectStorage"]["s3"]["bucket"], "gp-gitpod");
    assert_eq!(b.config["metadata"]["region"], "eu-west-1");
}

#[test]
fn azure_in_cluster_storage_flexible_server_and_acr_token() {
    let s = spec(Cloud::Azure);
    let o = outputs(
        DatabaseEndpoint::Host {
            host: "mysql-gp-0a1b2c3d.mysql.database.azure.com".into(),
            port: 3306,
            ca_certificate_pem: None,
        },
        StorageOutput::InCluster {
            region: "northeurope".into(),
        },
        RegistryOutput::External {
            url: "gp0a1b2c3d.azurecr.io/gitpod".into(),
            server: "gp0a1b2c3d.azurecr.io".into(),
            username: "gitpod-push".into(),
            password: Secret::new("token-password".into()),
        },
    );
    let b = installer::render(&s, &o, &Secret::generate_base64_key(32)).unwrap();
    // The installer has no Azure Blob support: MinIO in the cluster, and no storage secret.
    assert_eq!(
        b.config["objectStorage"],
        serde_json::json!({"inCluster": true})
    );
    assert!(b.secrets.iter().all(|m| !m.name.starts_with("storage-")));
    assert_eq!(b.config["metadata"]["region"], "northeurope");
    assert_eq!(
        b.config["database"]["external"]["certificate"]["name"],
        "database"
    );
    assert_eq!(
        b.config["containerRegistry"]["external"]["url"],
        "gp0a1b2c3d.azurecr.io/gitpod"
    );
}

#[test]
fn rendering_before_apply_is_a_clear_error() {
    let s = spec(Cloud::Aws);
    let e =
        installer::render(&s, &Outputs::default(), &Secret::generate_base64_key(32)).unwrap_err();
    assert_eq!(e.kind(), gitpod_refarch::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("apply first"), "{e}");
}
