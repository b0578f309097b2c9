// Unit tests for console scanning (panic detection), the bounded log file and ConsoleLog over a socket.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "base/file_util.h"
#include "vm/bounded_log.h"
#include "vm/console_log.h"

using namespace kiln;
using namespace kiln::vm;

namespace {

std::string temp_dir() {
    char tmpl[] = "/tmp/kiln-console-test-XXXXXX";
    return ::mkdtemp(tmpl) ? tmpl : "/tmp";
}

}  // namespace

TEST(ConsoleScanner, FindsThePanicLineAcrossChunks) {
    ConsoleScanner s;
    EXPECT_FALSE(s.feed("[    0.1] booting\r\nsysrq: Trigger a crash\r\nKernel pan"));
    EXPECT_TRUE(s.feed("ic - not syncing: sysrq triggered crash\r\nCPU: 0 PID: 1\r\n"));
    ASSERT_TRUE(s.panic_line());
    EXPECT_EQ(*s.panic_line(), "Kernel panic - not syncing: sysrq triggered crash");
    EXPECT_EQ(s.lines_since_panic(), 1u);
    EXPECT_FALSE(s.feed("Kernel panic - not syncing: again\n"));  // only the first counts
    auto lines = s.last_lines();
    ASSERT_GE(lines.size(), 3u);
    EXPECT_EQ(lines[0], "[    0.1] booting");
}

TEST(ConsoleScanner, KeepsBoundedContext) {
    ConsoleScanner s;
    for (int i = 0; i < 100; ++i) s.feed("line " + std::to_string(i) + "\n");
    s.feed(std::string(5000, 'x') + "\n");
    auto lines = s.last_lines();
    EXPECT_EQ(lines.size(), ConsoleScanner::kContextLines);
    EXPECT_EQ(lines.back().size(), ConsoleScanner::kMaxLine);
}

TEST(BoundedLog, KeepsHeadAndRecentTailWithinTheLimit) {
    std::string dir = temp_dir();
    auto log = BoundedLog::create(dir + "/c.log", 64 * 1024, 8 * 1024);
    ASSERT_TRUE(log.ok());
    std::string head(8 * 1024, 'H');
    ASSERT_TRUE((*log)->append(head).ok());
    for (int i = 0; i < 5000; ++i) ASSERT_TRUE((*log)->append("line " + std::to_string(i) + " ............\n").ok());
    ASSERT_TRUE((*log)->append("THE END\n").ok());
    auto text = read_file(dir + "/c.log");
    ASSERT_TRUE(text.ok());
    EXPECT_LE(text->size(), 64u * 1024 + 100);
    EXPECT_EQ(text->substr(0, head.size()), head);
    EXPECT_NE(text->find("bytes of console output dropped here"), std::string::npos);
    EXPECT_EQ(text->substr(text->size() - 8), "THE END\n");
    EXPECT_NE(text->find("line 4999 "), std::string::npos);
    EXPECT_EQ(text->find("line 10 "), std::string::npos);
    EXPECT_GT((*log)->dropped_bytes(), 0u);
    (void)remove_tree(dir);
}

TEST(BoundedLog, SmallOutputIsKeptVerbatim) {
    std::string dir = temp_dir();
    auto log = BoundedLog::create(dir + "/c.log");
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->append("hello\n").ok());
    ASSERT_TRUE((*log)->append("world\n").ok());
    EXPECT_EQ(*read_file(dir + "/c.log"), "hello\nworld\n");
    (void)remove_tree(dir);
}

TEST(ConsoleLog, CopiesTheSocketAndReportsAPanicOnce) {
    std::string dir = temp_dir();
    std::string sock = dir + "/console.sock";
    int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, sock.c_str());
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener, 1), 0);

    std::atomic<int> reports{0};
    std::string reported;
    auto console = ConsoleLog::start(sock, dir + "/console.log", Millis(2000), [&](const PanicReport& r) {
        reported = r.to_string();
        ++reports;
    });
    ASSERT_TRUE(console.ok()) << console.error().to_string();
    int server = ::accept(listener, nullptr, nullptr);
    ASSERT_GE(server, 0);
    std::string text = "boot line\nKernel panic - not syncing: Attempted to kill init!\nCall Trace:\n";
    ASSERT_EQ(::write(server, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(server);  // EOF, like QEMU exiting
    EXPECT_TRUE((*console)->wait_closed(Millis(3000)));
    EXPECT_EQ(reports.load(), 1);
    EXPECT_NE(reported.find("Attempted to kill init"), std::string::npos);
    EXPECT_NE(reported.find("boot line"), std::string::npos);
    ASSERT_TRUE((*console)->panic().has_value());
    EXPECT_EQ(*read_file(dir + "/console.log"), text);
    console->reset();
    ::close(listener);
    (void)remove_tree(dir);
}
