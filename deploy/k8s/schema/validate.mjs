// Validates Kubernetes objects against their schemas: the Kubernetes
// OpenAPI schemas (kubernetes-models), prometheus-operator's and
// cert-manager's CRDs (@kubernetes-models/prometheus-operator,
// @kubernetes-models/cert-manager), versions pinned in package.json. No
// package carries JobSet's CRD: a JobSet's own fields are checked here by
// hand, and each Job template it holds against batch/v1 Job. Reads a JSON array of objects on stdin (deploy/k8s/check.py
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
  if (apiVersion.startsWith("cert-manager.io/")) {
    return `@kubernetes-models/cert-manager/${apiVersion}`;
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

// jobset.x-k8s.io/v1alpha2 JobSet: the fields maskedkd writes, by hand,
// and each replicated Job's template as a batch/v1 Job.
function jobSetProblems(obj) {
  const out = [];
  const spec = obj.spec ?? {};
  const known = new Set(["network", "failurePolicy", "replicatedJobs", "suspend",
                         "successPolicy", "startupPolicy", "ttlSecondsAfterFinished"]);
  for (const key of Object.keys(spec)) {
    if (!known.has(key)) out.push(`/spec/${key} is not a JobSet field`);
  }
  const network = spec.network ?? {};
  for (const [key, type] of [["enableDNSHostnames", "boolean"], ["subdomain", "string"],
                             ["publishNotReadyAddresses", "boolean"]]) {
    if (key in network && typeof network[key] !== type) out.push(`/spec/network/${key} must be ${type}`);
  }
  if (spec.failurePolicy && !Number.isInteger(spec.failurePolicy.maxRestarts ?? 0)) {
    out.push("/spec/failurePolicy/maxRestarts must be integer");
  }
  if (!Array.isArray(spec.replicatedJobs) || spec.replicatedJobs.length === 0) {
    out.push("/spec/replicatedJobs must be a non-empty list");
    return out;
  }
  const Job = modelOf("batch/v1", "Job");
  spec.replicatedJobs.forEach((r, i) => {
    if (typeof r.name !== "string") out.push(`/spec/replicatedJobs/${i}/name must be string`);
    if (!Number.isInteger(r.replicas ?? 1)) out.push(`/spec/replicatedJobs/${i}/replicas must be integer`);
    try {
      new Job({ apiVersion: "batch/v1", kind: "Job", metadata: { name: r.name, ...(r.template?.metadata ?? {}) },
                spec: r.template?.spec }).validate();
    } catch (e) {
      const details = (e.errors ?? []).map((x) => `${x.instancePath || "/"} ${x.message}`).join("; ");
      out.push(`/spec/replicatedJobs/${i}/template: ${details || e.message}`);
    }
  });
  return out;
}

let input = "";
for await (const chunk of process.stdin) input += chunk;
const problems = [];
for (const obj of JSON.parse(input)) {
  const what = `${obj.kind}/${obj.metadata?.name}`;
  if (obj.apiVersion === "jobset.x-k8s.io/v1alpha2" && obj.kind === "JobSet") {
    for (const p of jobSetProblems(obj)) problems.push(`${what}: ${p}`);
    continue;
  }
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
