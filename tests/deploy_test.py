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


def read(path):
    with open(path) as f:
        return f.read()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


class Kubernetes(unittest.TestCase):
    def check(self, root):
        return run([sys.executable, os.path.join(ROOT, "deploy/k8s/check.py"), "--root", root])

    def broken(self, path, old, new):
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
        return self.check(tmp)

    def test_every_overlay_renders_and_passes(self):
        self.assertIsNotNone(KUBECTL, "kubectl is missing: scripts/setup.sh installs it")
        p = self.check(ROOT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # Alone (core kinds only), and with the monitoring component.
        self.assertIn("overlays/cpu-dev: 15 objects, 0 problems", p.stdout)
        self.assertIn("overlays/gpu: 15 objects, 0 problems", p.stdout)
        self.assertIn("overlays/cpu-dev + monitoring: 20 objects, 0 problems", p.stdout)
        self.assertIn("overlays/gpu + monitoring: 20 objects, 0 problems", p.stdout)

    def test_the_pool_alone_needs_no_crd(self):
        deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: maskedkd-default-deny"
        p = self.broken("deploy/k8s/base/network-policy.yaml", deny,
                        "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: mkd-teacher\n"
                        "spec:\n  selector:\n    matchLabels: {app.kubernetes.io/name: mkd-teacher}\n"
                        "  endpoints:\n    - {port: metrics}\n---\n" + deny)
        self.assertEqual(p.returncode, 1)
        self.assertIn("overlays/cpu-dev: ServiceMonitor/mkd-teacher: monitoring.coreos.com/v1 is not a core kind",
                      p.stdout)

    def test_the_prometheus_rule_is_made_from_the_rules_file(self):
        make = os.path.join(ROOT, "deploy/k8s/components/monitoring/make_rule.py")
        p = run([sys.executable, make, "--check"])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        rule = yaml.safe_load(read(os.path.join(ROOT, "deploy/k8s/components/monitoring/prometheus-rule.yaml")))
        self.assertEqual(rule["spec"]["groups"], yaml.safe_load(read(RULES))["groups"])

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
        p = self.broken("deploy/k8s/base/coordinator.yaml", "readinessProbe:\n            grpc: {port: 50050}",
                        "readinessProbe:\n            grpc: {port: 50059}")
        self.assertEqual(p.returncode, 1)
        self.assertIn("readinessProbe grpc port 50059 is not a port of the container", p.stdout)

    def test_a_missing_configmap_and_a_wrong_service_port_are_caught(self):
        p = self.broken("deploy/k8s/base/job.yaml", "configMap: {name: maskedkd-config}",
                        "configMap: {name: maskedkd-konfig}")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no ConfigMap maskedkd-konfig", p.stdout)
        p = self.broken("deploy/k8s/base/coordinator.yaml", "{name: grpc, port: 50050, targetPort: grpc}",
                        "{name: grpc, port: 50050, targetPort: rpc}")
        self.assertIn("targetPort rpc is not a port of Deployment/mkd-coordinator", p.stdout)

    def test_an_object_its_schema_refuses_is_caught(self):
        # Kubernetes' OpenAPI schema: a probe period is an integer.
        p = self.broken("deploy/k8s/base/coordinator.yaml", "readinessProbe:\n            grpc: {port: 50050}\n"
                        "            periodSeconds: 5", "readinessProbe:\n            grpc: {port: 50050}\n"
                        "            periodSeconds: five")
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
        p = self.broken("deploy/k8s/base/job.yaml", "seccompProfile: {type: RuntimeDefault}",
                        "seccompProfile: {type: Unconfined}")
        self.assertIn("container student: seccompProfile.type must be RuntimeDefault", p.stdout)
        p = self.broken("deploy/k8s/base/job.yaml", "readOnlyRootFilesystem: true",
                        "readOnlyRootFilesystem: false")
        self.assertIn("container student: securityContext.readOnlyRootFilesystem must be true", p.stdout)

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
        p = self.broken("deploy/k8s/base/network-policy.yaml", "        - {port: rendezvous}",
                        "        - {port: 29501}")
        self.assertIn("Job/mkd-student: port rendezvous is opened by no NetworkPolicy", p.stdout)

    def test_a_config_map_without_a_content_hash_is_caught(self):
        p = self.broken("deploy/k8s/base/kustomization.yaml", "      - student.yaml=config/student.yaml",
                        "      - student.yaml=config/student.yaml\ngeneratorOptions:\n"
                        "  disableNameSuffixHash: true")
        self.assertEqual(p.returncode, 1)
        self.assertIn("ConfigMap maskedkd-config has no content hash in its name", p.stdout)

    def test_an_hpa_metric_no_adapter_rule_serves_is_caught(self):
        p = self.broken("deploy/k8s/components/monitoring/prometheus-adapter.yaml",
                        'as: "mkd_teacher_queue_seconds_mean"',
                        'as: "mkd_teacher_queue_mean"')
        self.assertEqual(p.returncode, 1)
        self.assertIn("metric mkd_teacher_queue_seconds_mean is served by no prometheus-adapter rule", p.stdout)


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
    """A binary from BIN, its stdout in a file; waits (bounded) for a line."""

    def __init__(self, tmp, name, argv):
        self.out = os.path.join(tmp, name + ".out")
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen([os.path.join(BIN, argv[0])] + argv[1:], cwd=ROOT,
                                         stdout=out, stderr=subprocess.STDOUT)

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


def scrape_names(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


class LiveMetricNames(unittest.TestCase):
    """The names dashboards and rules use are the names the binaries export."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="mkd_live_")
        # The shipped configs, secured as shipped: the pool secret and the
        # job's token where the Secrets would be mounted, moved by --set.
        secrets = os.path.join(cls.tmp, "secrets")
        mkd = os.path.join(BIN, "mkd")
        subprocess.run(["bash", "scripts/pool_secrets.sh", secrets, mkd, "live"], cwd=ROOT, check=True)
        secret = f"auth.pool_secret_file={secrets}/pool.secret"
        procs = []
        try:
            c = Process(cls.tmp, "coordinator", ["mkd-coordinator", "--config",
                                                 "deploy/k8s/base/config/coordinator.yaml",
                                                 "--set", "listen=127.0.0.1:0",
                                                 "--set", "metrics_listen=127.0.0.1:0", "--set", secret])
            procs.append(c)
            m = c.wait_for(r"listening on port (\d+) \(metrics port (\d+)\)")
            coord, coord_metrics = m.group(1), int(m.group(2))
            t = Process(cls.tmp, "teacher", ["mkd-teacher", "--config", "deploy/k8s/base/config/teacher.yaml",
                                             "--set", f"coordinator=127.0.0.1:{coord}", "--set", "threads=1",
                                             "--set", "listen=127.0.0.1:0", "--set", "metrics_listen=127.0.0.1:0",
                                             "--set", secret])
            procs.append(t)
            teacher_metrics = int(t.wait_for(r"metrics port (\d+)").group(1))
            s = Process(cls.tmp, "student", [
                "mkd-student", "train", "--config", "deploy/k8s/base/config/student.yaml",
                "--set", f"distill.coordinator=127.0.0.1:{coord}", "--set", f"run.out_dir={cls.tmp}/run",
                "--set", "distill.job_id=live", "--set", f"distill.job_token_file={secrets}/live.token",
                "--set", "run.metrics_listen=127.0.0.1:0", "--set", "run.log_every_steps=1",
                "--set", "data.limit_train=8192", "--set", "data.limit_eval=256", "--set", "optim.epochs=1"])
            procs.append(s)
            student_metrics = int(s.wait_for(r"metrics on port (\d+)").group(1))
            s.wait_for(r"step 3/")  # Trained through the pool: every series has data.
            cls.names = {"coordinator": scrape_names(coord_metrics), "teacher": scrape_names(teacher_metrics),
                         "student": scrape_names(student_metrics)}
        finally:
            for p in procs:
                p.stop()
        cls.exported = set().union(*cls.names.values())

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def uses(self, text):
        return set(re.findall(r"\bmkd_[a-z0-9_]+", text))

    def test_each_binary_exports_its_own_family(self):
        for who, names in self.names.items():
            self.assertTrue(any(n.startswith(f"mkd_{who}_") for n in names), f"{who}: {sorted(names)}")

    def test_the_rules_and_the_adapter_name_only_exported_metrics(self):
        used = self.uses(read(RULES))
        used |= self.uses(read(os.path.join(ROOT, "deploy/k8s/components/monitoring/prometheus-adapter.yaml")))
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
        self.assertEqual(set(re.findall(r"maskedkd:[a-z0-9_:]+", text)) - recorded, set())
        rows = [p["title"] for p in d["panels"] if p["type"] == "row"]
        self.assertEqual(rows, ["Pool", "Per teacher", "Per job"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
