// Child processes for multi-process tests: start a real binary with its
// output in files, wait (bounded) for a line it prints, signal it, reap it.
// Header-only; test code.
#ifndef MKD_TESTS_PROCESS_UTIL_H_
#define MKD_TESTS_PROCESS_UTIL_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace mkd::testing {

inline std::string BinDir() {
  const char* dir = std::getenv("MKD_BIN_DIR");
  return dir ? dir : "build/bin";
}

inline std::string SlurpFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ChildProcess {
 public:
  // Runs BinDir()/bin with `args`; stdout and stderr go to `log_prefix`.out/.err.
  ChildProcess(const std::string& bin, const std::vector<std::string>& args,
               const std::string& log_prefix)
      : out_(log_prefix + ".out"), err_(log_prefix + ".err") {
    std::vector<std::string> argv_s = {BinDir() + "/" + bin};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    // A stale log from an earlier run must not be mistaken for this one's.
    std::remove(out_.c_str());
    std::remove(err_.c_str());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    // posix_spawn, not fork + freopen: nothing runs between fork and exec
    // in the child, so locks held by this (multi-threaded) process's other
    // threads cannot hang it.
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&files, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (posix_spawn(&pid_, argv[0], &files, nullptr, argv.data(), environ) != 0) {
      pid_ = -1;
      exited_ = true;
      exit_code_ = 127;
    }
    posix_spawn_file_actions_destroy(&files);
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      Wait();
    }
  }

  // The first line containing `needle` in the process's output (stdout)
  // or its log (stderr, common/log.h), polling up to `timeout`; nullopt if
  // it did not appear (or the process died first).
  std::optional<std::string> WaitForLine(const std::string& needle,
                                         std::chrono::seconds timeout = std::chrono::seconds(60)) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      for (const std::string* file : {&out_, &err_}) {
        std::istringstream lines(SlurpFile(*file));
        for (std::string line; std::getline(lines, line);) {
          if (line.find(needle) != std::string::npos) return line;
        }
      }
      if (!Running()) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return std::nullopt;
  }

  bool Running() {
    if (exited_) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    return !exited_;
  }

  void Signal(int sig) { kill(pid_, sig); }
  pid_t pid() const { return pid_; }

  // Reaps the process; its exit code (128 + signal if killed).
  int Wait() {
    if (!exited_) {
      int status = 0;
      waitpid(pid_, &status, 0);
      exited_ = true;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    return exit_code_;
  }

  std::string out() const { return SlurpFile(out_); }
  std::string err() const { return SlurpFile(err_); }

 private:
  std::string out_, err_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_code_ = -1;
};

// The number after `key` in `line` ("... on port 4242 ..." -> 4242), or -1.
inline int NumberAfter(const std::string& line, const std::string& key) {
  size_t at = line.find(key);
  if (at == std::string::npos) return -1;
  return std::atoi(line.c_str() + at + key.size());
}

// A loopback port nothing listens on now (the kernel picks it), for a
// server that must be told its port up front, like a c10d rendezvous.
inline int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace mkd::testing

#endif  // MKD_TESTS_PROCESS_UTIL_H_
