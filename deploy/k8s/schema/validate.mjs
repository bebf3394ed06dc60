// Validates Kubernetes objects against their schemas: the Kubernetes
// OpenAPI schemas (kubernetes-models) and prometheus-operator's CRDs
// (@kubernetes-models/prometheus-operator), versions pinned in
// package.json. Reads a JSON array of objects on stdin (deploy/k8s/check.py
// sends each overlay's rendered manifests); prints one line per problem,
// "<Kind>/<name>: <path> <message>", and exits 1 if there is any. An
// object of a kind no package here knows is a problem too: nothing goes
// unchecked.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

// apiVersion -> the module holding its models.
function modulePath(apiVersion) {
  if (apiVersion === "v1") return "kubernetes-models/v1";
  if (apiVersion.startsWith("monitoring.coreos.com/")) {
    return `@kubernetes-models/prometheus-operator/${apiVersion}`;
  }
  return `kubernetes-models/${apiVersion}`;
}

function modelOf(apiVersion, kind) {
  try {
    return require(modulePath(apiVersion))[kind];
  } catch {
    return undefined;
  }
}

let input = "";
for await (const chunk of process.stdin) input += chunk;
const problems = [];
for (const obj of JSON.parse(input)) {
  const what = `${obj.kind}/${obj.metadata?.name}`;
  const Model = modelOf(obj.apiVersion ?? "", obj.kind ?? "");
  if (!Model) {
    problems.push(`${what}: no schema for ${obj.apiVersion} ${obj.kind}`);
    continue;
  }
  try {
    new Model(obj).validate();
  } catch (e) {
    const details = (e.errors ?? [])
      .map((x) => `${x.instancePath || "/"} ${x.message}`)
      .join("; ");
    problems.push(`${what}: ${details || e.message}`);
  }
}
for (const p of problems) console.log(p);
process.exit(problems.length ? 1 : 0);
