// Unit tests for QmpClient against a scripted QMP server on a unix socket.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "base/file_util.h"
#include "vm/qmp_client.h"

using namespace kiln;
using namespace kiln::vm;

namespace {

class FakeQmp {
public:
    FakeQmp() {
        char tmpl[] = "/tmp/kiln-qmp-test-XXXXXX";
        m_dir = ::mkdtemp(tmpl);
        m_path = m_dir + "/qmp.sock";
        m_listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strcpy(addr.sun_path, m_path.c_str());
        EXPECT_EQ(::bind(m_listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        EXPECT_EQ(::listen(m_listener, 1), 0);
    }
    ~FakeQmp() {
        if (m_thread.joinable()) m_thread.join();
        ::close(m_listener);
        (void)remove_tree(m_dir);
    }
    // Serves: greeting, capabilities, then answers each command by name.
    void serve() {
        m_thread = std::thread([this] {
            int c = ::accept(m_listener, nullptr, nullptr);
            send(c, R"({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 22}}, "capabilities": []}})");
            std::string buf;
            char tmp[4096];
            for (;;) {
                size_t nl;
                while ((nl = buf.find('\n')) != std::string::npos) {
                    auto j = nlohmann::json::parse(buf.substr(0, nl));
                    buf.erase(0, nl + 1);
                    std::string cmd = j["execute"];
                    nlohmann::json reply;
                    if (j.contains("id")) reply["id"] = j["id"];
                    if (cmd == "bogus") {
                        reply["error"] = {{"class", "CommandNotFound"}, {"desc", "The command bogus has not been found"}};
                    } else if (cmd == "stop") {
                        send(c, R"({"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}})");
                        reply["return"] = nlohmann::json::object();
                    } else if (cmd == "query-status") {
                        reply["return"] = {{"status", "running"}, {"running", true}};
                    } else if (cmd == "quit") {
                        reply["return"] = nlohmann::json::object();
                        send(c, reply.dump());
                        send(c, R"({"event": "SHUTDOWN", "data": {"guest": false}})");
                        ::close(c);
                        return;
                    } else {
                        reply["return"] = nlohmann::json::object();
                    }
                    send(c, reply.dump());
                }
                ssize_t n = ::read(c, tmp, sizeof tmp);
                if (n <= 0) break;
                buf.append(tmp, static_cast<size_t>(n));
            }
            ::close(c);
        });
    }
    const std::string& path() const { return m_path; }

private:
    static void send(int fd, const std::string& line) {
        std::string l = line + "\r\n";
        ssize_t ignored = ::write(fd, l.data(), l.size());
        (void)ignored;
    }

    std::string m_dir, m_path;
    int m_listener = -1;
    std::thread m_thread;
};

}  // namespace

TEST(QmpClient, CommandsEventsAndErrors) {
    FakeQmp server;
    server.serve();
    auto qmp = QmpClient::connect(server.path(), Millis(5000));
    ASSERT_TRUE(qmp.ok()) << qmp.error().to_string();
    EXPECT_EQ((*qmp)->qemu_version()["qemu"]["minor"], 2);
    auto status = (*qmp)->execute("query-status");
    ASSERT_TRUE(status.ok());
    EXPECT_EQ((*status)["status"], "running");
    auto bogus = (*qmp)->execute("bogus");
    ASSERT_FALSE(bogus.ok());
    EXPECT_EQ(bogus.error().code, ErrorCode::QmpError);
    EXPECT_NE(bogus.error().message.find("has not been found"), std::string::npos);
    ASSERT_TRUE((*qmp)->execute("stop").ok());
    auto stop = (*qmp)->wait_event("STOP", Millis(2000));
    ASSERT_TRUE(stop.ok());
    EXPECT_EQ((*stop)["timestamp"]["seconds"], 1);
    EXPECT_FALSE((*qmp)->wait_event("RESUME", Millis(50)).ok());
    (void)(*qmp)->execute("quit", nlohmann::json::object(), Millis(500));
    auto shutdown = (*qmp)->wait_event("SHUTDOWN", Millis(2000));
    EXPECT_TRUE(shutdown.ok());
    auto after = (*qmp)->execute("query-status", nlohmann::json::object(), Millis(2000));
    ASSERT_FALSE(after.ok());
    EXPECT_EQ(after.error().code, ErrorCode::VmGone);
}

TEST(QmpClient, NoServerIsATimeout) {
    auto qmp = QmpClient::connect("/tmp/kiln-no-such-qmp.sock", Millis(100));
    ASSERT_FALSE(qmp.ok());
    EXPECT_EQ(qmp.error().code, ErrorCode::Timeout);
}
