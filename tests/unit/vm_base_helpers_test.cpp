// Unit tests for the host helpers in src/base that the VM layer is built on: ChildProcess, files, sockets.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "base/child_process.h"
#include "base/file_util.h"
#include "base/random.h"
#include "base/unix_socket.h"

using namespace kiln;

namespace {

std::string temp_dir() {
    char tmpl[] = "/tmp/kiln-base-test-XXXXXX";
    return ::mkdtemp(tmpl) ? tmpl : "/tmp";
}

}  // namespace

TEST(ChildProcess, CapturesOutputAndExitStatus) {
    auto run = run_and_capture({"sh", "-c", "echo hi; echo err >&2; exit 4"}, Millis(5000));
    ASSERT_TRUE(run.ok()) << run.error().to_string();
    EXPECT_EQ(run->status.exit_code, 4);
    EXPECT_EQ(run->output, "hi\nerr\n");
}

TEST(ChildProcess, SpawnFailuresAreErrorsNotChildren) {
    auto missing = ChildProcess::spawn(SpawnOptions{.argv = {"/no/such/binary"}});
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
    auto bad_cwd = ChildProcess::spawn(SpawnOptions{.argv = {"true"}, .cwd = "/no/such/dir"});
    ASSERT_FALSE(bad_cwd.ok());
    EXPECT_NE(bad_cwd.error().message.find("chdir"), std::string::npos);
    EXPECT_FALSE(ChildProcess::spawn(SpawnOptions{}).ok());
}

TEST(ChildProcess, WaitKillAndDestructorReaps) {
    auto child = ChildProcess::spawn(SpawnOptions{.argv = {"sleep", "30"}});
    ASSERT_TRUE(child.ok());
    pid_t pid = (*child)->pid();
    EXPECT_FALSE((*child)->wait_for(Millis(50)).has_value());
    ASSERT_TRUE((*child)->kill(SIGTERM).ok());
    auto status = (*child)->wait_for(Millis(5000));
    ASSERT_TRUE(status.has_value());
    EXPECT_EQ(status->signal, SIGTERM);
    EXPECT_EQ(status->shell_status(), 128 + SIGTERM);
    EXPECT_TRUE((*child)->kill(SIGKILL).ok());  // already gone: fine

    auto other = ChildProcess::spawn(SpawnOptions{.argv = {"sleep", "30"}});
    ASSERT_TRUE(other.ok());
    pid_t other_pid = (*other)->pid();
    other->reset();  // SIGKILL + reap
    EXPECT_NE(::kill(other_pid, 0), 0);
    (void)pid;
}

TEST(ChildProcess, OnlyStdioIsInherited) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);  // not CLOEXEC on purpose
    auto run = run_and_capture({"sh", "-c", "ls /proc/self/fd | wc -l"}, Millis(5000));
    ASSERT_TRUE(run.ok());
    // 0, 1, 2 and the fd ls opens for the directory itself.
    EXPECT_EQ(std::stoi(run->output), 4) << run->output;
    ::close(fds[0]);
    ::close(fds[1]);
}

TEST(ChildProcess, TimeoutKillsTheChild) {
    auto start = Clock::now();
    auto run = run_and_capture({"sleep", "30"}, Millis(200));
    ASSERT_FALSE(run.ok());
    EXPECT_EQ(run.error().code, ErrorCode::Timeout);
    EXPECT_LT(std::chrono::duration_cast<Millis>(Clock::now() - start).count(), 3000);
}

TEST(FileUtil, ReadWriteTailRemove) {
    std::string dir = temp_dir();
    ASSERT_TRUE(make_dirs(dir + "/a/b/c").ok());
    ASSERT_TRUE(write_file(dir + "/a/b/c/f", "0123456789").ok());
    ASSERT_TRUE(write_file_atomic(dir + "/a/g", "atomic").ok());
    EXPECT_EQ(*read_file(dir + "/a/b/c/f"), "0123456789");
    EXPECT_EQ(*read_file_tail(dir + "/a/b/c/f", 3), "789");
    EXPECT_EQ(read_file(dir + "/a/b/c/f", 5).error().code, ErrorCode::TooLarge);
    EXPECT_EQ(last_lines("a\nb\nc\n", 2), "b\nc");
    EXPECT_EQ(last_lines("one", 5), "one");
    ASSERT_EQ(::symlink("/etc", (dir + "/a/link").c_str()), 0);
    ASSERT_TRUE(remove_tree(dir).ok());
    EXPECT_FALSE(path_exists(dir));
    EXPECT_TRUE(path_exists("/etc/hostname") || path_exists("/etc/passwd"));  // the symlink was not followed
    EXPECT_TRUE(remove_tree(dir).ok());
}

TEST(Random, HexIdsAreFreshAndWellFormed) {
    auto a = random_hex(6), b = random_hex(6);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->size(), 12u);
    EXPECT_NE(*a, *b);
    EXPECT_EQ(a->find_first_not_of("0123456789abcdef"), std::string::npos);
    EXPECT_EQ(to_hex(std::string("\x00\xff", 2)), "00ff");
}

TEST(UnixSocket, ConnectRetriesUntilTheServerExists) {
    std::string dir = temp_dir();
    std::string path = dir + "/s.sock";
    std::thread server([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strcpy(addr.sun_path, path.c_str());
        ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        ::listen(fd, 1);
        int c = ::accept(fd, nullptr, nullptr);
        ::close(c);
        ::close(fd);
    });
    auto fd = connect_unix_retry(path, Millis(5000));
    EXPECT_TRUE(fd.ok()) << fd.error().to_string();
    server.join();
    auto stopped = connect_unix_retry(dir + "/never.sock", Millis(5000),
                                      [] { return std::optional<Error>(make_error(ErrorCode::QemuFailed, "QEMU exited")); });
    ASSERT_FALSE(stopped.ok());
    EXPECT_EQ(stopped.error().code, ErrorCode::QemuFailed);
    EXPECT_FALSE(connect_unix("/" + std::string(200, 'x')).ok());
    (void)remove_tree(dir);
}
