#!/usr/bin/env python3
"""Checks deploy/ against the real binaries, without a cluster:
  - deploy/k8s/check.py passes on every overlay, and fails, naming the
    problem, on manifests broken on purpose (a wrong port, a probe on a
    port that does not exist, a missing ConfigMap, an HPA metric no rule
    serves);
  - deploy/prometheus: `promtool check rules` and `promtool test rules`
    (a unit test per alert), and the local cluster's prometheus.yml;
  - deploy/grafana/maskedkd.json: parses, is what make_dashboard.py writes,
    every expression parses (promtool), and every metric it, the rules and
    the prometheus-adapter rule name is one that mkd-coordinator,
    mkd-teacher and mkd-student really export: read from their live
    /metrics, the three started here on loopback as a small pool.
Run by ctest (deploy_test) from the repository root; MKD_BIN_DIR names the
binaries' folder (default build/bin).
"""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.abspath(os.environ.get("MKD_BIN_DIR", os.path.join(ROOT, "build/bin")))
RULES = os.path.join(ROOT, "deploy/prometheus/rules.yml")
DASHBOARD = os.path.join(ROOT, "deploy/grafana/maskedkd.json")
KUBECTL = shutil.which("kubectl")
# A recording rule's name: level:metric:operations, the level being what it
# keeps (namespace: the pool, instance: a teacher, job_id: a job).
RECORD_NAME = r"\b(?:namespace|instance|job_id):mkd_[a-z0-9_]+:[a-z0-9_]+"


def read(path):
    with open(path) as f:
        return f.read()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


class Kubernetes(unittest.TestCase):
    def check(self, root, mkd=None, overlay=None):
        """check.py on every overlay, or on `overlay` alone (each overlay
        costs several renderings and schema runs: the broken-on-purpose
        cases need one)."""
        overlays = [os.path.join(root, "deploy/k8s/overlays", overlay)] if overlay else []
        return run([sys.executable, os.path.join(ROOT, "deploy/k8s/check.py"), "--root", root,
                    "--mkd", mkd or os.path.join(BIN, "mkd"), *overlays])

    def edited_jobs(self, old, new):
        """check.py with an `mkd` whose job manifests have one edit."""
        tmp = tempfile.mkdtemp(prefix="mkd_jobs_")
        self.addCleanup(shutil.rmtree, tmp)
        wrapper = os.path.join(tmp, "mkd")
        write(wrapper, f"#!/bin/sh\n{os.path.join(BIN, 'mkd')} \"$@\" | sed 's/{old}/{new}/'\n")
        os.chmod(wrapper, 0o755)
        return self.check(ROOT, wrapper, overlay="cpu-dev")

    def broken(self, path, old, new, overlay="cpu-dev"):
        """A copy of the repository's deploy/ and headers with one edit."""
        tmp = tempfile.mkdtemp(prefix="mkd_k8s_")
        self.addCleanup(shutil.rmtree, tmp)
        # The checker's own schema packages are used, not copied.
        shutil.copytree(os.path.join(ROOT, "deploy"), os.path.join(tmp, "deploy"),
                        ignore=shutil.ignore_patterns("node_modules"))
        for header in ("coordinator/config.h", "teacher_server/server_config.h"):
            os.makedirs(os.path.join(tmp, os.path.dirname(header)), exist_ok=True)
            shutil.copy(os.path.join(ROOT, header), os.path.join(tmp, header))
        target = os.path.join(tmp, path)
        text = read(target)
        self.assertIn(old, text, f"{path} no longer holds {old!r}: update this test")
        write(target, text.replace(old, new, 1))
        return self.check(tmp, overlay=overlay)

    def test_every_overlay_renders_and_passes(self):
        self.assertIsNotNone(KUBECTL, "kubectl is missing: scripts/setup.sh installs it")
        p = self.check(ROOT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # Alone (core kinds only), with the monitoring component, and with
        # cert-manager's where the pool runs mutual TLS; each beside the
        # manifests of three jobs (1 rank, 2 through Kueue, 4 as a JobSet).
        jobs = "and 14 of 3 jobs: 0 problems"
        self.assertIn(f"overlays/cpu-dev: 11 objects, {jobs}", p.stdout)
        self.assertIn(f"overlays/gpu: 11 objects, {jobs}", p.stdout)
        self.assertIn(f"overlays/cpu-dev + monitoring: 16 objects, {jobs}", p.stdout)
        self.assertIn(f"overlays/gpu + monitoring: 16 objects, {jobs}", p.stdout)
        self.assertIn(f"overlays/gpu + monitoring + cert-manager: 22 objects, {jobs}", p.stdout)
        self.assertNotIn("cpu-dev + monitoring + cert-manager", p.stdout)  # Plaintext.

    def test_the_pool_alone_needs_no_crd(self):
        deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: maskedkd-default-deny"
        p = self.broken("deploy/k8s/base/network-policy.yaml", deny,
                        "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: mkd-teacher\n"
                        "spec:\n  selector:\n    matchLabels: {app.kubernetes.io/name: mkd-teacher}\n"
                        "  endpoints:\n    - {port: metrics}\n---\n" + deny)
        self.assertEqual(p.returncode, 1)
        self.assertIn("overlays/cpu-dev: ServiceMonitor/mkd-teacher: monitoring.coreos.com/v1 is not a core kind",
                      p.stdout)

    def test_the_rule_and_dashboard_objects_are_made_from_their_sources(self):
        make = os.path.join(ROOT, "deploy/k8s/components/monitoring/make_component.py")
        p = run([sys.executable, make, "--check"])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        rule = yaml.safe_load(read(os.path.join(ROOT, "deploy/k8s/components/monitoring/prometheus-rule.yaml")))
        self.assertEqual(rule["spec"]["groups"], yaml.safe_load(read(RULES))["groups"])
        board = yaml.safe_load(read(os.path.join(ROOT, "deploy/k8s/components/monitoring/grafana-dashboard.yaml")))
        self.assertEqual(board["metadata"]["labels"], {"grafana_dashboard": "1"})
        self.assertEqual(json.loads(board["data"]["maskedkd.json"]), json.loads(read(DASHBOARD)))

    def test_a_metrics_port_unlike_the_config_is_caught(self):
        p = self.broken("deploy/k8s/base/teacher.yaml", "{name: metrics, containerPort: 9464}",
                        "{name: metrics, containerPort: 9463}")
        self.assertEqual(p.returncode, 1)
        self.assertIn("port metrics is 9463, but mkd-teacher binds 9464", p.stdout)

    def test_a_config_that_moves_off_the_default_port_is_caught(self):
        p = self.broken("deploy/k8s/base/config/coordinator.yaml", "listen: 0.0.0.0:50050",
                        "listen: 0.0.0.0:50055")
        self.assertEqual(p.returncode, 1)
        self.assertIn("differs from the binary's default port 50050", p.stdout)

    def test_a_probe_on_a_missing_port_is_caught(self):
        p = self.broken("deploy/k8s/base/coordinator.yaml", "exec mkd-health 127.0.0.1:50050",
                        "exec mkd-health 127.0.0.1:50059")
        self.assertEqual(p.returncode, 1)
        self.assertIn("readinessProbe mkd-health port 50059 is not a port of the container", p.stdout)
        p = self.broken("deploy/k8s/base/teacher.yaml", "            - name: MKD_HEALTH_TLS\n",
                        "            - name: MKD_HEALTH_TLS_X\n", overlay="gpu")
        self.assertIn("readinessProbe uses $MKD_HEALTH_TLS, which env does not define", p.stdout)

    def test_a_missing_configmap_and_a_wrong_service_port_are_caught(self):
        p = self.broken("deploy/k8s/base/coordinator.yaml", "configMap: {name: maskedkd-config}",
                        "configMap: {name: maskedkd-konfig}")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no ConfigMap maskedkd-konfig", p.stdout)
        p = self.broken("deploy/k8s/base/coordinator.yaml", "{name: grpc, port: 50050, targetPort: grpc}",
                        "{name: grpc, port: 50050, targetPort: rpc}")
        self.assertIn("targetPort rpc is not a port of Deployment/mkd-coordinator", p.stdout)

    def test_an_object_its_schema_refuses_is_caught(self):
        # Kubernetes' OpenAPI schema: a probe period is an integer.
        p = self.broken("deploy/k8s/base/coordinator.yaml", "            periodSeconds: 5\n",
                        "            periodSeconds: five\n")
        self.assertEqual(p.returncode, 1)
        self.assertIn("schema: Deployment/mkd-coordinator: "
                      "/spec/template/spec/containers/0/readinessProbe/periodSeconds must be integer", p.stdout)
        # prometheus-operator's CRD: a ServiceMonitor's endpoints are a list.
        p = self.broken("deploy/k8s/components/monitoring/service-monitors.yaml", "endpoints:",
                        "endpoints: {}\n  x-endpoints:")
        self.assertIn("schema: ServiceMonitor/", p.stdout)

    def test_a_pod_outside_the_restricted_profile_is_caught(self):
        p = self.broken("deploy/k8s/base/coordinator.yaml", "capabilities: {drop: [ALL]}",
                        "capabilities: {drop: [NET_RAW]}")
        self.assertEqual(p.returncode, 1)
        self.assertIn("container coordinator: securityContext.capabilities.drop must hold ALL", p.stdout)
        p = self.broken("deploy/k8s/base/teacher.yaml", "automountServiceAccountToken: false",
                        "automountServiceAccountToken: true")
        self.assertIn("Deployment/mkd-teacher: automountServiceAccountToken must be false", p.stdout)
        p = self.broken("deploy/k8s/base/teacher.yaml", "seccompProfile: {type: RuntimeDefault}",
                        "seccompProfile: {type: Unconfined}")
        self.assertIn("container teacher: seccompProfile.type must be RuntimeDefault", p.stdout)
        p = self.broken("deploy/k8s/base/teacher.yaml", "readOnlyRootFilesystem: true",
                        "readOnlyRootFilesystem: false")
        self.assertIn("container teacher: securityContext.readOnlyRootFilesystem must be true", p.stdout)
        # The generated jobs are held to the same profile.
        p = self.edited_jobs("allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true")
        self.assertIn("Job/job-a container student: securityContext.allowPrivilegeEscalation must be false",
                      p.stdout)
        # A Secret's files (0440) are unreadable to a non-root process
        # without fsGroup.
        p = self.broken("deploy/k8s/base/teacher.yaml", "        fsGroup: 10001", "")
        self.assertIn("Deployment/mkd-teacher: volume secret: mode 440 and no securityContext.fsGroup", p.stdout)

    def test_a_fragile_teacher_pool_is_caught(self):
        p = self.broken("deploy/k8s/base/teacher.yaml", "spec:\n  strategy:",
                        "spec:\n  replicas: 2\n  strategy:")
        self.assertEqual(p.returncode, 1)
        self.assertIn("sets replicas, but an HPA scales it", p.stdout)
        p = self.broken("deploy/k8s/base/teacher.yaml", "{maxSurge: 0, maxUnavailable: 1}",
                        "{maxSurge: 1, maxUnavailable: 0}")
        self.assertIn("rollingUpdate.maxSurge must be 0", p.stdout)
        p = self.broken("deploy/k8s/base/teacher.yaml", "topologyKey: kubernetes.io/hostname",
                        "topologyKey: topology.kubernetes.io/zone")
        self.assertIn("no topologySpreadConstraints over kubernetes.io/hostname", p.stdout)
        p = self.broken("deploy/k8s/base/teacher.yaml", "startupProbe:", "x-startupProbe:")
        self.assertIn("a teacher with a livenessProbe needs a startupProbe", p.stdout)

    def test_network_policies_deny_by_default_and_open_every_port(self):
        p = self.broken("deploy/k8s/base/network-policy.yaml", "  name: maskedkd-default-deny\nspec:\n  podSelector: {}",
                        "  name: maskedkd-default-deny\nspec:\n  podSelector: {matchLabels: {x: y}}")
        self.assertEqual(p.returncode, 1)
        self.assertIn("none denies ingress by default", p.stdout)
        p = self.broken("deploy/k8s/base/network-policy.yaml", "      ports:\n        - {port: grpc}\n"
                        "    - from:\n        - namespaceSelector:\n            matchLabels: {kubernetes.io/metadata.name: "
                        "monitoring}\n      ports:\n        - {port: metrics}\n---\napiVersion: networking.k8s.io/v1\n"
                        "kind: NetworkPolicy\nmetadata:\n  name: mkd-teacher",
                        "      ports:\n        - {port: 50049}\n"
                        "    - from:\n        - namespaceSelector:\n            matchLabels: {kubernetes.io/metadata.name: "
                        "monitoring}\n      ports:\n        - {port: metrics}\n---\napiVersion: networking.k8s.io/v1\n"
                        "kind: NetworkPolicy\nmetadata:\n  name: mkd-teacher")
        self.assertIn("Deployment/mkd-coordinator: port grpc is opened by no NetworkPolicy", p.stdout)

    def test_a_config_map_without_a_content_hash_is_caught(self):
        p = self.broken("deploy/k8s/base/kustomization.yaml", "      - teacher.yaml=config/teacher.yaml",
                        "      - teacher.yaml=config/teacher.yaml\ngeneratorOptions:\n"
                        "  disableNameSuffixHash: true")
        self.assertEqual(p.returncode, 1)
        self.assertIn("ConfigMap maskedkd-config has no content hash in its name", p.stdout)

    def test_an_hpa_metric_no_adapter_rule_serves_is_caught(self):
        p = self.broken("deploy/k8s/components/monitoring/prometheus-adapter-values.yaml",
                        'as: "mkd_teacher_queue_seconds_mean"',
                        'as: "mkd_teacher_queue_mean"')
        self.assertEqual(p.returncode, 1)
        self.assertIn("metric mkd_teacher_queue_seconds_mean is served by no prometheus-adapter rule", p.stdout)


    def test_jobs_that_would_not_rendezvous_or_would_collide_are_caught(self):
        # Rank 0's name must resolve before the ranks are ready.
        p = self.edited_jobs("publishNotReadyAddresses: true", "publishNotReadyAddresses: false")
        self.assertEqual(p.returncode, 1)
        self.assertIn("Job/job-a: subdomain job-a: Service/job-a needs publishNotReadyAddresses: true", p.stdout)
        # Two jobs under one name collide in every object.
        p = self.edited_jobs("job-b", "job-a")
        self.assertIn("Job/job-a: is defined twice", p.stdout)
        self.assertIn("PersistentVolumeClaim/job-a-runs: is defined twice", p.stdout)
        # A JobSet's own fields are checked by hand (no schema package).
        p = self.edited_jobs("maxRestarts: 3", "maxRestarts: three")
        self.assertIn("schema: JobSet/job-c: /spec/failurePolicy/maxRestarts must be integer", p.stdout)
        # Its Job template against batch/v1 Job's schema.
        p = self.edited_jobs("backoffLimit: 0", "backoffLimit: none")
        self.assertIn("schema: JobSet/job-c: /spec/replicatedJobs/0/template: /spec/backoffLimit must be integer",
                      p.stdout)

    def test_a_pool_and_jobs_that_disagree_on_tls_are_caught(self):
        # cpu-dev's coordinator without its plaintext patch: the base's
        # mutual TLS, with the certificate volume the overlay removes.
        p = self.broken("deploy/k8s/overlays/cpu-dev/small.yaml",
                        '          args: ["--config", "/etc/maskedkd/config/coordinator.yaml", "--set", '
                        '"tls.insecure=true"]\n', "")
        self.assertEqual(p.returncode, 1)
        self.assertIn("the pool and its jobs disagree: mutual TLS: Deployment/mkd-coordinator; plaintext:", p.stdout)
        self.assertIn("/etc/maskedkd/tls/tls.crt is in no volume the container mounts", p.stdout)

    def test_a_tls_secret_no_certificate_issues_is_caught(self):
        p = self.broken("deploy/k8s/components/cert-manager/certificates.yaml",
                        "secretName: maskedkd-teacher-tls", "secretName: maskedkd-teachers-tls", overlay="gpu")
        self.assertEqual(p.returncode, 1)
        self.assertIn("gpu + monitoring + cert-manager: Deployment/mkd-teacher: volume tls: "
                      "no Certificate issues Secret maskedkd-teacher-tls", p.stdout)
        # cert-manager's CRD schema: a usage it does not know.
        p = self.broken("deploy/k8s/components/cert-manager/certificates.yaml",
                        "usages: [client auth,", "usages: [client authentication,", overlay="gpu")
        self.assertIn("schema: Certificate/maskedkd-student:", p.stdout)

    def test_make_secrets_prints_the_secrets_the_pool_mounts(self):
        tmp = tempfile.mkdtemp(prefix="mkd_secrets_")
        self.addCleanup(shutil.rmtree, tmp)
        env = dict(os.environ, MKD=os.path.join(BIN, "mkd"))
        p = run(["bash", "deploy/k8s/make_secrets.sh", f"{tmp}/s"], cwd=ROOT, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all(p.stdout) if d}
        self.assertEqual(sorted(secrets), ["maskedkd-coordinator-tls", "maskedkd-pool",
                                           "maskedkd-student-tls", "maskedkd-teacher-tls"])
        for name in ("maskedkd-coordinator-tls", "maskedkd-teacher-tls", "maskedkd-student-tls"):
            self.assertEqual(sorted(secrets[name]["data"]), ["ca.crt", "tls.crt", "tls.key"])
        teacher = base64.b64decode(secrets["maskedkd-teacher-tls"]["data"]["tls.crt"])
        san = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=teacher,
                             capture_output=True).stdout.decode()
        self.assertIn("URI:spiffe://maskedkd.pool/maskedkd/teacher/", san)
        self.assertIn("DNS:maskedkd.pool", san)
        # Again: the pool secret (and every token minted from it) is kept.
        first = read(f"{tmp}/s/pool.secret")
        p = run(["bash", "deploy/k8s/make_secrets.sh", f"{tmp}/s", "--insecure"], cwd=ROOT, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([d["metadata"]["name"] for d in yaml.safe_load_all(p.stdout) if d], ["maskedkd-pool"])
        self.assertEqual(read(f"{tmp}/s/pool.secret"), first)
        p = run(["bash", "deploy/k8s/make_secrets.sh", f"{tmp}/s", "--plain"], cwd=ROOT, env=env)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown flag '--plain'", p.stderr)


class PrometheusRules(unittest.TestCase):
    def test_rules_check_and_every_alert_is_unit_tested(self):
        p = run(["promtool", "check", "rules", RULES])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = run(["promtool", "test", "rules", "tests.yml"], cwd=os.path.dirname(RULES))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        alerts = {r["alert"] for g in yaml.safe_load(read(RULES))["groups"] for r in g["rules"] if "alert" in r}
        tested = {t["alertname"] for case in yaml.safe_load(read(os.path.join(os.path.dirname(RULES), "tests.yml")))["tests"]
                  for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
        self.assertEqual(alerts - tested, set(), "alerts without a test that makes them fire")

    def test_every_alert_routes_and_has_a_runbook_section(self):
        # Section anchors as Markdown renderers make them: the heading,
        # lower-cased.
        headings = {line[4:].strip().lower() for line in read(os.path.join(ROOT, "docs/operations.md")).splitlines()
                    if line.startswith("### ")}
        for g in yaml.safe_load(read(RULES))["groups"]:
            for r in g["rules"]:
                if "alert" not in r:
                    continue
                self.assertIn(r["labels"]["severity"], ("critical", "warning"), r["alert"])
                url = r["annotations"].get("runbook_url", "")
                self.assertEqual(url, f"docs/operations.md#{r['alert'].lower()}", r["alert"])
                self.assertIn(r["alert"].lower(), headings, f"docs/operations.md has no section {r['alert']}")

    def test_pool_wide_rules_keep_pools_apart(self):
        for g in yaml.safe_load(read(RULES))["groups"]:
            for r in g["rules"]:
                if "record" not in r:
                    continue
                self.assertRegex(r["record"], "^" + RECORD_NAME[2:] + "$", "not level:metric:operations")
                for agg in re.findall(r"\b(sum|avg|max|min)\b\s*(by\s*\(([^)]*)\))?\s*\(", r["expr"]):
                    self.assertIn("namespace", agg[2], f"{r['record']}: {agg[0]} without by (namespace)")

    def test_the_local_clusters_prometheus_config_loads_the_rules(self):
        tmp = tempfile.mkdtemp(prefix="mkd_prom_")
        self.addCleanup(shutil.rmtree, tmp)
        text = read(os.path.join(ROOT, "deploy/compose/prometheus.yml"))
        self.assertIn("/etc/maskedkd/rules.yml", text)
        shutil.copy(RULES, os.path.join(tmp, "rules.yml"))
        write(os.path.join(tmp, "prometheus.yml"), text.replace("/etc/maskedkd/rules.yml", "rules.yml"))
        p = run(["promtool", "check", "config", "prometheus.yml"], cwd=tmp)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class Process:
    """A binary from BIN (PATH holds BIN), its stdout in a file; waits
    (bounded) for a line."""

    def __init__(self, tmp, name, argv, cwd=ROOT, env=None):
        self.out = os.path.join(tmp, name + ".out")
        environ = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", **(env or {}))
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=environ, stdout=out, stderr=subprocess.STDOUT)

    def wait_for(self, pattern, timeout=90):
        end = time.time() + timeout
        while time.time() < end:
            m = re.search(pattern, read(self.out))
            if m:
                return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{read(self.out)[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def scrape_text(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def scrape_names(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


class LiveMetricNames(unittest.TestCase):
    """The names dashboards and rules use are the names the binaries export."""

    @classmethod
    def setUpClass(cls):
        """A small pool on loopback, each process started as its pod would
        start it: the coordinator and a teacher with the base's args (mutual
        TLS), the Secrets deploy/k8s/make_secrets.sh prints, and a job from
        `mkd job manifest`'s own command line and minted token. Each mount
        path is replaced by a folder holding what the Secret or ConfigMap
        would; addresses by loopback ones."""
        cls.tmp = tmp = tempfile.mkdtemp(prefix="mkd_live_")
        mkd = os.path.join(BIN, "mkd")
        secrets = os.path.join(tmp, "secrets")
        p = run(["bash", "deploy/k8s/make_secrets.sh", secrets], cwd=ROOT, env=dict(os.environ, MKD=mkd))
        assert p.returncode == 0, p.stderr
        mounts = {}  # Mount path -> folder here.

        def mount(name, files):
            folder = os.path.join(tmp, name)
            os.makedirs(folder, exist_ok=True)
            for key, data in files.items():
                with open(os.path.join(folder, key), "wb" if isinstance(data, bytes) else "w") as f:
                    f.write(data)
            return folder

        secret = {d["metadata"]["name"]: {k: base64.b64decode(v) for k, v in d["data"].items()}
                  for d in yaml.safe_load_all(p.stdout) if d}
        pool = yaml.safe_load_all(run([KUBECTL, "kustomize", os.path.join(ROOT, "deploy/k8s/base")]).stdout)
        pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in pool if d and d["kind"] == "Deployment"}
        job_flags = ["--name", "live", "--pool-secret-file", f"{secrets}/pool.secret",
                     "--set", "run.metrics_listen=127.0.0.1:0", "--set", "run.log_every_steps=1",
                     "--set", "data.limit_train=8192", "--set", "data.limit_eval=256", "--set", "optim.epochs=1"]
        p = run([mkd, "job", "manifest", *job_flags])
        assert p.returncode == 0, p.stderr
        job = {d["kind"]: d for d in yaml.safe_load_all(p.stdout) if d}
        cls.job_pod = job["Job"]["spec"]["template"]["spec"]

        def localise(text, where):
            for path, folder in where.items():
                text = text.replace(path, folder)
            return text

        def pod_mounts(pod, config_maps):
            """The container's mount paths -> folders holding its volumes: a
            Secret's files as make_secrets.sh printed them, a ConfigMap's
            ({name: {file: text}}, else the base's config folder) with the
            paths in them moved too."""
            volumes = {v["name"]: v for v in pod["volumes"]}
            out, configs = {}, {}
            for m in pod["containers"][0]["volumeMounts"]:
                v = volumes[m["name"]]
                if "secret" in v:
                    name = v["secret"]["secretName"]
                    if name in secret:
                        out[m["mountPath"]] = mount(name, secret[name])
                elif "configMap" in v:
                    configs[m["mountPath"]] = v["configMap"]["name"]
            base = os.path.join(ROOT, "deploy/k8s/base/config")
            for path, name in configs.items():
                files = config_maps.get(name) or {f: read(os.path.join(base, f)) for f in os.listdir(base)}
                out[path] = mount(name, {f: localise(text, out) for f, text in files.items()})
            return out

        procs = []
        try:
            coordinator = pods["mkd-coordinator"]
            where = pod_mounts(coordinator, {})
            args = [localise(a, where) for a in coordinator["containers"][0]["args"]]
            c = Process(tmp, "coordinator", ["mkd-coordinator", *args, "--set", "listen=127.0.0.1:0",
                                             "--set", "metrics_listen=127.0.0.1:0"])
            procs.append(c)
            m = c.wait_for(r"listening on port (\d+) \(metrics port (\d+)\)")
            coord, coord_metrics = m.group(1), int(m.group(2))
            teacher = pods["mkd-teacher"]
            where = pod_mounts(teacher, {})
            tc = teacher["containers"][0]
            args = [localise(a, where).replace("$(POD_IP)", "127.0.0.1") for a in tc["args"]]
            t = Process(tmp, "teacher", ["mkd-teacher", *args, "--set", f"coordinator=127.0.0.1:{coord}",
                                         "--set", "threads=1", "--set", "listen=127.0.0.1:0",
                                         "--set", "metrics_listen=127.0.0.1:0"])
            procs.append(t)
            m = t.wait_for(r"on port (\d+) \(metrics port (\d+)")
            teacher_port, teacher_metrics = m.group(1), int(m.group(2))
            # The teacher's readiness probe, as the kubelet would run it.
            env = {e["name"]: localise(e["value"], where) for e in tc["env"] if "value" in e}
            probe = tc["readinessProbe"]["exec"]["command"]
            cls.probe = run([probe[0], probe[1], probe[2].replace(":50051", f":{teacher_port}")],
                            env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", **env))
            # The job: its container's shell line, in a working directory
            # laid out as the image's (/opt/maskedkd: configs, assets, runs).
            work = os.path.join(tmp, "work")
            os.makedirs(os.path.join(work, "runs"))
            for d in ("configs", "assets"):
                os.symlink(os.path.join(ROOT, d), os.path.join(work, d))
            config_map = job["ConfigMap"]
            where = pod_mounts(cls.job_pod, {config_map["metadata"]["name"]: config_map["data"]})
            where["/opt/maskedkd/runs"] = os.path.join(work, "runs")
            token = job["Secret"]["stringData"]["job.token"]  # Minted: --pool-secret-file.
            where["/etc/maskedkd/token"] = mount("job-token", {"job.token": token})
            sc = cls.job_pod["containers"][0]
            script = localise(sc["args"][0], where).replace("mkd-coordinator:50050", f"127.0.0.1:{coord}")
            env = {e["name"]: e["value"] for e in sc["env"] if "value" in e}
            env["RANK"] = "0"
            s = Process(tmp, "student", [*sc["command"], script], cwd=work, env=env)
            procs.append(s)
            student_metrics = int(s.wait_for(r"metrics on port (\d+)").group(1))
            s.wait_for(r"step 3/")  # Trained through the pool: every series has data.
            cls.names = {"coordinator": scrape_names(coord_metrics), "teacher": scrape_names(teacher_metrics),
                         "student": scrape_names(student_metrics)}
            cls.student_text = scrape_text(student_metrics)
            cls.logs = {p: read(os.path.join(tmp, p + ".out")) for p in ("coordinator", "teacher", "student")}
        finally:
            for p in procs:
                p.stop()
        cls.exported = set().union(*cls.names.values())

    def test_the_pool_and_a_generated_job_run_under_mutual_tls(self):
        # Nothing fell back to plaintext: no process warned of it.
        for who, log in self.logs.items():
            self.assertNotIn("plaintext", log, f"{who}:\n{log[-2000:]}")
        self.assertEqual(self.probe.returncode, 0, self.probe.stdout + self.probe.stderr)
        self.assertIn("SERVING", self.probe.stdout)

    def test_the_student_series_carry_the_job_id(self):
        self.assertRegex(self.student_text, r'mkd_student_step\{[^}]*job_id="live"')

    def test_every_binary_says_which_build_it_is(self):
        for who, names in self.names.items():
            self.assertIn("mkd_build_info", names, who)
        version = read(os.path.join(ROOT, "VERSION")).strip()
        self.assertRegex(self.student_text,
                         r'mkd_build_info\{binary="mkd-student",revision="[0-9a-f]{12}(-dirty)?",'
                         rf'version="{re.escape(version)}"\}} 1')

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def uses(self, text):
        """The metric names `text` reads; a recording rule's name
        (level:metric:operations) is not one."""
        return set(re.findall(r"\bmkd_[a-z0-9_]+", re.sub(RECORD_NAME, "", text)))

    def test_each_binary_exports_its_own_family(self):
        for who, names in self.names.items():
            self.assertTrue(any(n.startswith(f"mkd_{who}_") for n in names), f"{who}: {sorted(names)}")

    def test_the_rules_and_the_adapter_name_only_exported_metrics(self):
        used = self.uses(read(RULES))
        used |= self.uses(read(os.path.join(ROOT, "deploy/k8s/components/monitoring/prometheus-adapter-values.yaml")))
        used.discard("mkd_teacher_queue_seconds_mean")  # The adapter's output name.
        self.assertGreater(len(used), 15)
        self.assertEqual(used - self.exported, set())

    def test_the_dashboard_parses_and_names_only_real_metrics(self):
        d = json.loads(read(DASHBOARD))
        tmp = tempfile.mkdtemp(prefix="mkd_dash_")
        self.addCleanup(shutil.rmtree, tmp)
        p = run([sys.executable, os.path.join(ROOT, "deploy/grafana/make_dashboard.py")],
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(read(DASHBOARD)), d, "maskedkd.json differs from make_dashboard.py's")
        exprs = [t["expr"] for panel in d["panels"] for t in panel.get("targets", [])]
        self.assertGreater(len(exprs), 20)
        # Each expression, with the dashboard's variables filled in, as a
        # recording rule: promtool parses it.
        rules = {"groups": [{"name": "dashboard", "rules": [
            {"record": f"dashboard:expr_{i}", "expr": e.replace("$teacher", ".*").replace("$job", ".*")}
            for i, e in enumerate(exprs)]}]}
        path = os.path.join(tmp, "dashboard_rules.yml")
        write(path, yaml.safe_dump(rules))
        p = run(["promtool", "check", "rules", path])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        text = json.dumps(d)
        self.assertEqual(self.uses(text) - self.exported, set())
        recorded = {r["record"] for g in yaml.safe_load(read(RULES))["groups"] for r in g["rules"] if "record" in r}
        self.assertEqual(set(re.findall(RECORD_NAME, text)) - recorded, set())
        rows = [p["title"] for p in d["panels"] if p["type"] == "row"]
        self.assertEqual(rows, ["Pool", "Per teacher", "Per job"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
