//! The `GitpodInstallation` CRD, generated from the SDK's types, against the
//! Kubernetes fake (`gitpod-refarch-fake-kube`, in process, HTTPS on 127.0.0.1) and
//! kubectl:
//!
//! - the schema is structural (checked here rule by rule, as the API server checks it),
//!   the CRD is accepted and becomes Established, and a resource round-trips;
//! - kubectl's default validation, which reads the schema the fake publishes for the
//!   CRD in `/openapi/v2`, accepts the example and every spec of `examples/specs/` as
//!   a `GitpodInstallation`, and refuses an unknown field and a wrong type naming the
//!   field's path. (The fake itself stores custom resources unvalidated, so the refusal
//!   is kubectl's, from the schema the fake serves, as with a real API server's
//!   OpenAPI; the schema is also checked here against every spec with Kubernetes'
//!   semantics: types, `nullable`, enums, unknown fields, `required`, `oneOf`.)
//!
//! The kubectl is `$GITPOD_REFARCH_KUBECTL`, else Debian's under
//! `~/.cache/gitpod-refarch/kubernetes-client` (scripts/test.sh), else `kubectl` on
//! `PATH`; without one the kubectl test fails unless `GITPOD_REFARCH_SKIP_KUBECTL=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use gitpod_refarch::ReferenceArchitecture;
use gitpod_refarch_fake_kube::{FakeConfig, FakeKube};
use gitpod_refarch_operator::crd::GitpodInstallation;
use gitpod_refarch_operator::manifests;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::CustomResourceExt;
use serde_json::{json, Value};

const NS: &str = "gitpod-refarch-system";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn crd_json() -> Value {
    serde_json::to_value(GitpodInstallation::crd()).unwrap()
}

fn spec_schema(crd: &Value) -> Value {
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec")
        .unwrap()
        .clone()
}

// ---- structural schema rules (apiextensions' structural schema, v1) ----

/// Keywords a structural schema may not use inside `allOf`/`anyOf`/`oneOf`/`not`.
const NOT_IN_JUNCTORS: &[&str] = &[
    "type",
    "description",
    "default",
    "additionalProperties",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource",
];

/// The rules the API server checks for a structural schema, with the path of each
/// violation.
fn structural_problems(schema: &Value, path: &str, out: &mut Vec<String>) {
    let o = schema
        .as_object()
        .unwrap_or_else(|| panic!("{path}: not an object"));
    for k in [
        "$ref",
        "$defs",
        "definitions",
        "$schema",
        "const",
        "if",
        "then",
        "else",
    ] {
        if o.contains_key(k) {
            out.push(format!("{path}: `{k}` is not allowed"));
        }
    }
    let special = o.contains_key("x-kubernetes-int-or-string")
        || o.contains_key("x-kubernetes-preserve-unknown-fields");
    match o.get("type").and_then(Value::as_str) {
        Some("object" | "array" | "string" | "integer" | "number" | "boolean") => {}
        Some(t) => out.push(format!("{path}: type {t} is not allowed")),
        None if special => {}
        None => out.push(format!("{path}: a type is required")),
    }
    if o.contains_key("properties") && o.contains_key("additionalProperties") {
        out.push(format!(
            "{path}: properties and additionalProperties are mutually exclusive"
        ));
    }
    if o.get("type") == Some(&json!("array")) && !o.contains_key("items") {
        out.push(format!("{path}: an array needs items"));
    }
    for (name, p) in o
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        structural_problems(p, &format!("{path}.{name}"), out);
    }
    if let Some(items) = o.get("items") {
        structural_problems(items, &format!("{path}[*]"), out);
    }
    if let Some(values @ Value::Object(_)) = o.get("additionalProperties") {
        structural_problems(values, &format!("{path}.*"), out);
    }
    for j in ["allOf", "anyOf", "oneOf"] {
        for (i, branch) in o
            .get(j)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            junctor_problems(branch, schema, &format!("{path}.{j}[{i}]"), out);
        }
    }
    if let Some(not) = o.get("not") {
        junctor_problems(not, schema, &format!("{path}.not"), out);
    }
}

/// A value validation inside a junctor: no structure of its own, and only fields the
/// structural part (`outer`) specifies.
fn junctor_problems(branch: &Value, outer: &Value, path: &str, out: &mut Vec<String>) {
    let o = branch.as_object().unwrap();
    if o.contains_key("$ref") {
        out.push(format!("{path}: `$ref` is not allowed"));
    }
    for k in NOT_IN_JUNCTORS {
        if o.contains_key(*k) {
            out.push(format!("{path}: `{k}` is not allowed in a junctor"));
        }
    }
    for (name, p) in o
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        match outer.pointer(&format!("/properties/{name}")) {
            Some(outer_p) => junctor_problems(p, outer_p, &format!("{path}.{name}"), out),
            None => out.push(format!("{path}.{name}: not specified outside the junctor")),
        }
    }
    for r in o
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if outer
            .pointer(&format!("/properties/{}", r.as_str().unwrap()))
            .is_none()
        {
            out.push(format!("{path}: required {r} is not a property"));
        }
    }
}

// ---- validation of a value with the API server's semantics ----

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => false,
    }
}

/// What the API server refuses in `v` against the structural `schema` (unknown fields
/// included: `fieldValidation=Strict`), each with its field path.
fn validate(schema: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    if v.is_null() {
        if schema.get("nullable") != Some(&json!(true)) && schema.get("type").is_some() {
            out.push(format!("{path}: must not be null"));
        }
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        if !type_ok(t, v) {
            out.push(format!("{path}: must be of type {t}"));
            return;
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.contains(v) {
            out.push(format!("{path}: Unsupported value {v}"));
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if n < min {
            out.push(format!("{path}: must be at least {min}"));
        }
    }
    if let (Some(max), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), v.as_f64()) {
        if n > max {
            out.push(format!("{path}: must be at most {max}"));
        }
    }
    if let Some(obj) = v.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !obj.contains_key(r.as_str().unwrap()) {
                out.push(format!("{path}.{}: Required value", r.as_str().unwrap()));
            }
        }
        let structural = schema.get("type").is_some();
        for (k, x) in obj {
            let child = format!("{path}.{k}");
            match (
                properties.and_then(|p| p.get(k)),
                schema.get("additionalProperties"),
            ) {
                (Some(p), _) => validate(p, x, &child, out),
                (None, Some(values @ Value::Object(_))) => validate(values, x, &child, out),
                (None, _) => {
                    let preserve =
                        schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
                    if structural && !preserve {
                        out.push(format!("{child}: unknown field"));
                    }
                }
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), v.as_array()) {
        for (i, x) in array.iter().enumerate() {
            validate(items, x, &format!("{path}[{i}]"), out);
        }
    }
    if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = branches
            .iter()
            .filter(|b| {
                let mut e = Vec::new();
                validate(b, v, path, &mut e);
                e.is_empty()
            })
            .count();
        if matching != 1 {
            out.push(format!(
                "{path}: must match exactly one of {} ({matching} match)",
                Value::Array(branches.clone())
            ));
        }
    }
}

fn problems(spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    validate(&spec_schema(&crd_json()), spec, "spec", &mut out);
    out
}

/// Every spec of `examples/specs/`, as YAML text and as JSON.
fn example_specs() -> Vec<(PathBuf, Value)> {
    let mut specs: Vec<(PathBuf, Value)> = std::fs::read_dir(repo_root().join("examples/specs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let v: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p, v)
        })
        .collect();
    specs.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(specs.len() >= 4, "{specs:?}");
    specs
}

fn installation(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "refarch.gitpod.io/v1alpha1",
        "kind": "GitpodInstallation",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    })
}

// ---- the fake, a client and kubectl ----

async fn start_fake() -> FakeKube {
    FakeKube::start(FakeConfig::default().with_crd_established_delay(Duration::from_millis(50)))
        .await
        .unwrap()
}

fn kube_client(fake: &FakeKube) -> kube::Client {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = kube::Config::new(fake.url().parse().unwrap());
    config.root_cert = Some(
        CertificateDer::pem_slice_iter(fake.ca_pem().as_bytes())
            .map(|c| c.unwrap().to_vec())
            .collect(),
    );
    kube::Client::try_from(config).unwrap()
}

/// Create the CRD and wait for it to be Established (a watch, not a poll), then the
/// namespace.
async fn install_crd(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &GitpodInstallation::crd())
        .await
        .unwrap();
    let established = await_condition(
        crds,
        "gitpodinstallations.refarch.gitpod.io",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .expect("the CRD was not Established within 30 s")
        .unwrap();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// The kubectl to run, or why there is none.
fn kubectl() -> Result<PathBuf, String> {
    if let Some(k) = std::env::var_os("GITPOD_REFARCH_KUBECTL") {
        return Ok(PathBuf::from(k));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let unpacked =
            Path::new(&home).join(".cache/gitpod-refarch/kubernetes-client/usr/bin/kubectl");
        if unpacked.is_file() {
            return Ok(unpacked);
        }
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubectl"))
        .find(|k| k.is_file())
        .ok_or_else(|| "kubectl is not installed".into())
}

/// A scratch directory with a kubeconfig for the fake (its URL and CA file).
fn kubectl_dir(fake: &FakeKube, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gitpod-refarch-operator-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), fake.ca_pem()).unwrap();
    std::fs::write(
        dir.join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: not-checked-by-the-fake\n",
            fake.url(),
            dir.join("ca.pem").display()
        ),
    )
    .unwrap();
    dir
}

/// Run kubectl with `args` against the fake: (success, stdout + stderr).
async fn run_kubectl(kubectl: &Path, dir: &Path, args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(kubectl)
            .args(args)
            .env("KUBECONFIG", dir.join("kubeconfig"))
            .env("HOME", dir)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl took more than 120 s")
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// ---- tests ----

#[test]
fn the_schema_is_structural_with_columns_and_status() {
    let crd = crd_json();
    let version = &crd["spec"]["versions"][0];
    let mut out = Vec::new();
    structural_problems(&version["schema"]["openAPIV3Schema"], "", &mut out);
    assert!(out.is_empty(), "{out:#?}");
    let text = crd.to_string();
    assert!(!text.contains("$ref"));
    let spec = spec_schema(&crd);
    assert_eq!(spec["required"], json!(["cloud"]));
    assert_eq!(version["subresources"], json!({"status": {}}));
    let columns: Vec<(String, String)> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["jsonPath"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("Cloud", ".spec.cloud"),
        ("Domain", ".spec.domain"),
        ("Phase", ".status.phase"),
        ("Age", ".metadata.creationTimestamp"),
    ];
    assert_eq!(
        columns,
        want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
    );
    // Every top-level field of the SDK's spec is there, plus `operator`.
    let defaults = serde_json::to_value(ReferenceArchitecture::defaults(
        gitpod_refarch::spec::Cloud::Aws,
    ))
    .unwrap();
    for k in defaults.as_object().unwrap().keys() {
        assert!(spec["properties"].get(k).is_some(), "{k} missing");
    }
    assert!(spec["properties"]["operator"]["properties"]["credentialsSecret"].is_object());
    // No secret value anywhere (the schema holds types only), and no defaults in the
    // spec (the loader's per-cloud defaults apply).
    for v in ["GITPOD_DB_ADMIN_PASSWORD", "<redacted>"] {
        assert!(!text.contains(v), "{v}");
    }
    assert!(!spec.to_string().contains("\"default\""));
}

#[test]
fn the_structural_check_and_the_validator_catch_what_they_should() {
    // The checks of this file must be able to fail.
    let mut out = Vec::new();
    structural_problems(
        &json!({"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}, {"$ref": "#/x"}]}}}),
        "",
        &mut out,
    );
    assert_eq!(out.len(), 3, "{out:?}");
    let bad = json!({"cloud": "gcp", "cluster": {"regoin": "x"}, "nodePools": {"services": {"maxNodes": "lots"}}});
    let p = problems(&bad);
    assert!(
        p.contains(&"spec.cluster.regoin: unknown field".to_string()),
        "{p:?}"
    );
    assert!(
        p.contains(&"spec.nodePools.services.maxNodes: must be of type integer".to_string()),
        "{p:?}"
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(
        problems(&json!({"name": "x"})),
        ["spec.cloud: Required value"]
    );
    assert_eq!(problems(&json!({"cloud": "ibm"})).len(), 1);
    let both = json!({"cloud": "aws", "database": {"provider": "selfManaged", "adminPassword": {"env": "A", "file": "b"}}});
    assert_eq!(problems(&both).len(), 1, "{:?}", problems(&both));
    let records = json!({"cloud": "gcp", "dns": {"recordsTarget": {"ipv4": "203.0.113.1"}}, "gcp": null, "aws": null});
    assert_eq!(problems(&records), Vec::<String>::new());
}

#[test]
fn every_example_spec_converted_into_a_gitpod_installation_validates() {
    for (path, spec) in example_specs() {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let object: GitpodInstallation =
            serde_json::from_value(installation(name, spec.clone())).unwrap();
        let back = serde_json::to_value(&object).unwrap();
        let p = problems(&back["spec"]);
        assert!(p.is_empty(), "{}: {p:#?}", path.display());
        // The controller reads the same spec as the CLI.
        let from_crd = ReferenceArchitecture::from_json(
            &serde_json::to_string(&object.spec.architecture).unwrap(),
        )
        .unwrap();
        assert_eq!(from_crd, ReferenceArchitecture::from_path(&path).unwrap());
    }
    let example = manifests::example_object(NS);
    assert!(problems(&example["spec"]).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_establishes_the_crd_and_stores_the_example() {
    let fake = start_fake().await;
    let client = kube_client(&fake);
    install_crd(&client).await;
    let api: Api<GitpodInstallation> = Api::namespaced(client, NS);
    let example: GitpodInstallation =
        serde_json::from_value(manifests::example_object(NS)).unwrap();
    api.create(&PostParams::default(), &example).await.unwrap();
    let stored = api.get("gitpod").await.unwrap();
    assert_eq!(stored.spec, example.spec);
    let spec = ReferenceArchitecture::from_json(
        &serde_json::to_string(&stored.spec.architecture).unwrap(),
    )
    .unwrap();
    spec.validate().unwrap();
    assert_eq!(spec.cloud, gitpod_refarch::spec::Cloud::Gcp);
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_accepts_the_specs_and_refuses_unknown_fields_and_wrong_types() {
    let kubectl = match kubectl() {
        Ok(k) => k,
        Err(why) if std::env::var("GITPOD_REFARCH_SKIP_KUBECTL").as_deref() == Ok("1") => {
            eprintln!("skipped (GITPOD_REFARCH_SKIP_KUBECTL=1): {why}");
            return;
        }
        Err(why) => panic!("{why}: set GITPOD_REFARCH_KUBECTL or GITPOD_REFARCH_SKIP_KUBECTL=1"),
    };
    let fake = start_fake().await;
    let client = kube_client(&fake);
    install_crd(&client).await;
    let dir = kubectl_dir(&fake, "crd");

    // The example and every spec of examples/specs/, as GitpodInstallations.
    let good = dir.join("good");
    std::fs::create_dir_all(&good).unwrap();
    std::fs::write(
        good.join("example.yaml"),
        manifests::example_yaml(NS).unwrap(),
    )
    .unwrap();
    for (path, spec) in example_specs() {
        let name = path.file_stem().unwrap().to_str().unwrap();
        std::fs::write(
            good.join(format!("{name}.yaml")),
            serde_yaml_ng::to_string(&installation(name, spec)).unwrap(),
        )
        .unwrap();
    }
    let (ok, out) = run_kubectl(
        &kubectl,
        &dir,
        &["apply", "--dry-run=server", "-f", good.to_str().unwrap()],
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(out.matches("(server dry run)").count(), 5, "{out}");

    let bad = |spec: Value| {
        let file = dir.join("bad.yaml");
        std::fs::write(
            &file,
            serde_yaml_ng::to_string(&installation("bad", spec)).unwrap(),
        )
        .unwrap();
        file
    };
    let unknown = bad(json!({"cloud": "gcp", "cluster": {"regoin": "europe-west4"}}));
    let (ok, out) = run_kubectl(
        &kubectl,
        &dir,
        &["apply", "--dry-run=server", "-f", unknown.to_str().unwrap()],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("spec.cluster") && out.contains("unknown field \"regoin\""),
        "{out}"
    );

    let wrong = bad(json!({"cloud": "gcp", "nodePools": {"services": {"maxNodes": "lots"}}}));
    let (ok, out) = run_kubectl(
        &kubectl,
        &dir,
        &["apply", "--dry-run=server", "-f", wrong.to_str().unwrap()],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(out.contains("spec.nodePools.services.maxNodes"), "{out}");

    let _ = std::fs::remove_dir_all(&dir);
    fake.shutdown().await;
}
