// Unit tests for QmpClient against a scripted QMP server on a unix socket: replies, events, errors,
// and what each typed call puts on the wire.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

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
    // Serves: greeting, capabilities, then answers each command by name (and records it).
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
                    {
                        std::lock_guard lock(m_mutex);
                        m_received.push_back(j);
                    }
                    nlohmann::json reply;
                    if (j.contains("id")) reply["id"] = j["id"];
                    if (cmd == "migrate-incoming") {  // as from a QEMU built without it
                        reply["error"] = {{"class", "CommandNotFound"}, {"desc", "The command migrate-incoming has not been found"}};
                    } else if (cmd == "stop") {
                        send(c, R"({"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}})");
                        reply["return"] = nlohmann::json::object();
                    } else if (cmd == "query-status") {
                        reply["return"] = {{"status", "running"}, {"running", true}};
                    } else if (cmd == "query-version") {
                        reply["return"] = {{"qemu", {{"major", 7}, {"minor", 2}, {"micro", 22}}}, {"package", "Debian"}};
                    } else if (cmd == "query-migrate") {
                        reply["return"] = {{"status", "failed"}, {"error-desc", "Unable to write to socket: Broken pipe"}};
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
    // The command objects received so far (qmp_capabilities first).
    std::vector<nlohmann::json> received() {
        std::lock_guard lock(m_mutex);
        return m_received;
    }

private:
    static void send(int fd, const std::string& line) {
        std::string l = line + "\r\n";
        // MSG_NOSIGNAL: a reply to a client that already closed (at a test's end) must not raise
        // SIGPIPE, which kills the whole test binary (seen once in a fresh-clone run).
        ssize_t ignored = ::send(fd, l.data(), l.size(), MSG_NOSIGNAL);
        (void)ignored;
    }

    std::string m_dir, m_path;
    int m_listener = -1;
    std::thread m_thread;
    std::mutex m_mutex;
    std::vector<nlohmann::json> m_received;
};

}  // namespace

TEST(QmpClient, CommandsEventsAndErrors) {
    FakeQmp server;
    server.serve();
    auto qmp = QmpClient::connect(server.path(), Millis(5000));
    ASSERT_TRUE(qmp.ok()) << qmp.error().to_string();
    EXPECT_EQ((*qmp)->qemu_version()["qemu"]["minor"], 2);
    auto status = (*qmp)->query_status();
    ASSERT_TRUE(status.ok());
    EXPECT_EQ(status->status, "running");
    EXPECT_TRUE(status->running);
    auto refused = (*qmp)->migrate_incoming("fd:x");
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, ErrorCode::QmpError);
    EXPECT_NE(refused.error().message.find("has not been found"), std::string::npos);
    ASSERT_TRUE((*qmp)->stop().ok());
    auto stop = (*qmp)->wait_event("STOP", Millis(2000));
    ASSERT_TRUE(stop.ok());
    EXPECT_EQ((*stop)["timestamp"]["seconds"], 1);
    EXPECT_FALSE((*qmp)->wait_event("RESUME", Millis(50)).ok());
    (void)(*qmp)->quit(Millis(500));
    auto shutdown = (*qmp)->wait_event("SHUTDOWN", Millis(2000));
    EXPECT_TRUE(shutdown.ok());
    auto after = (*qmp)->query_status(Millis(2000));
    ASSERT_FALSE(after.ok());
    EXPECT_EQ(after.error().code, ErrorCode::VmGone);
}

// Each typed call sends its command with the arguments QEMU expects, and reads what Kiln uses of the reply.
TEST(QmpClient, TypedCallsSendTheirCommandsAndReadTheirReplies) {
    FakeQmp server;
    server.serve();
    auto qmp = QmpClient::connect(server.path(), Millis(5000));
    ASSERT_TRUE(qmp.ok()) << qmp.error().to_string();
    auto version = (*qmp)->query_version();
    ASSERT_TRUE(version.ok()) << version.error().to_string();
    EXPECT_EQ(version->to_string(), "7.2.22");
    ASSERT_TRUE((*qmp)->migrate_set_capabilities(MigrationCapabilities{true, true}).ok());
    ASSERT_TRUE((*qmp)->migrate_set_parameters(MigrationParameters{int64_t(1) << 40, 100000}).ok());
    ASSERT_TRUE((*qmp)->getfd("kiln-migrate", STDERR_FILENO).ok());
    ASSERT_TRUE((*qmp)->migrate("fd:kiln-migrate").ok());
    ASSERT_TRUE((*qmp)->migrate_cancel().ok());
    auto info = (*qmp)->query_migrate();
    ASSERT_TRUE(info.ok()) << info.error().to_string();
    EXPECT_EQ(info->status, "failed");
    EXPECT_EQ(info->error_desc, "Unable to write to socket: Broken pipe");
    EXPECT_NE(info->reply.find("Broken pipe"), std::string::npos);
    ASSERT_TRUE((*qmp)->cont().ok());
    (void)(*qmp)->quit(Millis(500));

    auto sent = server.received();
    ASSERT_EQ(sent.size(), 10u);
    EXPECT_EQ(sent[0]["execute"], "qmp_capabilities");
    EXPECT_EQ(sent[1]["execute"], "query-version");
    EXPECT_EQ(sent[2]["execute"], "migrate-set-capabilities");
    EXPECT_EQ(sent[2]["arguments"]["capabilities"],
              nlohmann::json::parse(R"([{"capability":"x-ignore-shared","state":true},{"capability":"events","state":true}])"));
    EXPECT_EQ(sent[3]["execute"], "migrate-set-parameters");
    EXPECT_EQ(sent[3]["arguments"]["max-bandwidth"], int64_t(1) << 40);
    EXPECT_EQ(sent[3]["arguments"]["downtime-limit"], 100000);
    EXPECT_EQ(sent[4]["execute"], "getfd");
    EXPECT_EQ(sent[4]["arguments"]["fdname"], "kiln-migrate");
    EXPECT_EQ(sent[5]["execute"], "migrate");
    EXPECT_EQ(sent[5]["arguments"]["uri"], "fd:kiln-migrate");
    EXPECT_EQ(sent[6]["execute"], "migrate_cancel");
    EXPECT_FALSE(sent[6].contains("arguments"));
    EXPECT_EQ(sent[7]["execute"], "query-migrate");
    EXPECT_EQ(sent[8]["execute"], "cont");
    EXPECT_EQ(sent[9]["execute"], "quit");
}

TEST(QmpClient, NoServerIsATimeout) {
    auto qmp = QmpClient::connect("/tmp/kiln-no-such-qmp.sock", Millis(100));
    ASSERT_FALSE(qmp.ok());
    EXPECT_EQ(qmp.error().code, ErrorCode::Timeout);
}
