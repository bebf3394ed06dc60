#!/usr/bin/env python3
"""Checks the rendered Kubernetes manifests of every overlay.

    deploy/k8s/check.py [--kubectl kubectl] [--root .] [overlay ...]

Renders each overlay with `kubectl kustomize`, alone and with the
monitoring component (components/monitoring), and checks, without a
cluster, what would otherwise only fail once deployed:
  - alone, an overlay holds core Kubernetes kinds only (it installs on any
    cluster: no CRD needed);
  - every Service, ServiceMonitor, PodDisruptionBudget selector matches
    pods (or Services) that exist, and every port they name exists there;
  - every probe points at a port its container declares;
  - every ConfigMap, PVC and config file a pod mounts or names exists;
  - every $(VAR) in args is defined in the container's env;
  - the HPA scales a Deployment that exists, on a metric the
    prometheus-adapter rule provides (with the monitoring component);
  - the ports are the binaries' own: the config defaults in
    coordinator/config.h and teacher_server/server_config.h, and the
    listen / metrics_listen values the mounted configs (and --set flags)
    give each binary;
  - images are ones scripts/docker_images.sh (or docker/Dockerfile.cuda)
    builds;
  - every pod passes the "restricted" Pod Security profile, and more:
    non-root, the runtime's seccomp profile, no privilege escalation, all
    capabilities dropped, a read-only root filesystem, no host namespaces
    or host paths, no service-account token; namespaces enforce it;
  - the teachers: spread over nodes, a startupProbe where there is a
    livenessProbe, rollouts without a surge (no spare GPU), and no
    `replicas` on a Deployment an HPA scales;
  - ConfigMaps are generated with hashed names (an edit rolls the pods);
  - a NetworkPolicy denies ingress by default, and every named port of
    every pod is opened by some policy that selects the pod, to pods
    that exist (or to a namespace);
  - every object is valid against its schema: Kubernetes' OpenAPI schemas
    and prometheus-operator's CRDs (deploy/k8s/schema/validate.mjs, with
    the npm packages pinned there; scripts/setup.sh installs them). The
    schemas allow fields they do not name, so a misspelt field is not
    caught there; a server-side dry run on a real cluster would.
Prints one line per problem and exits 1 if there is any.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

IMAGES = {"maskedkd", "maskedkd-coordinator", "maskedkd-cuda"}
# The binary each container runs, and the header holding its defaults.
DEFAULTS = {
    "mkd-coordinator": "coordinator/config.h",
    "mkd-teacher": "teacher_server/server_config.h",
}


def binary_defaults(root):
    """{binary: {"listen": port, "metrics_listen": port}} from the headers."""
    out = {}
    for binary, header in DEFAULTS.items():
        text = open(f"{root}/{header}").read()
        ports = {}
        for key in ("listen", "metrics_listen"):
            m = re.search(rf'std::string {key} = "[^"]*:(\d+)"', text)
            if not m:
                sys.exit(f"check: no default for {key} in {header}")
            ports[key] = int(m.group(1))
        out[binary] = ports
    return out


def render(kubectl, overlay, components=()):
    """The overlay's objects; with `components`, through a kustomization
    that adds them to it."""
    target = overlay
    if components:
        # Beside the overlays: kustomize takes relative paths only.
        tmp = tempfile.mkdtemp(prefix=".check-", dir=os.path.dirname(os.path.dirname(os.path.abspath(overlay))))
        with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
            yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                            "resources": [os.path.relpath(overlay, tmp)],
                            "components": [os.path.relpath(c, tmp) for c in components]}, f)
        target = tmp
    try:
        p = subprocess.run([kubectl, "kustomize", target], capture_output=True, text=True)
    finally:
        if components:
            shutil.rmtree(target)
    if p.returncode != 0:
        sys.exit(f"check: kubectl kustomize {overlay} {' '.join(components)} failed:\n{p.stderr}")
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def is_core(api_version):
    """Kinds every cluster has: the core group and Kubernetes' own groups."""
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return "." not in group or group.endswith(".k8s.io")


SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema")


def schema_problems(docs):
    """Each object checked against its schema by validate.mjs (Node.js)."""
    node = shutil.which("node")
    if node is None or not os.path.isdir(os.path.join(SCHEMA_DIR, "node_modules")):
        return ["schemas: Node.js or deploy/k8s/schema/node_modules is missing "
                "(scripts/setup.sh installs both)"]
    p = subprocess.run([node, os.path.join(SCHEMA_DIR, "validate.mjs")], input=json.dumps(docs),
                       capture_output=True, text=True)
    if p.returncode not in (0, 1) or (p.returncode == 1 and not p.stdout.strip()):
        return [f"schemas: validate.mjs failed: {p.stderr.strip()}"]
    return [f"schema: {line}" for line in p.stdout.splitlines() if line.strip()]


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def port_of(value):
    """host:port -> port (int)."""
    return int(str(value).rsplit(":", 1)[1])


class Checker:
    def __init__(self, docs, jobs, overlay, defaults, adapter_metrics):
        """`docs`: the overlay's objects; `jobs`: those `mkd job manifest`
        printed for it; `adapter_metrics`: the metric names the
        prometheus-adapter rules serve (None: rendered without the
        monitoring component)."""
        self.pool, self.docs, self.overlay, self.defaults = docs, docs + jobs, overlay, defaults
        self.adapter_metrics = adapter_metrics
        self.problems = []
        self.by_kind = {}
        for d in self.docs:
            name = d["metadata"]["name"]
            if name in self.by_kind.get(d["kind"], {}):
                self.bad(f"{d['kind']}/{name}", "is defined twice (two jobs or components collide)")
            self.by_kind.setdefault(d["kind"], {})[name] = d

    def bad(self, what, msg):
        self.problems.append(f"{self.overlay}: {what}: {msg}")

    def workloads(self):
        """(kind/name, pod labels, pod spec) of every pod template."""
        for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            for name, d in self.by_kind.get(kind, {}).items():
                t = d["spec"]["template"]
                yield f"{kind}/{name}", t["metadata"].get("labels", {}), t["spec"]
        for name, d in self.by_kind.get("JobSet", {}).items():
            for r in d["spec"]["replicatedJobs"]:
                t = r["template"]["spec"]["template"]
                yield f"JobSet/{name}", t["metadata"].get("labels", {}), t["spec"]

    def config_files(self, pod):
        """{mount path/file: parsed YAML} for ConfigMaps the pod mounts."""
        cms = {v["name"]: v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v}
        files = {}
        for c in pod["containers"]:
            for m in c.get("volumeMounts", []):
                cm = self.by_kind.get("ConfigMap", {}).get(cms.get(m["name"], ""))
                if cm:
                    for key, text in cm.get("data", {}).items():
                        files[f"{m['mountPath']}/{key}"] = yaml.safe_load(text)
        return files

    def check_pods(self):
        for what, labels, pod in self.workloads():
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for v in volumes.values():
                if "configMap" in v and v["configMap"]["name"] not in self.by_kind.get("ConfigMap", {}):
                    self.bad(what, f"volume {v['name']}: no ConfigMap {v['configMap']['name']}")
                pvc = v.get("persistentVolumeClaim", {}).get("claimName")
                if pvc and pvc not in self.by_kind.get("PersistentVolumeClaim", {}):
                    self.bad(what, f"volume {v['name']}: no PersistentVolumeClaim {pvc}")
            files = self.config_files(pod)
            for c in pod["containers"]:
                self.check_container(what, c, volumes, files)
            self.check_pod_security(what, pod)

    def check_pod_security(self, what, pod):
        """The "restricted" Pod Security profile, plus a read-only root
        filesystem and no service-account token."""
        ctx = pod.get("securityContext", {})
        if pod.get("automountServiceAccountToken") is not False:
            self.bad(what, "automountServiceAccountToken must be false")
        if ctx.get("runAsNonRoot") is not True:
            self.bad(what, "securityContext.runAsNonRoot must be true")
        if ctx.get("runAsUser") == 0:
            self.bad(what, "securityContext.runAsUser must not be 0")
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(key):
                self.bad(what, f"{key} is not allowed")
        for v in pod.get("volumes", []):
            if "hostPath" in v:
                self.bad(what, f"volume {v['name']}: hostPath is not allowed")
            # A Secret's files belong to root unless fsGroup names a group:
            # without read for others, a non-root process cannot read them.
            mode = v.get("secret", {}).get("defaultMode", 0o644)
            if "secret" in v and not mode & 0o004 and "fsGroup" not in ctx:
                self.bad(what, f"volume {v['name']}: mode {mode:o} and no securityContext.fsGroup, "
                               "so the non-root process cannot read the Secret")
        for c in pod.get("initContainers", []) + pod["containers"]:
            where = f"{what} container {c['name']}"
            cctx = c.get("securityContext", {})
            seccomp = cctx.get("seccompProfile", ctx.get("seccompProfile", {})).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                self.bad(where, "seccompProfile.type must be RuntimeDefault (pod or container)")
            if cctx.get("allowPrivilegeEscalation") is not False:
                self.bad(where, "securityContext.allowPrivilegeEscalation must be false")
            if cctx.get("privileged"):
                self.bad(where, "securityContext.privileged is not allowed")
            if "ALL" not in cctx.get("capabilities", {}).get("drop", []):
                self.bad(where, "securityContext.capabilities.drop must hold ALL")
            if cctx.get("capabilities", {}).get("add"):
                self.bad(where, "securityContext.capabilities.add is not allowed")
            if cctx.get("readOnlyRootFilesystem") is not True:
                self.bad(where, "securityContext.readOnlyRootFilesystem must be true "
                                "(an emptyDir where the process writes)")
            if "livenessProbe" in c and "startupProbe" not in c and "mkd-teacher" in c.get("command", []):
                self.bad(where, "a teacher with a livenessProbe needs a startupProbe "
                                "(loading a large model would fail liveness)")

    def check_namespaces(self):
        for name, ns in self.by_kind.get("Namespace", {}).items():
            labels = ns["metadata"].get("labels", {})
            if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
                self.bad(f"Namespace/{name}", "does not enforce the restricted Pod Security profile "
                                              "(label pod-security.kubernetes.io/enforce: restricted)")

    def check_network_policies(self):
        policies = self.by_kind.get("NetworkPolicy", {}).values()
        if not any(p["spec"].get("podSelector") == {} and not p["spec"].get("ingress")
                   and "Ingress" in p["spec"].get("policyTypes", []) for p in policies):
            self.bad("NetworkPolicy", "none denies ingress by default (podSelector {} with no ingress rule)")
        pods = list(self.workloads())
        for name, p in self.by_kind.get("NetworkPolicy", {}).items():
            for rule in p["spec"].get("ingress", []):
                for peer in rule.get("from", []):
                    sel = peer.get("podSelector", {}).get("matchLabels")
                    if sel and "namespaceSelector" not in peer and not any(
                            matches(sel, labels) for _, labels, _ in pods):
                        self.bad(f"NetworkPolicy/{name}", f"allows pods {sel}, which no pod template has")
        for what, labels, pod in pods:
            opened, every_port = set(), False
            for p in policies:
                if matches(p["spec"].get("podSelector", {}).get("matchLabels", {}), labels):
                    for rule in p["spec"].get("ingress", []):
                        opened |= {q["port"] for q in rule.get("ports", [])}
                        every_port |= "ports" not in rule  # A rule without ports opens them all.
            for c in pod["containers"]:
                for q in c.get("ports", []):
                    if every_port:
                        continue
                    if q.get("name") and q["name"] not in opened and q["containerPort"] not in opened:
                        self.bad(what, f"port {q['name']} is opened by no NetworkPolicy "
                                       "(the default deny would block it)")

    def check_teachers(self):
        scaled = {h["spec"]["scaleTargetRef"]["name"]
                  for h in self.by_kind.get("HorizontalPodAutoscaler", {}).values()}
        for name, d in self.by_kind.get("Deployment", {}).items():
            what = f"Deployment/{name}"
            if name in scaled and "replicas" in d["spec"]:
                self.bad(what, "sets replicas, but an HPA scales it (every apply would reset the count)")
            pod = d["spec"]["template"]["spec"]
            if not any("mkd-teacher" in c.get("command", []) for c in pod["containers"]):
                continue
            surge = d["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge")
            if surge not in (0, "0", "0%"):
                self.bad(what, "rollingUpdate.maxSurge must be 0 (a rollout must not need a spare GPU)")
            spread = [t for t in pod.get("topologySpreadConstraints", [])
                      if t.get("topologyKey") == "kubernetes.io/hostname"]
            if not spread:
                self.bad(what, "no topologySpreadConstraints over kubernetes.io/hostname "
                               "(every teacher could land on one node)")

    def check_transport(self):
        """The pool and its jobs agree on TLS: all mutual TLS, or all
        plaintext by name (tls.insecure=true)."""
        modes = {}
        for what, _, pod in self.workloads():
            for c in pod["containers"]:
                words = " ".join(c.get("command", []) + c.get("args", []))
                if "tls.insecure=true" in words:
                    modes.setdefault("plaintext", []).append(what)
                elif "tls.cert=" in words and "tls.ca=" in words:
                    modes.setdefault("mutual TLS", []).append(what)
                else:
                    self.bad(what, "sets neither tls.cert/tls.key/tls.ca nor tls.insecure=true")
        if len(modes) > 1:
            self.bad("transport", "the pool and its jobs disagree: " +
                     "; ".join(f"{m}: {', '.join(sorted(w))}" for m, w in sorted(modes.items())))

    def check_certificates(self):
        """With cert-manager's component: every TLS Secret a pod mounts is
        issued by a Certificate, from an Issuer that exists."""
        certs = self.by_kind.get("Certificate", {})
        if not certs:
            return
        issued = {c["spec"]["secretName"]: name for name, c in certs.items()}
        issuers = set(self.by_kind.get("Issuer", {})) | set(self.by_kind.get("ClusterIssuer", {}))
        for name, c in certs.items():
            if c["spec"]["issuerRef"]["name"] not in issuers:
                self.bad(f"Certificate/{name}", f"issuer {c['spec']['issuerRef']['name']} does not exist")
            if c["spec"].get("privateKey", {}).get("encoding") != "PKCS8":
                self.bad(f"Certificate/{name}", "privateKey.encoding must be PKCS8 (the binaries read "
                                                "\"PRIVATE KEY\" PEM)")
        for what, _, pod in self.workloads():
            for v in pod.get("volumes", []):
                secret = v.get("secret", {}).get("secretName", "")
                if secret.endswith("-tls") and secret not in issued:
                    self.bad(what, f"volume {v['name']}: no Certificate issues Secret {secret}")

    def check_config_maps(self):
        for what, _, pod in self.workloads():
            for v in pod.get("volumes", []):
                name = v.get("configMap", {}).get("name", "")
                if name and not re.search(r"-[a-z0-9]{10}$", name):
                    self.bad(what, f"volume {v['name']}: ConfigMap {name} has no content hash in "
                                   "its name, so editing it would not roll the pods")

    def check_container(self, what, c, volumes, files):
        where = f"{what} container {c['name']}"
        image = c["image"].split(":")[0]
        if image not in IMAGES:
            self.bad(where, f"image {c['image']} is not one maskedkd builds ({sorted(IMAGES)})")
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                self.bad(where, f"mounts volume {m['name']}, which the pod does not define")
        ports = {p["containerPort"] for p in c.get("ports", [])}
        names = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
        env = {e["name"] for e in c.get("env", [])}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            for how in ("grpc", "httpGet", "tcpSocket"):
                port = c.get(probe, {}).get(how, {}).get("port")
                if port is not None and port not in ports and port not in names:
                    self.bad(where, f"{probe} {how} port {port} is not a port of the container")
            # An exec probe through mkd-health (the kubelet's gRPC probe
            # speaks no TLS): the address it checks, and the variables its
            # shell expands (the image's ENV counts too).
            command = " ".join(c.get(probe, {}).get("exec", {}).get("command", []))
            for port in re.findall(r"mkd-health \S+:(\d+)", command):
                if int(port) not in ports:
                    self.bad(where, f"{probe} mkd-health port {port} is not a port of the container")
            for var in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", command):
                if var not in env:
                    self.bad(where, f"{probe} uses ${var}, which env does not define")
        argv = c.get("command", []) + c.get("args", [])
        for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", " ".join(argv)):
            if var not in env:
                self.bad(where, f"args use $({var}), which env does not define")
        # Every file the container is told about under /etc/maskedkd (configs,
        # secrets, certificates) lies in a volume it mounts.
        told = " ".join(argv + [str(e.get("value", "")) for e in c.get("env", [])])
        mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
        for path in sorted(set(re.findall(r"/etc/maskedkd/[A-Za-z0-9_./-]+", told))):
            if not any(path.startswith(m.rstrip("/") + "/") for m in mounts):
                self.bad(where, f"{path} is in no volume the container mounts")
        # The binary, its config file and --set overrides, from the argv.
        words = [w.strip("'") for w in " ".join(argv).split()]
        # The first mkd-* word of command + args (also behind `sh -c`); the
        # coordinator's image runs it as its entrypoint, with args only.
        binary = next((w for w in words if w.startswith("mkd-")), None)
        if binary is None and image == "maskedkd-coordinator":
            binary = "mkd-coordinator"
        config = {}
        for i, w in enumerate(words[:-1]):
            if w == "--config":
                if words[i + 1] not in files:
                    self.bad(where, f"--config {words[i + 1]}: no such file in its mounted ConfigMaps")
                else:
                    config = dict(files[words[i + 1]] or {})
        sets = dict(words[i + 1].split("=", 1) for i, w in enumerate(words[:-1])
                    if w == "--set" and "=" in words[i + 1])
        self.check_ports(where, binary, config, sets, names)

    def check_ports(self, where, binary, config, sets, names):
        """The container's grpc/metrics ports are the ones the binary binds."""
        keys = {"grpc": "listen", "metrics": "metrics_listen"}
        if binary == "mkd-student":
            keys = {"metrics": "run.metrics_listen"}
            config = {"run.metrics_listen": (config.get("run") or {}).get("metrics_listen", "")}
        elif binary not in self.defaults:
            self.bad(where, f"cannot tell which maskedkd binary it runs ({binary})")
            return
        for port_name, key in keys.items():
            default = self.defaults.get(binary, {}).get(key)
            value = sets.get(key, config.get(key))
            if value in (None, ""):
                if default is None:
                    self.bad(where, f"{key} is unset, so the binary serves no {port_name} port")
                    continue
                bound = default
            else:
                bound = port_of(value)
            if default is not None and config.get(key) and port_of(config[key]) != default:
                self.bad(where, f"config {key} {config[key]} differs from the binary's default port {default}")
            if names.get(port_name) != bound:
                self.bad(where, f"port {port_name} is {names.get(port_name)}, but {binary} binds {bound} ({key})")

    def check_services(self):
        pods = list(self.workloads())
        for name, s in self.by_kind.get("Service", {}).items():
            sel = s["spec"].get("selector", {})
            targets = [(w, pod) for w, labels, pod in pods if matches(sel, labels)]
            if not targets:
                self.bad(f"Service/{name}", f"selector {sel} matches no pod template")
                continue
            if len({w for w, _ in targets}) > 1:
                self.bad(f"Service/{name}", f"selector {sel} matches the pods of "
                                            f"{sorted({w for w, _ in targets})}: their labels collide")
            for p in s["spec"]["ports"]:
                tp = p.get("targetPort", p["port"])
                for w, pod in targets:
                    declared = [q for c in pod["containers"] for q in c.get("ports", [])]
                    if not any(q.get("name") == tp or q["containerPort"] == tp for q in declared):
                        self.bad(f"Service/{name}", f"targetPort {tp} is not a port of {w}")
        for name, m in self.by_kind.get("ServiceMonitor", {}).items():
            sel = m["spec"]["selector"].get("matchLabels", {})
            services = [s for s in self.by_kind.get("Service", {}).values()
                        if matches(sel, s["metadata"].get("labels", {}))]
            if not services:
                self.bad(f"ServiceMonitor/{name}", f"selector {sel} matches no Service")
            for e in m["spec"]["endpoints"]:
                for s in services:
                    if e["port"] not in {p.get("name") for p in s["spec"]["ports"]}:
                        self.bad(f"ServiceMonitor/{name}",
                                 f"endpoint port {e['port']} is not a port of Service/{s['metadata']['name']}")
        for name, m in self.by_kind.get("PodMonitor", {}).items():
            sel = m["spec"]["selector"].get("matchLabels", {})
            targets = [(w, pod) for w, labels, pod in pods if matches(sel, labels)]
            if not targets:
                self.bad(f"PodMonitor/{name}", f"selector {sel} matches no pod template")
            for e in m["spec"]["podMetricsEndpoints"]:
                for w, pod in targets:
                    if e["port"] not in {q.get("name") for c in pod["containers"] for q in c.get("ports", [])}:
                        self.bad(f"PodMonitor/{name}", f"endpoint port {e['port']} is not a port of {w}")
        # A pod that names a subdomain (an Indexed Job's ranks find rank 0
        # as <job>-0.<subdomain>) needs a headless Service of that name
        # selecting it, publishing addresses before the pods are ready (the
        # ranks rendezvous before any is ready).
        for what, labels, pod in pods:
            sub = pod.get("subdomain")
            if not sub:
                continue
            s = self.by_kind.get("Service", {}).get(sub)
            if s is None:
                self.bad(what, f"subdomain {sub}: no Service of that name")
            elif s["spec"].get("clusterIP") != "None" or not matches(s["spec"].get("selector", {}), labels):
                self.bad(what, f"subdomain {sub}: Service/{sub} must be headless and select the pods")
            elif s["spec"].get("publishNotReadyAddresses") is not True:
                self.bad(what, f"subdomain {sub}: Service/{sub} needs publishNotReadyAddresses: true "
                               "(rank 0's name must resolve before the ranks are ready)")
        for name, b in self.by_kind.get("PodDisruptionBudget", {}).items():
            sel = b["spec"]["selector"]["matchLabels"]
            if not any(matches(sel, labels) for _, labels, _ in pods):
                self.bad(f"PodDisruptionBudget/{name}", f"selector {sel} matches no pod template")

    def check_autoscalers(self):
        for name, h in self.by_kind.get("HorizontalPodAutoscaler", {}).items():
            ref = h["spec"]["scaleTargetRef"]
            if ref["name"] not in self.by_kind.get(ref["kind"], {}):
                self.bad(f"HorizontalPodAutoscaler/{name}", f"scales {ref['kind']}/{ref['name']}, which does not exist")
            for m in h["spec"].get("metrics", []) if self.adapter_metrics is not None else []:
                if m["type"] == "Pods" and m["pods"]["metric"]["name"] not in self.adapter_metrics:
                    self.bad(f"HorizontalPodAutoscaler/{name}",
                             f"metric {m['pods']['metric']['name']} is served by no prometheus-adapter rule")

    def run(self):
        if not self.by_kind.get("Deployment"):
            self.bad("render", "no Deployment rendered")
        if self.adapter_metrics is None:
            for d in self.pool:
                if not is_core(d["apiVersion"]):
                    self.bad(f"{d['kind']}/{d['metadata']['name']}",
                             f"{d['apiVersion']} is not a core kind: it belongs in a component "
                             "(the overlay alone must install on any cluster)")
        self.check_pods()
        self.check_teachers()
        self.check_transport()
        self.check_certificates()
        self.check_config_maps()
        self.check_namespaces()
        self.check_network_policies()
        self.check_services()
        self.check_autoscalers()
        return self.problems


# The jobs checked beside each overlay, as an operator would print them
# (docs/kubernetes.md): one rank, two ranks through a Kueue queue, four as
# a JobSet; side by side, so a collision between two jobs is caught.
JOBS = [
    ["--name", "job-a"],
    ["--name", "job-b", "--ranks", "2", "--queue", "research"],
    ["--name", "job-c", "--ranks", "4", "--kind", "jobset"],
]
# Each overlay's flags for its jobs: plaintext and local images on
# cpu-dev, a GPU per rank and mutual TLS on gpu.
OVERLAY_JOB_FLAGS = {
    "cpu-dev": ["--namespace", "maskedkd-dev", "--insecure", "--image-pull-policy", "Never",
                "--cpu", "1", "--memory", "1Gi", "--storage", "1Gi"],
    "gpu": ["--namespace", "maskedkd", "--gpus-per-rank", "1"],
}


def generate_jobs(mkd, root, overlay):
    """The objects `mkd job manifest` prints for JOBS on `overlay`."""
    if not os.access(mkd, os.X_OK):
        sys.exit(f"check: no mkd binary at {mkd} (build it, or pass --mkd)")
    flags = OVERLAY_JOB_FLAGS.get(os.path.basename(os.path.normpath(overlay)), [])
    docs = []
    for job in JOBS:
        argv = [mkd, "job", "manifest", *job, *flags,
                "--config", f"{root}/deploy/k8s/base/config/student.yaml"]
        p = subprocess.run(argv, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"check: {' '.join(argv)} failed:\n{p.stderr}")
        docs += [d for d in yaml.safe_load_all(p.stdout) if d]
    return docs


def adapter_metrics(monitoring):
    """The metric names the prometheus-adapter values file serves."""
    values = yaml.safe_load(open(f"{monitoring}/prometheus-adapter-values.yaml"))
    return {rule["name"]["as"] for rule in values["rules"]["custom"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("--root", default=".", help="the repository root")
    ap.add_argument("--mkd", help="the mkd binary that prints the jobs (default <root>/build/bin/mkd)")
    ap.add_argument("overlays", nargs="*")
    args = ap.parse_args()
    overlays = args.overlays or [f"{args.root}/deploy/k8s/overlays/{o}" for o in ("cpu-dev", "gpu")]
    defaults = binary_defaults(args.root)
    monitoring = f"{args.root}/deploy/k8s/components/monitoring"
    cert_manager = f"{args.root}/deploy/k8s/components/cert-manager"
    problems = []
    for overlay in overlays:
        jobs = generate_jobs(args.mkd or f"{args.root}/build/bin/mkd", args.root, overlay)
        # Alone, with monitoring, and (where the pool runs mutual TLS)
        # with monitoring and cert-manager.
        combos = [(), (monitoring,)]
        if os.path.basename(os.path.normpath(overlay)) != "cpu-dev":
            combos.append((monitoring, cert_manager))
        for components in combos:
            name = overlay + "".join(" + " + os.path.basename(c) for c in components)
            docs = render(args.kubectl, overlay, components)
            served = adapter_metrics(monitoring) if monitoring in components else None
            found = Checker(docs, jobs, name, defaults, served).run()
            found += [f"{name}: {p}" for p in schema_problems(docs + jobs)]
            problems += found
            print(f"check: {name}: {len(docs)} objects, and {len(jobs)} of {len(JOBS)} jobs: "
                  f"{len(found)} problems")
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
