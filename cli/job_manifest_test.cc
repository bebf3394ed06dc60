// `mkd job manifest`: the objects of one job, read back with yaml-cpp as
// kubectl would read them; two jobs side by side share no name, selector
// or claim; the flags refuse what would not run. deploy_test validates the
// same output against the Kubernetes schemas (deploy/k8s/check.py).
#include "cli/job_manifest.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "rpc/pool_auth.h"
#include "yaml-cpp/yaml.h"

namespace mkd::cli {
namespace {

constexpr char kConfig[] = "mode: distill\ndistill:\n  keep_ratio: 0.5\nrun:\n  out_dir: runs/x\n";

JobManifestOptions Parse(std::vector<std::string> args) {
  auto o = ParseJobManifestFlags(args);
  EXPECT_TRUE(o.ok()) << o.status();
  return o.ok() ? *o : JobManifestOptions{};
}

// The objects as kubectl reads them: {"Kind/name": object}.
std::map<std::string, YAML::Node> Objects(const JobManifestOptions& o,
                                          const std::string& token = "") {
  auto docs = JobManifests(o, kConfig, token);
  EXPECT_TRUE(docs.ok()) << docs.status();
  std::map<std::string, YAML::Node> out;
  for (YAML::Node& d : YAML::LoadAll(YamlStream(docs.ok() ? *docs : std::vector<Yaml>{}))) {
    out[d["kind"].as<std::string>() + "/" + d["metadata"]["name"].as<std::string>()] = d;
  }
  return out;
}

YAML::Node PodSpec(const YAML::Node& job) { return job["spec"]["template"]["spec"]; }

std::map<std::string, std::string> Env(const YAML::Node& container) {
  std::map<std::string, std::string> env;
  for (const YAML::Node& e : container["env"]) {
    env[e["name"].as<std::string>()] = e["value"] ? e["value"].as<std::string>() : "<from>";
  }
  return env;
}

TEST(JobManifestTest, OneRankIsAnIndexedJobWithItsOwnObjects) {
  auto objects = Objects(Parse({"--name", "alpha"}));
  std::set<std::string> names;
  for (const auto& [name, _] : objects) names.insert(name);
  ASSERT_EQ(names.size(), 5u);  // No token Secret: the operator makes it.
  EXPECT_TRUE(names.count("Job/alpha"));
  EXPECT_TRUE(names.count("Service/alpha"));
  EXPECT_TRUE(names.count("PersistentVolumeClaim/alpha-runs"));
  EXPECT_TRUE(names.count("NetworkPolicy/alpha"));
  const YAML::Node job = objects["Job/alpha"];
  EXPECT_EQ(job["spec"]["completionMode"].as<std::string>(), "Indexed");
  EXPECT_EQ(job["spec"]["completions"].as<int>(), 1);
  EXPECT_EQ(job["spec"]["backoffLimitPerIndex"].as<int>(), 3);
  EXPECT_FALSE(job["spec"]["suspend"]);
  EXPECT_EQ(objects["PersistentVolumeClaim/alpha-runs"]["spec"]["accessModes"][0].as<std::string>(),
            "ReadWriteOnce");
  const YAML::Node pod = PodSpec(job);
  EXPECT_EQ(pod["restartPolicy"].as<std::string>(), "Never");  // backoffLimitPerIndex needs it.
  EXPECT_EQ(pod["subdomain"].as<std::string>(), "alpha");
  const YAML::Node c = pod["containers"][0];
  auto env = Env(c);
  EXPECT_EQ(env["WORLD_SIZE"], "1");
  EXPECT_EQ(env["MASTER_ADDR"], "alpha-0.alpha");
  EXPECT_EQ(env["MASTER_PORT"], "29500");
  // Strings stay strings (quoted): the API server refuses a number as an
  // env value.
  EXPECT_EQ(c["env"][1]["value"].Tag(), "!");
  const std::string args = c["args"][0].as<std::string>();
  EXPECT_NE(args.find("--set 'distill.job_id=alpha'"), std::string::npos) << args;
  EXPECT_NE(args.find("--set 'run.out_dir=runs/alpha'"), std::string::npos) << args;
  EXPECT_NE(args.find("[ -f runs/alpha/checkpoints/latest ] && echo --resume"), std::string::npos)
      << args;
  // Secure by default: mutual TLS from the student Secret.
  EXPECT_NE(args.find("--set 'tls.cert=/etc/maskedkd/tls/tls.crt'"), std::string::npos) << args;
  EXPECT_NE(args.find("--set 'tls.server_name=maskedkd.pool'"), std::string::npos) << args;
  bool tls_volume = false;
  for (const YAML::Node& v : pod["volumes"]) {
    if (v["secret"] && v["secret"]["secretName"].as<std::string>() == "maskedkd-student-tls") {
      tls_volume = true;
    }
  }
  EXPECT_TRUE(tls_volume);
  // The config the job runs is the one given, under a content-hashed name.
  std::string config_map;
  for (const auto& [name, o] : objects) {
    if (o["kind"].as<std::string>() == "ConfigMap")
      config_map = o["metadata"]["name"].as<std::string>();
  }
  ASSERT_EQ(config_map.size(), std::string("alpha-config-").size() + 10) << config_map;
  EXPECT_EQ(objects["ConfigMap/" + config_map]["data"]["student.yaml"].as<std::string>(), kConfig);
}

TEST(JobManifestTest, SeveralRanksShareAReadWriteManyClaimAndFindRankZero) {
  auto objects = Objects(Parse({"--name", "beta", "--ranks", "4", "--insecure"}));
  const YAML::Node job = objects["Job/beta"];
  EXPECT_EQ(job["spec"]["completions"].as<int>(), 4);
  EXPECT_EQ(job["spec"]["parallelism"].as<int>(), 4);
  EXPECT_EQ(objects["PersistentVolumeClaim/beta-runs"]["spec"]["accessModes"][0].as<std::string>(),
            "ReadWriteMany");
  const YAML::Node service = objects["Service/beta"];
  EXPECT_EQ(service["spec"]["clusterIP"].as<std::string>(), "None");
  EXPECT_TRUE(service["spec"]["publishNotReadyAddresses"].as<bool>());
  const YAML::Node c = PodSpec(job)["containers"][0];
  EXPECT_EQ(Env(c)["WORLD_SIZE"], "4");
  EXPECT_EQ(Env(c)["RANK"], "<from>");
  EXPECT_EQ(c["env"][2]["valueFrom"]["fieldRef"]["fieldPath"].as<std::string>(),
            "metadata.annotations['batch.kubernetes.io/job-completion-index']");
  const std::string args = c["args"][0].as<std::string>();
  EXPECT_NE(args.find("--set 'tls.insecure=true'"), std::string::npos) << args;
  EXPECT_EQ(args.find("tls.cert"), std::string::npos) << args;
  // The ranks reach each other on any port (Gloo opens its own).
  const YAML::Node policy = objects["NetworkPolicy/beta"];
  EXPECT_FALSE(policy["spec"]["ingress"][0]["ports"]);
  EXPECT_EQ(policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
                  ["app.kubernetes.io/instance"]
                      .as<std::string>(),
            "beta");
}

TEST(JobManifestTest, TwoJobsShareNoNameSelectorOrClaim) {
  auto a = Objects(Parse({"--name", "job-a", "--ranks", "2"}));
  auto b = Objects(Parse({"--name", "job-b", "--ranks", "2"}));
  for (const auto& [name, _] : a) EXPECT_FALSE(b.count(name)) << name << " collides";
  EXPECT_NE(a["Service/job-a"]["spec"]["selector"]["app.kubernetes.io/instance"].as<std::string>(),
            b["Service/job-b"]["spec"]["selector"]["app.kubernetes.io/instance"].as<std::string>());
  EXPECT_NE(Env(PodSpec(a["Job/job-a"])["containers"][0])["MASTER_ADDR"],
            Env(PodSpec(b["Job/job-b"])["containers"][0])["MASTER_ADDR"]);
}

TEST(JobManifestTest, AQueueSuspendsTheJobForKueue) {
  auto objects = Objects(Parse({"--name", "q", "--ranks", "2", "--queue", "research"}));
  const YAML::Node job = objects["Job/q"];
  EXPECT_EQ(job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"].as<std::string>(), "research");
  EXPECT_TRUE(job["spec"]["suspend"].as<bool>());
}

TEST(JobManifestTest, AJobSetRestartsItsRanksTogether) {
  auto objects = Objects(Parse({"--name", "js", "--ranks", "2", "--kind", "jobset"}));
  ASSERT_TRUE(objects.count("JobSet/js"));
  EXPECT_FALSE(objects.count("Service/js"));  // The JobSet controller makes it.
  const YAML::Node set = objects["JobSet/js"];
  EXPECT_TRUE(set["spec"]["network"]["publishNotReadyAddresses"].as<bool>());
  EXPECT_EQ(set["spec"]["network"]["subdomain"].as<std::string>(), "js");
  EXPECT_EQ(set["spec"]["failurePolicy"]["maxRestarts"].as<int>(), 3);
  const YAML::Node job = set["spec"]["replicatedJobs"][0]["template"];
  EXPECT_EQ(job["spec"]["backoffLimit"].as<int>(), 0);
  EXPECT_FALSE(PodSpec(job)["subdomain"]);
  EXPECT_EQ(Env(PodSpec(job)["containers"][0])["MASTER_ADDR"], "js-ranks-0-0.js");
}

TEST(JobManifestTest, AGpuRankAsksForOneGpuAndTheCudaImage) {
  auto objects = Objects(Parse({"--name", "g", "--gpus-per-rank", "1"}));
  const YAML::Node pod = PodSpec(objects["Job/g"]);
  const YAML::Node c = pod["containers"][0];
  EXPECT_EQ(c["image"].as<std::string>(), "maskedkd-cuda:latest");
  EXPECT_EQ(c["resources"]["limits"]["nvidia.com/gpu"].as<int>(), 1);
  EXPECT_NE(c["args"][0].as<std::string>().find("--set 'run.device=cuda'"), std::string::npos);
  EXPECT_EQ(pod["tolerations"][0]["key"].as<std::string>(), "nvidia.com/gpu");
}

TEST(JobManifestTest, AMintedTokenGrantsThisJobOnly) {
  const std::string secret(48, 's');
  const std::string token =
      rpc::MakePoolToken(secret, rpc::Role::kJob, "alpha", absl::Now() + absl::Hours(1));
  auto objects = Objects(Parse({"--name", "alpha"}), token);
  const YAML::Node s = objects["Secret/alpha-job-token"];
  ASSERT_TRUE(s) << "no token Secret";
  const std::string minted = s["stringData"]["job.token"].as<std::string>();
  std::string reason;
  auto p = rpc::VerifyPoolToken(secret, minted, absl::Now(), &reason);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->role, rpc::Role::kJob);
  EXPECT_EQ(p->name, "alpha");
}

TEST(JobManifestTest, FlagValuesReachTheShellAsWordsNotCommands) {
  auto objects = Objects(Parse({"--name", "q", "--coordinator", "x$(touch /tmp/p);y:50050"}));
  const std::string args = PodSpec(objects["Job/q"])["containers"][0]["args"][0].as<std::string>();
  EXPECT_NE(args.find("--set 'distill.coordinator=x$(touch /tmp/p);y:50050'"), std::string::npos)
      << args;
  // A storage class may be a DNS subdomain, dots and all.
  EXPECT_TRUE(ParseJobManifestFlags({"--name", "q", "--storage-class", "rwx.example.com"}).ok());
}

TEST(JobManifestTest, UserSetsAreQuotedForTheShell) {
  auto objects =
      Objects(Parse({"--name", "s", "--set", "optim.epochs=7", "--set", "seed=1'; rm -rf /"}));
  const std::string args = PodSpec(objects["Job/s"])["containers"][0]["args"][0].as<std::string>();
  EXPECT_NE(args.find("--set 'optim.epochs=7'"), std::string::npos) << args;
  EXPECT_NE(args.find("--set 'seed=1'\\''; rm -rf /'"), std::string::npos) << args;
}

TEST(JobManifestTest, BadFlagsAreRefusedByName) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{}, "--name"},
      {{"--name", "Upper"}, "--name: 'Upper'"},
      {{"--name", "a", "--storage-class", "Fast_SSD"}, "--storage-class: 'Fast_SSD' must be a DNS"},
      {{"--name", std::string(41, 'a')}, "--name"},
      {{"--name", "a", "--ranks", "0"}, "--ranks: must be in [1, 4096]"},
      {{"--name", "a", "--gpus-per-rank", "2"}, "--gpus-per-rank: a rank trains on one device"},
      {{"--name", "a", "--kind", "mpijob"}, "--kind: expected job or jobset"},
      {{"--name", "a", "--memory", "lots"}, "--memory: expected a Kubernetes quantity"},
      {{"--name", "a", "--coordinator", "nohost"}, "--coordinator: expected host:port"},
      {{"--name", "a", "--set", "distill.job_id=b"}, "--set distill.job_id: the manifests set it"},
      {{"--name", "a", "--set", "tls.insecure=true"},
       "--set tls.insecure: the manifests set tls.*"},
      {{"--name", "a", "--set", "noequals"}, "--set: expected key=value"},
      {{"--name", "a", "--insecure", "--tls-secret", "x"}, "--tls-secret cannot be combined"},
      {{"--name", "a", "--token-ttl", "1d"}, "--token-ttl needs --pool-secret-file"},
      {{"--name", "a", "--rendezvous-port", "9466"}, "--rendezvous-port: 9466"},
      {{"--name", "a", "--image-pull-policy", "Sometimes"}, "--image-pull-policy"},
  };
  for (const auto& [args, want] : cases) {
    auto o = ParseJobManifestFlags(args);
    ASSERT_FALSE(o.ok()) << absl::StrJoin(args, " ");
    EXPECT_NE(std::string(o.status().message()).find(want), std::string::npos)
        << absl::StrJoin(args, " ") << ": " << o.status();
  }
}

TEST(JobManifestTest, AConfigThatIsNotADistillationJobIsRefused) {
  const JobManifestOptions o = Parse({"--name", "a"});
  auto bad = JobManifests(o, "[1, 2]", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("must be a YAML map"), std::string::npos);
  bad = JobManifests(o, "mode: train\n", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("no distill block"), std::string::npos);
  bad = JobManifests(o, "a: [", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("not YAML"), std::string::npos);
}

TEST(JobManifestTest, TheSameInputsGiveTheSameText) {
  const JobManifestOptions o = Parse({"--name", "d", "--ranks", "2"});
  EXPECT_EQ(YamlStream(*JobManifests(o, kConfig, "")), YamlStream(*JobManifests(o, kConfig, "")));
}

TEST(YamlDocumentTest, StringsThatReadAsOtherTypesAreQuoted) {
  Yaml y = YamlMap{{"n", "2"},     {"b", "true"}, {"o", "0440"}, {"e", ""},
                   {"s", "plain"}, {"i", 2},      {"t", true},   {"m", "two\nlines\n"}};
  const YAML::Node back = YAML::Load(y.ToString());
  for (const char* k : {"n", "b", "o", "e"}) {
    EXPECT_EQ(back[k].Tag(), "!") << k << " is not quoted: " << y.ToString();
  }
  EXPECT_EQ(back["s"].as<std::string>(), "plain");
  EXPECT_EQ(back["i"].Tag(), "?");
  EXPECT_EQ(back["i"].as<int>(), 2);
  EXPECT_TRUE(back["t"].as<bool>());
  EXPECT_EQ(back["m"].as<std::string>(), "two\nlines\n");
}

}  // namespace
}  // namespace mkd::cli
