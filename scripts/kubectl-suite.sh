#!/usr/bin/env bash
# The guide's kubectl steps, run by a kubectl nobody here wrote (Debian's
# kubernetes-client) against a Kubernetes API server -- in the tests, fake-kube -- with
# kubectl's default flags (client-side validation on: no --validate=false).
#
# Usage: scripts/kubectl-suite.sh KUBECONFIG
#   KUBECTL   the kubectl to run (default: kubectl on PATH)
#   The cert-manager webhook Deployment must become ready within the wait timeout
#   (fake-kube: FakeConfig::webhook_ready_delay).
#
# Every step checks its result; the script runs all of them, lists the failed ones
# and exits 1 if any failed.
set -uo pipefail

[ $# -eq 1 ] || { echo "usage: $0 KUBECONFIG" >&2; exit 2; }
export KUBECONFIG="$1"
KUBECTL="${KUBECTL:-kubectl}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cert_manager="$root/crates/gitpod-refarch-bootstrap/tests/data/cert-manager-test.yaml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()

k() { "$KUBECTL" "$@"; }

# step NAME FUNCTION: runs FUNCTION, its output in $work/NAME.log, and records the result.
step() {
  local name="$1"; shift
  echo "== $name"
  if "$@" >"$work/step.log" 2>&1; then
    sed 's/^/   /' "$work/step.log" | tail -n 5
    echo "   ok"
  else
    sed 's/^/   /' "$work/step.log" | tail -n 20
    echo "   FAILED: $name"
    failed+=("$name")
  fi
}

# expect_eq WHAT ACTUAL EXPECTED
expect_eq() {
  if [ "$2" != "$3" ]; then
    echo "$1: got '$2', expected '$3'"
    return 1
  fi
}

server_version() {
  k version -o json | tee "$work/version.json"
  grep -q '"gitVersion"' "$work/version.json"
}

cluster_admin() {
  k create clusterrolebinding cluster-admin-binding \
    --clusterrole=cluster-admin \
    --user="admin@example.com" || return 1
  expect_eq roleRef "$(k get clusterrolebinding cluster-admin-binding -o jsonpath='{.roleRef.name}')" cluster-admin &&
    expect_eq subject "$(k get clusterrolebinding cluster-admin-binding -o jsonpath='{.subjects[0].name}')" admin@example.com
}

# The cert-manager stand-in manifest: Namespace, CRDs, ServiceAccounts, Deployments,
# a Service and a ValidatingWebhookConfiguration, validated against /openapi/v2.
cert_manager_manifest() {
  k apply -f "$cert_manager" || return 1
  k get deployment -n cert-manager cert-manager-webhook -o name
}

crds_established() {
  k wait --for=condition=Established --timeout=30s \
    crd/certificates.cert-manager.io crd/certificaterequests.cert-manager.io \
    crd/issuers.cert-manager.io crd/clusterissuers.cert-manager.io \
    crd/orders.acme.cert-manager.io crd/challenges.acme.cert-manager.io
}

secret_generic() {
  printf '{"type": "service_account", "project_id": "example"}\n' >"$work/dns-credentials.json"
  k create secret generic clouddns-dns01-solver \
    --namespace=cert-manager \
    --from-file=key.json="$work/dns-credentials.json" || return 1
  local data
  data="$(k get secret -n cert-manager clouddns-dns01-solver -o jsonpath='{.data.key\.json}' | base64 -d)"
  expect_eq key.json "$data" "$(cat "$work/dns-credentials.json")"
}

secret_docker_registry() {
  k create namespace gitpod || return 1
  k create secret docker-registry gitpod-registry --namespace=gitpod \
    --docker-server=europe-docker.pkg.dev --docker-username=_json_key \
    --docker-password=not-a-real-password --docker-email=admin@example.com || return 1
  expect_eq type "$(k get secret -n gitpod gitpod-registry -o jsonpath='{.type}')" kubernetes.io/dockerconfigjson &&
    k get secret -n gitpod gitpod-registry -o jsonpath='{.data.\.dockerconfigjson}' | base64 -d | grep -q europe-docker.pkg.dev
}

annotate() {
  k annotate serviceaccount --namespace=cert-manager cert-manager \
    --overwrite "iam.gke.io/gcp-service-account=dns01-solver@example.iam.gserviceaccount.com" || return 1
  expect_eq annotation \
    "$(k get serviceaccount -n cert-manager cert-manager -o jsonpath='{.metadata.annotations.iam\.gke\.io/gcp-service-account}')" \
    dns01-solver@example.iam.gserviceaccount.com
}

webhook_available() {
  k wait --for=condition=Available --timeout=30s -n cert-manager deployment/cert-manager-webhook
}

# The guide's issuer.yaml, its placeholders filled.
cluster_issuer() {
  cat >"$work/issuer.yaml" <<'EOF'
# Replace $LETSENCRYPT_EMAIL with your email and $PROJECT_NAME with your GCP project name
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
    name: gitpod-issuer
spec:
    acme:
        email: admin@example.com
        server: https://acme-v02.api.letsencrypt.org/directory
        privateKeySecretRef:
            name: issuer-account-key
        solvers:
            - dns01:
                  cloudDNS:
                      project: example-project
EOF
  k apply -f "$work/issuer.yaml" || return 1
  k wait --for=condition=Ready --timeout=30s clusterissuer/gitpod-issuer
}

# A CRD with a structural schema: the API server publishes it, so kubectl validates
# custom resources against it too.
widget_crd() {
  cat >"$work/widget-crd.yaml" <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer}
                color: {type: string}
EOF
  k apply -f "$work/widget-crd.yaml" || return 1
  k wait --for=condition=Established --timeout=30s crd/widgets.example.com || return 1
  printf 'apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: small, namespace: gitpod}\nspec: {size: 1, color: blue}\n' >"$work/widget.yaml"
  k apply -f "$work/widget.yaml" || return 1
  expect_eq size "$(k get widget -n gitpod small -o jsonpath='{.spec.size}')" 1
}

# expect_refused FILE PATTERN: `kubectl apply -f FILE` must fail in validation, with
# PATTERN in its message, and create nothing.
expect_refused() {
  if k apply -f "$1" >"$work/refused.log" 2>&1; then
    cat "$work/refused.log"
    echo "kubectl apply accepted $1"
    return 1
  fi
  cat "$work/refused.log"
  grep -q "$2" "$work/refused.log" || { echo "no '$2' in kubectl's message"; return 1; }
}

unknown_field_built_in() {
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: typo, namespace: gitpod}\ndatta: {a: b}\n' >"$work/typo.yaml"
  expect_refused "$work/typo.yaml" 'unknown field "datta"' || return 1
  ! k get configmap -n gitpod typo >/dev/null 2>&1 || { echo "the ConfigMap was created"; return 1; }
  # Nested: a Deployment's container with a misspelt field.
  cat >"$work/typo-deploy.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: typo, namespace: gitpod}
spec:
  selector: {matchLabels: {app: typo}}
  template:
    metadata: {labels: {app: typo}}
    spec:
      containers:
        - name: c
          image: busybox
          imagePullPolcy: Always
EOF
  expect_refused "$work/typo-deploy.yaml" 'unknown field "imagePullPolcy"'
}

unknown_field_custom() {
  printf 'apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: odd, namespace: gitpod}\nspec: {size: 1, colour: blue}\n' >"$work/widget-typo.yaml"
  expect_refused "$work/widget-typo.yaml" 'unknown field "colour"'
}

configmap_yaml() {
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: gitpod}\ndata: {mode: "%s"}\n' "$1" "$2"
}

apply_server_side() {
  configmap_yaml settings one >"$work/settings.yaml"
  k apply --server-side -f "$work/settings.yaml" || return 1
  configmap_yaml settings two >"$work/settings.yaml"
  k apply --server-side -f "$work/settings.yaml" || return 1
  expect_eq mode "$(k get configmap -n gitpod settings -o jsonpath='{.data.mode}')" two &&
    expect_eq manager "$(k get configmap -n gitpod settings -o jsonpath='{.metadata.managedFields[0].manager}')" kubectl
}

get_watch() {
  configmap_yaml watched before >"$work/watched.yaml"
  k apply -f "$work/watched.yaml" || return 1
  timeout 10 "$KUBECTL" get configmap -n gitpod watched --watch -o jsonpath='{.data.mode}{"\n"}' \
    >"$work/watch.out" 2>"$work/watch.err" &
  local watcher=$!
  sleep 2
  k patch configmap -n gitpod watched --type=merge -p '{"data":{"mode":"after"}}' || return 1
  local i
  for i in $(seq 1 40); do
    grep -q '^after$' "$work/watch.out" && break
    sleep 0.2
  done
  kill "$watcher" 2>/dev/null
  wait "$watcher" 2>/dev/null
  cat "$work/watch.out" "$work/watch.err"
  grep -q '^before$' "$work/watch.out" && grep -q '^after$' "$work/watch.out"
}

diff_changes() {
  configmap_yaml compared same >"$work/compared.yaml"
  k apply -f "$work/compared.yaml" || return 1
  k diff -f "$work/compared.yaml"
  local rc=$?
  expect_eq "kubectl diff of an unchanged object (exit code)" "$rc" 0 || return 1
  configmap_yaml compared different >"$work/compared.yaml"
  k diff -f "$work/compared.yaml" >"$work/diff.out"
  rc=$?
  cat "$work/diff.out"
  expect_eq "kubectl diff of a changed object (exit code)" "$rc" 1 || return 1
  grep -q '^+.*different' "$work/diff.out" || return 1
  # diff is a dry run: nothing changed.
  expect_eq mode "$(k get configmap -n gitpod compared -o jsonpath='{.data.mode}')" same
}

delete_objects() {
  k delete -f "$work/compared.yaml" || return 1
  k delete secret -n gitpod gitpod-registry || return 1
  k delete clusterissuer gitpod-issuer || return 1
  k delete crd widgets.example.com || return 1
  local gone
  for gone in "configmap -n gitpod compared" "secret -n gitpod gitpod-registry" \
    "clusterissuer gitpod-issuer" "crd widgets.example.com"; do
    # shellcheck disable=SC2086
    if k get $gone >/dev/null 2>"$work/gone.err"; then
      echo "still there: $gone"
      return 1
    fi
    grep -q NotFound "$work/gone.err" || { cat "$work/gone.err"; return 1; }
  done
}

echo "kubectl: $(command -v "$KUBECTL") ($("$KUBECTL" version --client --short 2>/dev/null || "$KUBECTL" version --client 2>/dev/null | head -1))"
step "server version" server_version
step "create clusterrolebinding cluster-admin-binding" cluster_admin
step "apply the cert-manager manifest" cert_manager_manifest
step "wait --for=condition=Established (cert-manager CRDs)" crds_established
step "create secret generic (the DNS solver key)" secret_generic
step "create secret docker-registry" secret_docker_registry
step "annotate serviceaccount" annotate
step "wait --for=condition=Available (webhook)" webhook_available
step "apply the guide's ClusterIssuer and wait Ready" cluster_issuer
step "a CRD with a schema, and a custom resource" widget_crd
step "an unknown field in a built-in kind is refused" unknown_field_built_in
step "an unknown field in a custom resource is refused" unknown_field_custom
step "apply --server-side" apply_server_side
step "get --watch sees a change" get_watch
step "diff (0 unchanged, 1 changed, dry run)" diff_changes
step "delete" delete_objects

echo
if [ ${#failed[@]} -eq 0 ]; then
  echo "kubectl suite: all steps passed"
else
  echo "kubectl suite: ${#failed[@]} step(s) failed:"
  printf '  - %s\n' "${failed[@]}"
  exit 1
fi
