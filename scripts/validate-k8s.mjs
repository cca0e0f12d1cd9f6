// Validate Kubernetes objects against the upstream schemas (the OpenAPI schemas of
// Kubernetes and the cert-manager CRDs, as generated into the npm packages
// kubernetes-models and @kubernetes-models/cert-manager; scripts/install-k8s-models.sh
// installs them outside the repo).
//
// Usage: node scripts/validate-k8s.mjs <file.json>   (a JSON array of objects)
// Prints `ok <apiVersion> <kind> <ref>` or `invalid <apiVersion> <kind> <ref>: <messages>`
// per object (<ref> is namespace/name, or name for cluster-scoped objects), then
// `validated N objects, M kinds, K invalid`. An apiVersion/kind without a model is
// invalid. Exit 0 if all are valid, 1 if any is invalid, 2 if the packages are not
// installed, 3 on a usage error or an unreadable file.
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const nodeDir = process.env.GITPOD_REFARCH_NODE_DIR || join(homedir(), ".cache/gitpod-refarch/node");
const modules = join(nodeDir, "node_modules");
// The packages holding models, searched in order for a group/version directory.
const PACKAGES = ["kubernetes-models", "@kubernetes-models/cert-manager"];

function fail(code, message) {
  console.error(`validate-k8s: ${message}`);
  process.exit(code);
}

if (process.argv.length !== 3) fail(3, "usage: node scripts/validate-k8s.mjs <file.json>");
for (const pkg of PACKAGES) {
  if (!existsSync(join(modules, pkg, "package.json"))) {
    fail(2, `${pkg} is not installed in ${modules}: run scripts/install-k8s-models.sh`);
  }
}

let objects;
try {
  objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
} catch (e) {
  fail(3, `cannot read ${process.argv[2]}: ${e.message}`);
}
if (!Array.isArray(objects)) fail(3, `${process.argv[2]}: expected a JSON array of objects`);

// apiVersion -> Map(kind -> model class), or null when no package has that group/version.
const groupVersions = new Map();

async function modelFor(apiVersion, kind) {
  // "v1" is the core group; "apps/v1" is group "apps". The pattern also keeps the
  // value from naming any path outside the packages.
  if (typeof apiVersion !== "string" || !/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion)) return undefined;
  if (!groupVersions.has(apiVersion)) {
    let models = null;
    for (const pkg of PACKAGES) {
      const index = join(modules, pkg, apiVersion, "index.js");
      if (!existsSync(index)) continue;
      models = new Map();
      for (const cls of Object.values(await import(pathToFileURL(index).href))) {
        if (typeof cls === "function" && cls.apiVersion === apiVersion && cls.kind) models.set(cls.kind, cls);
      }
      break;
    }
    groupVersions.set(apiVersion, models);
  }
  return groupVersions.get(apiVersion)?.get(kind);
}

// The problems with one object, as messages (none when it is valid).
async function check(obj) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) return ["not an object"];
  const Model = await modelFor(obj.apiVersion, obj.kind);
  if (!Model) return [`no model for apiVersion ${obj.apiVersion} kind ${obj.kind} (unknown kind)`];
  const problems = [];
  if (typeof obj.metadata?.name !== "string" || obj.metadata.name === "") {
    problems.push("metadata.name is required"); // the API server requires it; the schema does not
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    // Ajv's errors (already in English): "/spec/dnsNames must be array".
    if (!Array.isArray(e.errors)) throw e;
    for (const err of e.errors) problems.push(`${err.instancePath || "/"} ${err.message}`);
  }
  return problems;
}

let invalid = 0;
const kinds = new Set();
for (const obj of objects) {
  const { apiVersion, kind, metadata } = obj ?? {};
  const name = metadata?.name ?? "?";
  const ref = metadata?.namespace ? `${metadata.namespace}/${name}` : `${name}`;
  kinds.add(`${apiVersion} ${kind}`);
  const problems = await check(obj);
  if (problems.length === 0) {
    console.log(`ok ${apiVersion} ${kind} ${ref}`);
  } else {
    invalid++;
    console.log(`invalid ${apiVersion} ${kind} ${ref}: ${problems.join("; ")}`);
  }
}
console.log(`validated ${objects.length} objects, ${kinds.size} kinds, ${invalid} invalid`);
process.exit(invalid === 0 ? 0 : 1);
