// The pool with real processes on loopback: mkd-coordinator, mkd-teacher
// servers that join it, and mkd-student jobs that distil through it. A
// teacher SIGKILLed mid-training costs no step and leaves the weights those
// of an uninterrupted run; a coordinator killed and restarted costs nothing
// and rebuilds its state from heartbeats; a job started before any teacher
// waits, then trains; a drained teacher finishes its work and exits while
// the job carries on; a wrong model is refused clearly; `mkd status` and
// every /metrics endpoint tell the truth (promtool).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "maskedkd/v1/coordinator.grpc.pb.h"
#include "tests/pool_util.h"

namespace mkd::pool_test {
namespace {

namespace v1 = ::maskedkd::v1;

class PoolTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { WriteTeacher("tiny", 2, 32, 11); }
};

TEST_F(PoolTest, ATeacherKilledMidTrainingCostsNoStepAndNoAccuracy) {
  Proc c = StartCoordinator("kill_coord");
  Proc t1 = StartTeacher("tiny", "kill_t1", c.address());
  Proc t2 = StartTeacher("tiny", "kill_t2", c.address());
  auto a = StartStudent("tiny", "kill_a", {"distill.coordinator=" + c.address()});
  auto b = StartStudent("tiny", "kill_b", {"distill.coordinator=" + c.address()});
  // The reference: the same job with the teacher in its own process; and a
  // control, the same job on one fixed remote teacher that nobody kills (how
  // far batching alone moves the weights).
  auto ref = StartStudent("tiny", "kill_ref", {});
  auto ctl = StartStudent("tiny", "kill_ctl", {"distill.teacher_address=" + t2.address()});
  ASSERT_TRUE(WaitFor([] { return TrainLines("kill_a").size() >= 60; })) << a->err();
  // Same host: the jobs reach the teacher being killed through shared
  // memory (distill.data_plane auto), so this is the shm plane's failover.
  const std::string before = Scrape(t1.metrics_port);
  EXPECT_GE(MetricValue(before, "mkd_teacher_streams_total{data_plane=\"shm\"}"), 2) << before;
  EXPECT_EQ(MetricValue(before, "mkd_teacher_streams_total{data_plane=\"grpc\"}"), 0) << before;
  t1.process->Signal(SIGKILL);
  ASSERT_EQ(a->Wait(), 0) << a->err();
  ASSERT_EQ(b->Wait(), 0) << b->err();
  ASSERT_EQ(ref->Wait(), 0) << ref->err();
  ASSERT_EQ(ctl->Wait(), 0) << ctl->err();
  // Plaintext by name: the student logs it (the TLS test checks that a TLS
  // student does not).
  EXPECT_NE(a->err().find("tls.insecure is set"), std::string::npos) << a->err();
  const int64_t steps = 16384 / 32;
  ExpectEveryStepOnce("kill_a", steps);
  ExpectEveryStepOnce("kill_b", steps);
  // Same data order, same teacher logits (fp32 wire): the weights match the
  // uninterrupted in-process run up to the order fp32 sums were taken in.
  auto wa = FinalWeights("kill_a", steps), wr = FinalWeights("kill_ref", steps),
       wc = FinalWeights("kill_ctl", steps);
  ASSERT_FALSE(wa.empty());
  double worst = 0, control = 0;
  for (const auto& [key, t] : wr) {
    worst = std::max(worst, (wa[key] - t).abs().max().item<double>());
    control = std::max(control, (wc[key] - t).abs().max().item<double>());
  }
  std::printf(
      "max |weight difference| vs in-process after 512 steps: with a teacher SIGKILL "
      "%.3g, on one untouched remote teacher %.3g\n",
      worst, control);
  // fp32 batching noise grows over 512 steps (the control shows how much);
  // a lost or repeated step would move the weights by a whole update.
  EXPECT_LE(worst, 5 * control + 1e-4);
  EXPECT_LE(worst, 1e-2);
  EXPECT_NE(a->err().find("127.0.0.1:" + std::to_string(t1.port)), std::string::npos)
      << "the job said which teacher broke";
}

TEST_F(PoolTest, ACoordinatorRestartCostsNothingAndRebuildsFromHeartbeats) {
  Proc c = StartCoordinator("restart_coord");
  Proc t = StartTeacher("tiny", "restart_t", c.address());
  auto a = StartStudent("tiny", "restart_a", {"distill.coordinator=" + c.address()});
  ASSERT_TRUE(WaitFor([] { return TrainLines("restart_a").size() >= 30; })) << a->err();
  c.process->Signal(SIGKILL);
  c.process->Wait();
  const size_t before = TrainLines("restart_a").size();
  ASSERT_TRUE(WaitFor([&] { return TrainLines("restart_a").size() >= before + 20; }, 20))
      << "the job trains on without its coordinator";
  Proc again = StartCoordinator("restart_coord2", c.port);
  ASSERT_GT(again.port, 0);
  const auto restarted = std::chrono::steady_clock::now();
  ASSERT_TRUE(WaitFor(
      [&] {
        v1::ListJobsResponse jobs = ListJobs(again);
        return jobs.jobs_size() == 1 && jobs.jobs(0).teachers_size() == 1 &&
               jobs.jobs(0).teachers(0) == t.address();
      },
      10))
      << "state rebuilt from heartbeats within 10 s";
  std::printf("coordinator state rebuilt in %.2f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - restarted).count());
  ASSERT_EQ(a->Wait(), 0) << a->err();
  ExpectEveryStepOnce("restart_a", 16384 / 32);
}

TEST_F(PoolTest, AJobStartedBeforeAnyTeacherWaitsThenTrains) {
  Proc c = StartCoordinator("wait_coord");
  auto a = StartStudent("tiny", "wait_a",
                        {"distill.coordinator=" + c.address(), "data.limit_train=2048"});
  ASSERT_TRUE(WaitFor([&] { return a->err().find("waiting up to") != std::string::npos; }))
      << a->err();
  EXPECT_NE(a->err().find("no serving teacher in the pool has model 'pool_tiny@"),
            std::string::npos)
      << a->err();
  Proc t = StartTeacher("tiny", "wait_t", c.address());
  ASSERT_EQ(a->Wait(), 0) << a->err();
  ExpectEveryStepOnce("wait_a", 2048 / 32);
}

// Every connection over mutual TLS, each process with its own certificate
// carrying its pool role (made by openssl now): the teacher joins, the job
// trains through the pool, and `mkd status` reads it with an operator's
// certificate. A student whose certificate another CA signed is refused,
// and says why; so is a "teacher" whose certificate carries a job's role.
TEST_F(PoolTest, APoolRunsOverMutualTls) {
  const std::string dir = Tmp("certs");
  std::filesystem::remove_all(dir);
  for (const std::string what : {"ca", "cert coordinator", "role teacher teacher", "role job tls-a",
                                 "role operator admin", "role job impostor"}) {
    ASSERT_EQ(std::system(("scripts/make_certs.sh " + dir + " " + what).c_str()), 0) << what;
  }
  ASSERT_EQ(std::system(("scripts/make_certs.sh " + dir + "/other ca && scripts/make_certs.sh " +
                         dir + "/other cert stranger")
                            .c_str()),
            0);
  auto tls = [&](const std::string& who, const std::string& ca_dir) {
    return std::vector<std::string>{"tls.insecure=false", "tls.ca=" + dir + "/ca.pem",
                                    "tls.cert=" + ca_dir + "/" + who + ".pem",
                                    "tls.key=" + ca_dir + "/" + who + ".key"};
  };
  Proc c = StartCoordinator("tls_coord", 0, tls("coordinator", dir));
  ASSERT_GT(c.port, 0);
  Proc t = StartTeacher("tiny", "tls_t", c.address(), tls("teacher", dir));
  ASSERT_GT(t.port, 0);
  std::vector<std::string> sets = tls("tls-a", dir);
  sets.insert(sets.end(), {"distill.coordinator=" + c.address(), "distill.job_id=tls-a",
                           "data.limit_train=1024"});
  auto a = StartStudent("tiny", "tls_a", sets);
  ASSERT_EQ(a->Wait(), 0) << a->err();
  ExpectEveryStepOnce("tls_a", 1024 / 32);
  EXPECT_EQ(a->err().find("tls.insecure is set"), std::string::npos) << a->err();

  ChildProcess status("mkd",
                      {"status", "--coordinator", c.address(), "--tls-ca", dir + "/ca.pem",
                       "--tls-cert", dir + "/admin.pem", "--tls-key", dir + "/admin.key"},
                      Tmp("tls_status"));
  ASSERT_EQ(status.Wait(), 0) << status.err();
  EXPECT_NE(status.out().find(t.address()), std::string::npos) << status.out();

  // A teacher server whose certificate names a job: the student will not
  // send it a single image.
  std::vector<std::string> impostor_sets = tls("impostor", dir);
  impostor_sets.push_back("coordinator=");
  ChildProcess impostor(
      "mkd-teacher",
      [&] {
        std::vector<std::string> args = {"--config", Tmp("tiny_server.yaml")};
        for (const auto& s : impostor_sets) args.insert(args.end(), {"--set", s});
        return args;
      }(),
      Tmp("tls_impostor"));
  auto line = impostor.WaitForLine("] serving ");
  ASSERT_TRUE(line.has_value()) << impostor.err();
  const std::string impostor_address =
      "127.0.0.1:" + std::to_string(NumberAfter(*line, " on port "));
  sets = tls("tls-a", dir);
  sets.insert(sets.end(), {"distill.teacher_address=" + impostor_address,
                           "distill.teacher_timeout_ms=2000", "distill.job_id=tls-a"});
  auto fooled = StartStudent("tiny", "tls_fooled", sets);
  EXPECT_EQ(fooled->Wait(), 1);
  EXPECT_NE(fooled->err().find("carries no maskedkd teacher role"), std::string::npos)
      << fooled->err();

  // The stranger reaches no one: the teacher's answer is the handshake error.
  sets = tls("stranger", dir + "/other");
  sets.insert(sets.end(),
              {"distill.teacher_address=" + t.address(), "distill.teacher_timeout_ms=2000"});
  auto s = StartStudent("tiny", "tls_stranger", sets);
  EXPECT_EQ(s->Wait(), 1);
  EXPECT_NE(
      s->err().find("teacher at '" + t.address() + "': GetModelInfo failed: failed to connect"),
      std::string::npos)
      << s->err();
}

// Job tokens through the whole pool: the coordinator and the teacher share
// a secret; a job with its token (minted by `mkd job-token`) trains; a job
// without one is refused by the coordinator and says so.
TEST_F(PoolTest, APoolWithJobTokensServesOnlyJobsWithTheirToken) {
  const std::string secret = Tmp("job_secret");
  std::ofstream(secret) << "pool-test-secret-with-at-least-32-bytes\n";
  Proc c =
      StartCoordinator("token_coord", 0, {"tls.insecure=true", "auth.job_secret_file=" + secret});
  ASSERT_GT(c.port, 0);
  Proc t = StartTeacher("tiny", "token_t", c.address(), {"auth.job_secret_file=" + secret});
  ASSERT_GT(t.port, 0);
  ChildProcess mint("mkd", {"job-token", "--secret-file", secret, "--job", "token_a"},
                    Tmp("token_mint"));
  ASSERT_EQ(mint.Wait(), 0) << mint.err();
  std::ofstream(Tmp("token_a.token")) << mint.out();
  auto a =
      StartStudent("tiny", "token_a",
                   {"distill.coordinator=" + c.address(), "data.limit_train=512",
                    "distill.job_id=token_a", "distill.job_token_file=" + Tmp("token_a.token")});
  auto b = StartStudent("tiny", "token_b",
                        {"distill.coordinator=" + c.address(), "distill.job_id=token_b",
                         "distill.teacher_wait_s=120"});
  ASSERT_EQ(a->Wait(), 0) << a->err();
  ExpectEveryStepOnce("token_a", 512 / 32);
  // The refusal ends job b at once with the coordinator's reason; waiting
  // out teacher_wait_s would end it with "no teacher ... after 2m".
  EXPECT_EQ(b->Wait(), 1);
  EXPECT_NE(b->err().find("refused job token_b: a job token is required"), std::string::npos)
      << b->err();
  EXPECT_EQ(b->err().find("teacher_wait_s"), std::string::npos) << b->err();
}

TEST_F(PoolTest, ADrainedTeacherFinishesItsWorkAndLeavesWhileTheJobCarriesOn) {
  Proc c = StartCoordinator("drain_coord");
  Proc t1 = StartTeacher("tiny", "drain_t1", c.address());
  Proc t2 = StartTeacher("tiny", "drain_t2", c.address());
  auto a = StartStudent("tiny", "drain_a", {"distill.coordinator=" + c.address()});
  ASSERT_TRUE(WaitFor([] { return TrainLines("drain_a").size() >= 60; })) << a->err();
  ChildProcess drain("mkd", {"drain", "--coordinator", c.address(), "--insecure", t1.address()},
                     Tmp("drain_cli"));
  ASSERT_EQ(drain.Wait(), 0) << drain.err();
  EXPECT_NE(drain.out().find("draining"), std::string::npos) << drain.out();
  EXPECT_EQ(t1.process->Wait(), 0) << t1.process->err();  // Left the pool by itself.
  EXPECT_NE(t1.process->err().find("drained by the coordinator"), std::string::npos);
  ASSERT_EQ(a->Wait(), 0) << a->err();
  ExpectEveryStepOnce("drain_a", 16384 / 32);
  EXPECT_EQ(a->err().find("rror"), std::string::npos) << "no error reached the job: " << a->err();
}

TEST_F(PoolTest, AJobThatLosesItsTeacherCheckpointsItsLastStepAndResumesFromIt) {
  Proc c = StartCoordinator("giveup_coord");
  Proc t = StartTeacher("tiny", "giveup_t", c.address());
  // One fixed teacher, waited for 1.5 s at most.
  const std::vector<std::string> sets = {"distill.teacher_timeout_ms=1500",
                                         "data.limit_train=8192"};
  auto first = sets;
  first.push_back("distill.teacher_address=" + t.address());
  auto a = StartStudent("tiny", "giveup", first);
  ASSERT_TRUE(WaitFor([] { return TrainLines("giveup").size() >= 40; })) << a->err();
  t.process->Signal(SIGKILL);
  EXPECT_EQ(a->Wait(), 1);
  const std::string err = a->err();
  const size_t at = err.find("checkpoint of step ");
  ASSERT_NE(at, std::string::npos) << err;
  const int64_t saved = std::atoll(err.c_str() + at + std::strlen("checkpoint of step "));
  EXPECT_EQ(saved, static_cast<int64_t>(TrainLines("giveup").size())) << "the last completed step";
  EXPECT_NE(err.find("--resume continues from it"), std::string::npos) << err;
  // A new teacher (another port), and --resume: nothing lost, nothing twice.
  Proc again = StartTeacher("tiny", "giveup_t2", c.address());
  auto second = sets;
  second.push_back("distill.teacher_address=" + again.address());
  auto b = StartStudent("tiny", "giveup", second, /*resume=*/true);
  ASSERT_EQ(b->Wait(), 0) << b->err();
  EXPECT_NE(b->err().find("resumed from step " + std::to_string(saved)), std::string::npos)
      << b->err();
  ExpectEveryStepOnce("giveup", 8192 / 32);
}

TEST_F(PoolTest, AWrongModelIsRefusedWithAClearError) {
  Proc c = StartCoordinator("wrong_coord");
  Proc t = StartTeacher("tiny", "wrong_t", c.address());
  // One fixed teacher that serves another model than the job names.
  auto fixed = StartStudent(
      "tiny", "wrong_fixed",
      {"distill.teacher_address=" + t.address(), "distill.teacher_model_id=other@0123"});
  EXPECT_EQ(fixed->Wait(), 1);
  EXPECT_NE(fixed->err().find("serves model 'pool_tiny@"), std::string::npos) << fixed->err();
  EXPECT_NE(fixed->err().find("the job needs 'other@0123'"), std::string::npos) << fixed->err();
  // A pool job for a model no teacher serves gives up after teacher_wait_s.
  auto pooled = StartStudent("tiny", "wrong_pool",
                             {"distill.coordinator=" + c.address(),
                              "distill.teacher_model_id=other@0123", "distill.teacher_wait_s=1"});
  EXPECT_EQ(pooled->Wait(), 1);
  EXPECT_NE(pooled->err().find("no teacher in the pool at " + c.address() +
                               " serves model 'other@0123' after 1s"),
            std::string::npos)
      << pooled->err();
}

TEST_F(PoolTest, StatusAndEveryMetricsEndpointTellTheTruth) {
  Proc c = StartCoordinator("status_coord");
  Proc t = StartTeacher("tiny", "status_t", c.address());
  auto a = StartStudent("tiny", "status_a",
                        {"distill.coordinator=" + c.address(), "run.metrics_listen=127.0.0.1:0",
                         "distill.micro_batches=0"});
  ASSERT_TRUE(WaitFor([] { return TrainLines("status_a").size() >= 100; })) << a->err();
  ChildProcess status("mkd", {"status", "--coordinator", c.address(), "--insecure"},
                      Tmp("status_cli"));
  ASSERT_EQ(status.Wait(), 0) << status.err();
  const std::string table = status.out();
  EXPECT_NE(table.find(t.address()), std::string::npos) << table;
  EXPECT_NE(table.find("serving"), std::string::npos) << table;
  EXPECT_NE(table.find("status_a"), std::string::npos) << table;
  const std::string coordinator = Scrape(c.metrics_port);
  EXPECT_NE(coordinator.find("mkd_coordinator_jobs 1"), std::string::npos) << coordinator;
  EXPECT_EQ(Promtool(coordinator, "coordinator"), "");
  const int student_port = NumberAfter(a->err(), "metrics on port ");
  ASSERT_GT(student_port, 0) << a->err();
  const std::string student = Scrape(student_port);
  // Every series names its job (run.out_dir's name, here: Tmp() prefixes it).
  EXPECT_NE(student.find("mkd_student_step{job_id=\"pool_status_a\"} "), std::string::npos)
      << student;
  EXPECT_NE(student.find("mkd_student_teacher_round_trip_seconds_count"), std::string::npos);
  // The micro-batch stages: the student's own and the server's, per stage.
  for (const char* stage : {"student_forward", "encode", "server_queue", "server_forward",
                            "transfer", "wait", "loss_backward"}) {
    EXPECT_GT(MetricValue(
                  student,
                  absl::StrCat("mkd_student_stage_seconds_count{job_id=\"pool_status_a\",stage=\"",
                               stage, "\"}")),
              0)
        << stage;
  }
  EXPECT_EQ(MetricValue(student,
                        "mkd_student_stage_seconds_count{job_id=\"pool_status_a\",stage=\"teacher_"
                        "forward\"}"),
            0)
      << "no in-process teacher here";
  EXPECT_EQ(Promtool(student, "student"), "");
  const std::string teacher = Scrape(t.metrics_port);
  for (const char* stage : {"decode", "assemble", "forward", "encode"}) {
    EXPECT_GT(MetricValue(teacher,
                          absl::StrCat("mkd_teacher_stage_seconds_count{stage=\"", stage, "\"}")),
              0)
        << stage;
  }
  EXPECT_EQ(Promtool(teacher, "teacher"), "");
  ASSERT_EQ(a->Wait(), 0) << a->err();
  // Unpinned, the job explored m = 1, 2, 4, 8 (in that order) before the
  // planner's choice.
  std::vector<int> ms;
  for (const auto& j : TrainLines("status_a")) {
    const int m = j["micro_batches"];
    if (ms.empty() || ms.back() != m) ms.push_back(m);
  }
  ASSERT_GE(ms.size(), 4u);
  EXPECT_EQ(std::vector<int>(ms.begin(), ms.begin() + 4), (std::vector<int>{1, 2, 4, 8}));
}

TEST(CoordinatorBinary, LinksNoLibTorch) {
  const std::string cmd =
      "ldd " + testing::BinDir() + "/mkd-coordinator > " + Tmp("ldd.txt") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::string libs = testing::SlurpFile(Tmp("ldd.txt"));
  EXPECT_NE(libs.find("libgrpc++"), std::string::npos) << libs;
  // Library names only: ldd's load addresses are random hex and can
  // contain "c10" by chance (a CI run failed on exactly that).
  EXPECT_EQ(libs.find("libtorch"), std::string::npos) << libs;
  EXPECT_EQ(libs.find("libc10"), std::string::npos) << libs;
}

// student_worker/ is training only: the trainer links no gRPC (a remote
// teacher comes in through teacher_client/'s interface); mkd-student does.
TEST(StudentLibrary, TheTrainerLinksNoGrpc) {
  const std::string trainer_test = testing::BinDir() + "/../tests/trainer_test";
  const std::string cmd = "ldd " + trainer_test + " > " + Tmp("ldd_trainer.txt") + " 2>&1 && ldd " +
                          testing::BinDir() + "/mkd-student > " + Tmp("ldd_student.txt") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::string trainer = testing::SlurpFile(Tmp("ldd_trainer.txt"));
  EXPECT_NE(trainer.find("libtorch"), std::string::npos) << trainer;
  EXPECT_EQ(trainer.find("libgrpc"), std::string::npos) << trainer;
  EXPECT_NE(testing::SlurpFile(Tmp("ldd_student.txt")).find("libgrpc++"), std::string::npos);
}

}  // namespace
}  // namespace mkd::pool_test
