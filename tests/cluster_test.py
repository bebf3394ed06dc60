#!/usr/bin/env python3
"""End to end with real containers: the local cluster (scripts/cluster.sh,
deploy/compose) on this machine's Docker, started here if none runs.

  1. builds the images the fast way (scripts/docker_images.sh --prebuilt:
     the host's binaries, stripped, on the images' Debian runtime; docker
     caches every layer but the binaries);
  2. brings the cluster up with short jobs: coordinator, two teachers, two
     jobs, Prometheus;
  3. asks Prometheus's HTTP API: every target up, every recording rule the
     dashboard uses returns data;
  4. kills teacher1's container: both jobs keep stepping (checked in their
     own /metrics), Prometheus sees the target down and MkdTeacherDown goes
     pending, the coordinator lists one serving teacher;
  5. checks the images' HEALTHCHECKs report healthy;
  6. tears everything down and checks that no container is left.
Run by ctest (cluster_test, serial: fixed loopback ports, and it needs the
machine). Needs root for dockerd, as CI has.
"""
import json
import os
import re
import subprocess
import sys
import time
import unittest
import urllib.parse
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PROM = "http://127.0.0.1:9099"
BIN = os.path.abspath(os.environ.get("MKD_BIN_DIR", os.path.join(ROOT, "build/bin")))
COMPOSE = ["docker-compose", "-p", "maskedkd", "-f", "deploy/compose/docker-compose.yml"]
JOBS = {"job-a": 9476, "job-b": 9477}
# Short jobs: long enough to outlive the test (about 2 epochs of 16k images).
STUDENT_EXTRA = ("--set data.limit_train=16384 --set data.limit_eval=512 --set optim.epochs=20 "
                 "--set run.log_every_steps=10")


def sh(argv, check=True, env=None, timeout=1800):
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def query(expr):
    data = get_json(f"{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    return data["data"]["result"]


def student_step(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if re.match(r"mkd_student_step[ {]", line):
                return float(line.split()[1])
    raise AssertionError(f"no mkd_student_step on port {port}")


def wait(what, predicate, timeout):
    """predicate() until it returns a true value, at most `timeout` s."""
    end, last = time.time() + timeout, None
    while time.time() < end:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # Not up yet: connection refused, no data.
            last = e
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last})")


class Cluster(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # The images take this build's binaries (build-asan's under
        # scripts/sanitize.sh), so no second compile happens.
        cls.env = dict(os.environ, MKD_STUDENT_EXTRA=STUDENT_EXTRA,
                       MKD_BUILD_DIR=os.path.dirname(BIN))
        start = time.time()
        up = sh(["bash", "scripts/cluster.sh", "up", "--prebuilt"], env=cls.env)
        print(up.stdout[-2000:], flush=True)
        print(f"cluster_test: images and cluster up in {time.time() - start:.0f} s", flush=True)
        # cluster.sh started dockerd when none answered: talk to that one.
        sock = os.path.join(os.environ.get("MKD_DOCKER_ROOT", "/var/lib/maskedkd-docker"), "docker.sock")
        if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
            cls.env["DOCKER_HOST"] = f"unix://{sock}"

    @classmethod
    def tearDownClass(cls):
        down = sh(["bash", "scripts/cluster.sh", "down"], check=False, env=cls.env)
        print(down.stdout[-1000:], down.stderr[-1000:], flush=True)
        left = sh(["docker", "ps", "-q", "--filter", "label=com.docker.compose.project=maskedkd"],
                  check=False, env=cls.env)
        assert down.returncode == 0 and not left.stdout.strip(), "containers left after down"

    def test_images_carry_their_version(self):
        version = open(os.path.join(ROOT, "VERSION")).read().strip()
        revision = sh(["git", "rev-parse", "--short=12", "HEAD"], env=self.env).stdout.strip()
        for image in ("maskedkd", "maskedkd-coordinator", "maskedkd-prometheus"):
            labels = json.loads(sh(["docker", "image", "inspect", "-f", "{{json .Config.Labels}}",
                                    f"{image}:latest"], env=self.env).stdout)
            self.assertEqual(labels.get("org.opencontainers.image.version"), version, image)
            self.assertEqual(labels.get("org.opencontainers.image.revision"), revision, image)
            tags = sh(["docker", "image", "ls", "--format", "{{.Tag}}", image], env=self.env).stdout.split()
            self.assertTrue(any(t.startswith(f"{version}-g{revision}") for t in tags), (image, tags))

    def test_cluster(self):
        # Every target up (cluster.sh up waited for that; check it here too).
        targets = get_json(f"{PROM}/api/v1/targets?state=active")["data"]["activeTargets"]
        self.assertEqual(sorted((t["labels"]["job"], t["health"]) for t in targets),
                         [("mkd-coordinator", "up"), ("mkd-student", "up"), ("mkd-student", "up"),
                          ("mkd-teacher", "up"), ("mkd-teacher", "up")],
                         [(t["scrapeUrl"], t["health"], t.get("lastError")) for t in targets])
        # The recording rules have data: the pool serves both jobs.
        for record in ("namespace:mkd_teacher_batch_images:rate1m", "namespace:mkd_teacher_batch_tokens:rate1m",
                       "namespace:mkd_teacher_flops_saved:rate1m", "namespace:mkd_teacher_queue_seconds:p50",
                       "namespace:mkd_teacher_queue_seconds:p99", "instance:mkd_teacher_batch_fill:ratio",
                       "instance:mkd_teacher_errors:ratio_rate5m", "job_id:mkd_student_images_per_second:avg5m",
                       "job_id:mkd_student_bubble_fraction:avg5m", "namespace:mkd_coordinator_utilisation:ratio"):
            wait(f"{record} has data", lambda r=record: query(r), 120)
        images = float(query("namespace:mkd_teacher_batch_images:rate1m")[0]["value"][1])
        self.assertGreater(images, 0, "the pool served no images")
        jobs = wait("both jobs report img/s", lambda: len(query("job_id:mkd_student_images_per_second:avg5m")) == 2
                    and query("job_id:mkd_student_images_per_second:avg5m"), 60)
        self.assertEqual(len(jobs), 2)

        # Kill a teacher for real: its container gets SIGKILL.
        before = {job: student_step(port) for job, port in JOBS.items()}
        sh(COMPOSE + ["kill", "-s", "SIGKILL", "teacher1"], env=self.env)
        killed = time.time()
        # Both jobs go on: each makes 20 more steps on the surviving teacher.
        for job, port in JOBS.items():
            wait(f"{job} steps on after the kill", lambda p=port, j=job: student_step(p) >= before[j] + 20, 120)
        print(f"cluster_test: both jobs 20 steps past the kill {time.time() - killed:.1f} s after it", flush=True)
        # Prometheus sees it: the target down, MkdTeacherDown pending (it
        # fires after a minute; pending proves the rule matches).
        wait("teacher1's target down", lambda: query('up{job="mkd-teacher",instance="127.0.0.1:9474"} == 0'), 60)
        alerts = wait("MkdTeacherDown pending", lambda: [
            a for a in get_json(f"{PROM}/api/v1/alerts")["data"]["alerts"]
            if a["labels"]["alertname"] == "MkdTeacherDown" and a["labels"]["instance"] == "127.0.0.1:9474"], 60)
        self.assertIn(alerts[0]["state"], ("pending", "firing"))
        # The cluster runs secured. Plaintext is refused at the handshake;
        # under mutual TLS without the operator's token the coordinator
        # lists nothing.
        secrets = os.path.join(ROOT, "runs/cluster-secrets")
        tls = ["--tls-ca", f"{secrets}/ca.pem", "--tls-cert", f"{secrets}/operator.pem",
               "--tls-key", f"{secrets}/operator.key", "--tls-server-name", "maskedkd.pool"]
        plaintext = sh([os.path.join(BIN, "mkd"), "status", "--coordinator", "127.0.0.1:50050",
                        "--insecure", "--timeout-s", "3"], check=False, env=self.env)
        self.assertEqual(plaintext.returncode, 1)
        refused = sh([os.path.join(BIN, "mkd"), "status", "--coordinator", "127.0.0.1:50050", *tls],
                     check=False, env=self.env)
        self.assertEqual(refused.returncode, 1)
        self.assertIn("a token or a role certificate is required", refused.stderr)
        # The coordinator lists the survivor serving and teacher1 gone.
        token = os.path.join(secrets, "operator.token")
        status = wait("the coordinator sees teacher1 gone", lambda: (lambda s: s if '"TEACHER_STATE_GONE"' in s else None)(
            sh([os.path.join(BIN, "mkd"), "status", "--coordinator", "127.0.0.1:50050", "--json",
                *tls, "--token-file", token],
               env=self.env).stdout), 30)
        teachers = {t["info"]["address"]: t.get("state") for t in json.loads(status)["teachers"]["teachers"]}
        self.assertEqual(teachers.get("127.0.0.1:50062"), "TEACHER_STATE_SERVING", teachers)
        self.assertEqual(teachers.get("127.0.0.1:50061"), "TEACHER_STATE_GONE", teachers)
        # Every job's assignment now holds the survivor alone, and the jobs
        # keep training on it once the coordinator has moved them.
        jobs = {j["info"]["job_id"]: j.get("teachers", []) for j in json.loads(status)["jobs"]["jobs"]}
        self.assertEqual(jobs, {"job-a": ["127.0.0.1:50062"], "job-b": ["127.0.0.1:50062"]}, status)
        moved = {job: student_step(port) for job, port in JOBS.items()}
        for job, port in JOBS.items():
            wait(f"{job} steps on after the reassignment",
                 lambda p=port, j=job: student_step(p) >= moved[j] + 20, 120)
        failovers = {job: [r["value"][1] for r in query(f'mkd_student_teacher_failovers_total{{job_id="{job}"}}')]
                     for job in JOBS}
        print(f"cluster_test: failovers seen by Prometheus: {failovers}", flush=True)
        # The images' HEALTHCHECKs (mkd-health, grpc.health.v1) pass in the
        # coordinator's LibTorch-free image and in the surviving teacher's.
        for service in ("coordinator", "teacher2"):
            cid = sh(COMPOSE + ["ps", "-q", service], env=self.env).stdout.strip()
            wait(f"{service}'s HEALTHCHECK healthy", lambda c=cid: sh(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", c], env=self.env).stdout.strip() == "healthy", 90)
        # And no job died: both containers still running.
        ps = sh(COMPOSE + ["ps", "--services", "--filter", "status=running"], env=self.env).stdout.split()
        self.assertIn("job-a", ps)
        self.assertIn("job-b", ps)


if __name__ == "__main__":
    unittest.main(verbosity=2)
