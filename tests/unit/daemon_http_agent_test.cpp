// The HTTP layer's exec and files routes end to end without a VM: HttpServer over a loopback
// socket, a lease whose AgentClient talks to the real agent Server in-process (a socketpair), so
// commands and file operations really run, on this host, inside a temp folder.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "agent/server.h"
#include "base/unique_fd.h"
#include "kilnd/http/http_server.h"
#include "vm/agent_client.h"

using namespace kiln;
using namespace kiln::daemon;
using json = nlohmann::json;

namespace {

constexpr const char* kToken = "kiln_agent-test";
constexpr const char* kSandbox = "sb-00000000a9e7";
constexpr size_t kExecOutputCap = 64 * 1024;  // max_exec_output of this suite's server

class OneTokenAuth : public Authenticator {
public:
    Result<Caller> authenticate(std::string_view token) override {
        if (token == kToken) return Caller{1, "t", static_cast<ScopeSet>(Scope::Admin), {}};
        return make_error(ErrorCode::Unauthorized, "unknown token");
    }
};

// The real agent Server on one end of a socketpair, an AgentClient on the other.
class InProcessAgent {
public:
    InProcessAgent() {
        int fds[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        m_agent_fd.reset(fds[1]);
        auto server = agent::Server::create(agent::ServerConfig{});
        EXPECT_TRUE(server.ok());
        m_server = std::move(server).value();
        m_thread = std::thread([this] { m_server->run(m_agent_fd.get()); });
        client = vm::AgentClient::adopt(UniqueFd(fds[0]));
        proto::InitRequest init;
        init.hostname = "unit";
        init.entropy_hex = std::string(128, 'a');
        EXPECT_TRUE(client->init(init).ok());
    }
    ~InProcessAgent() {
        client.reset();
        m_thread.join();
    }
    std::unique_ptr<vm::AgentClient> client;

private:
    UniqueFd m_agent_fd;
    std::unique_ptr<agent::Server> m_server;
    std::thread m_thread;
};

class AgentLease : public SandboxLease {
public:
    AgentLease(SandboxInfo info, vm::AgentClient& agent) : m_info(std::move(info)), m_agent(agent) {}
    const SandboxInfo& info() const override { return m_info; }
    vm::AgentClient& agent() override { return m_agent; }

private:
    SandboxInfo m_info;
    vm::AgentClient& m_agent;
};

// One running sandbox (kSandbox) with env SANDBOX_VAR, whose agent is in-process; nothing else.
class AgentService : public SandboxService {
public:
    explicit AgentService(vm::AgentClient& agent) : m_agent(agent) {}
    SandboxInfo info() const {
        SandboxInfo s = SandboxInfo::from_row(SandboxState::Running);
        s.id = kSandbox;
        s.template_id = "tiny";
        s.env = {{"SANDBOX_VAR", "from-sandbox"}, {"BOTH", "sandbox"}};
        return s;
    }
    Result<std::shared_ptr<SandboxLease>> lease(const Caller&, const std::string& id) override {
        if (id != kSandbox) return make_error(ErrorCode::NotFound, "no sandbox");
        return std::shared_ptr<SandboxLease>(std::make_shared<AgentLease>(info(), m_agent));
    }
    Result<SandboxInfo> create(const Caller&, const CreateRequest&) override { return none(); }
    Result<SandboxInfo> get(const Caller&, const std::string&) override { return none(); }
    Result<std::vector<SandboxInfo>> list(const Caller&, const ListFilter&) override { return none(); }
    Result<SandboxInfo> set_ttl(const Caller&, const std::string&, int64_t) override { return none(); }
    Result<SandboxInfo> pause(const Caller&, const std::string&) override { return none(); }
    Result<SandboxInfo> resume(const Caller&, const std::string&, std::optional<int64_t>) override { return none(); }
    Status remove(const Caller&, const std::string&) override { return none(); }
    Result<SnapshotInfo> snapshot(const Caller&, const std::string&, const std::string&) override { return none(); }
    Result<SandboxInfo> fork(const Caller&, const std::string&, const ForkRequest&) override { return none(); }
    Result<std::vector<SnapshotInfo>> list_snapshots(const Caller&) override { return none(); }
    Result<SnapshotInfo> get_snapshot(const Caller&, const std::string&) override { return none(); }
    Status remove_snapshot(const Caller&, const std::string&) override { return none(); }
    Result<std::vector<TemplateInfo>> list_templates(const Caller&) override { return none(); }
    Result<TemplateInfo> get_template(const Caller&, const std::string&) override { return none(); }
    Status remove_template(const Caller&, const std::string&) override { return none(); }
    std::map<std::string, int64_t> count_by_state() override { return {}; }

private:
    static Error none() { return make_error(ErrorCode::NotFound, "not in this test"); }
    vm::AgentClient& m_agent;
};

// Percent-encodes a query value (paths here are plain, but '/' and others are encoded anyway).
std::string query_escape(const std::string& value) {
    std::string out;
    for (unsigned char c : value) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            char buf[4];
            std::snprintf(buf, sizeof buf, "%%%02X", c);
            out += buf;
        }
    }
    return out;
}

bool pid_gone(pid_t pid, std::chrono::milliseconds within) {
    auto deadline = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < deadline) {
        if (::kill(pid, 0) != 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
}

class DaemonHttpAgent : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/kiln-http-agent-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        m_dir = tmpl;
        HttpConfig config;
        config.listen = "127.0.0.1:0";
        config.worker_threads = 4;
        config.client_timeout_seconds = 5;
        config.max_exec_output = kExecOutputCap;
        auto server = HttpServer::create(config, m_service, m_auth, m_metrics);
        ASSERT_TRUE(server.ok()) << server.error().to_string();
        m_server = std::move(*server);
        ASSERT_TRUE(m_server->bind().ok());
        m_thread = std::thread([this] { (void)m_server->serve(); });
    }
    void TearDown() override {
        m_server->stop();
        if (m_thread.joinable()) m_thread.join();
        std::string cmd = "rm -rf '" + m_dir + "'";
        (void)!std::system(cmd.c_str());
    }

    httplib::Client client() {
        httplib::Client c("127.0.0.1", m_server->port());
        c.set_read_timeout(30, 0);
        c.set_default_headers({{"Authorization", std::string("Bearer ") + kToken}});
        return c;
    }
    std::string url(const std::string& route, const std::string& query = "") {
        return std::string("/v1/sandboxes/") + kSandbox + route + query;
    }
    std::string files(const std::string& route, const std::string& path, const std::string& extra = "") {
        return url(route, "?path=" + query_escape(path) + extra);
    }
    json exec(const std::string& body, int expect_status = 200) {
        auto res = client().Post(url("/exec"), body, "application/json");
        EXPECT_TRUE(res);
        if (!res) return nullptr;
        EXPECT_EQ(res->status, expect_status) << res->body;
        return json::parse(res->body, nullptr, false);
    }
    // The NDJSON events of a streamed exec.
    std::vector<json> exec_stream(const std::string& body) {
        auto res = client().Post(url("/exec"), {{"Accept", "application/x-ndjson"}}, body, "application/json");
        EXPECT_TRUE(res);
        std::vector<json> events;
        if (!res) return events;
        EXPECT_EQ(res->status, 200);
        EXPECT_EQ(res->get_header_value("Content-Type"), "application/x-ndjson");
        std::istringstream in(res->body);
        std::string line;
        while (std::getline(in, line)) {
            json e = json::parse(line, nullptr, false);
            EXPECT_FALSE(e.is_discarded()) << line;
            events.push_back(e);
        }
        return events;
    }

    InProcessAgent m_agent;
    AgentService m_service{*m_agent.client};
    OneTokenAuth m_auth;
    Metrics m_metrics{"tcg"};
    std::unique_ptr<HttpServer> m_server;
    std::thread m_thread;
    std::string m_dir;
};

}  // namespace

TEST_F(DaemonHttpAgent, BufferedExec) {
    json r = exec(R"({"cmd":"echo out; echo err >&2; exit 3"})");
    EXPECT_EQ(r["stdout"], "out\n");
    EXPECT_EQ(r["stderr"], "err\n");
    EXPECT_EQ(r["exit_code"], 3);
    EXPECT_EQ(r["timed_out"], false);
    EXPECT_TRUE(r["duration_ms"].is_number());

    r = exec(R"({"argv":["cat"],"stdin":"from stdin"})");
    EXPECT_EQ(r["stdout"], "from stdin");

    r = exec(json{{"argv", {"pwd"}}, {"cwd", m_dir}}.dump());
    EXPECT_EQ(r["stdout"], m_dir + "\n");

    // The sandbox's env under the request's: the request wins where both set a variable.
    r = exec(R"({"cmd":"echo $SANDBOX_VAR $BOTH $OWN","env":{"BOTH":"request","OWN":"x"}})");
    EXPECT_EQ(r["stdout"], "from-sandbox request x\n");

    // Text stays a plain string, and says so; nothing was cut.
    EXPECT_EQ(r["stdout_encoding"], "utf-8");
    EXPECT_EQ(r["stdout_truncated"], false);
    EXPECT_EQ(r["stdout_dropped_bytes"], 0);
    EXPECT_FALSE(r.contains("truncated"));

    // Bytes that are not UTF-8 come back whole, as base64 (this used to be "a\uFFFDb": lossy).
    r = exec(R"({"cmd":"printf 'a\\377b'"})");
    EXPECT_EQ(r["stdout"], "Yf9i");
    EXPECT_EQ(r["stdout_encoding"], "base64");
    EXPECT_EQ(r["stderr_encoding"], "utf-8");
}

TEST_F(DaemonHttpAgent, BufferedExecOutputIsCappedPerStreamAndSaysWhatItDropped) {
    // 1 MB on stdout, 100 KB of NULs on stderr, against a cap of 64 KiB per stream.
    json r = exec(R"({"cmd":"head -c 1000000 /dev/zero | tr \\\\0 y; head -c 100000 /dev/zero >&2; echo done >&2"})");
    ASSERT_TRUE(r.is_object());
    EXPECT_EQ(r["exit_code"], 0);
    EXPECT_EQ(r["stdout"].get<std::string>().size(), kExecOutputCap);
    EXPECT_EQ(r["stdout_encoding"], "utf-8");
    EXPECT_EQ(r["stdout_truncated"], true);
    EXPECT_EQ(r["stdout_dropped_bytes"], 1000000 - kExecOutputCap);
    // NULs would cost 6 characters each as JSON text: base64, 4/3 of the kept bytes.
    EXPECT_EQ(r["stderr_encoding"], "base64");
    EXPECT_EQ(r["stderr"].get<std::string>().size(), (kExecOutputCap + 2) / 3 * 4);
    EXPECT_EQ(r["stderr_truncated"], true);
    EXPECT_EQ(r["stderr_dropped_bytes"], 100000 + 5 - kExecOutputCap);
    EXPECT_EQ(r["truncated"], true);
}

TEST_F(DaemonHttpAgent, BufferedExecOfAHugeOutputKeepsTheAnswerSmall) {
    // 64 MiB of NULs: before the cap this was a 6x-escaped body; now the body holds the cap's
    // base64 (and the command still runs to its end: the rest is read and counted).
    auto res = client().Post(url("/exec"), R"({"cmd":"head -c 67108864 /dev/zero"})", "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200);
    EXPECT_LT(res->body.size(), kExecOutputCap * 4 / 3 + 1024);
    json r = json::parse(res->body);
    EXPECT_EQ(r["exit_code"], 0);
    EXPECT_EQ(r["stdout_dropped_bytes"], (64u << 20) - kExecOutputCap);
}

TEST_F(DaemonHttpAgent, ExecTimeoutKillsTheCommand) {
    json r = exec(R"({"cmd":"sleep 30","timeout_seconds":0.5})");
    EXPECT_EQ(r["timed_out"], true);
    EXPECT_TRUE(r["exit_code"].is_null());
    EXPECT_EQ(r["signal"], 9);
    EXPECT_LT(r["duration_ms"].get<double>(), 10000);
}

TEST_F(DaemonHttpAgent, StreamedExecEvents) {
    auto events = exec_stream(R"({"cmd":"echo one; echo two >&2; exit 4"})");
    ASSERT_GE(events.size(), 3u);
    EXPECT_EQ(events.front()["type"], "start");
    EXPECT_TRUE(events.front()["pid"].is_number_integer());
    EXPECT_EQ(events.back()["type"], "exit");
    EXPECT_EQ(events.back()["exit_code"], 4);
    std::string out, err;
    for (const auto& e : events) {
        if (e["type"] == "stdout") out += e["data"].get<std::string>();
        if (e["type"] == "stderr") err += e["data"].get<std::string>();
    }
    EXPECT_EQ(out, "one\n");
    EXPECT_EQ(err, "two\n");

    // Server-sent events: "event: <type>" then "data: <the same JSON>".
    auto res = client().Post(url("/exec"), {{"Accept", "text/event-stream"}}, R"({"cmd":"echo sse"})",
                             "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200);
    EXPECT_NE(res->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
    EXPECT_NE(res->body.find("event: start\ndata: {"), std::string::npos) << res->body;
    EXPECT_NE(res->body.find("event: stdout\ndata: {\"data\":\"sse\\n\",\"type\":\"stdout\"}\n\n"), std::string::npos)
        << res->body;
    EXPECT_NE(res->body.find("event: exit\ndata: {"), std::string::npos) << res->body;
}

namespace {
// Sends a streamed exec on a raw socket, reads until the start event, returns the socket and the
// command's pid (a host pid: the agent is in-process).
std::pair<int, pid_t> start_stream(int port, const std::string& path, const std::string& accept, const std::string& body,
                                   const std::string& wait_for) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    std::string request = "POST " + path + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kToken +
                          "\r\nAccept: " + accept + "\r\nContent-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
    EXPECT_EQ(::write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
    std::string got;
    char buf[4096];
    while (got.find("\"type\":\"start\"") == std::string::npos || got.find(wait_for) == std::string::npos) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) {
            ADD_FAILURE() << "stream ended early: " << got;
            return {fd, 0};
        }
        got.append(buf, static_cast<size_t>(n));
    }
    size_t at = got.find("\"pid\":");
    EXPECT_NE(at, std::string::npos) << got;
    return {fd, at == std::string::npos ? 0 : std::stoi(got.substr(at + 6))};
}
}  // namespace

TEST_F(DaemonHttpAgent, StreamClientGoneKillsTheCommand) {
    // A command that prints forever; the client reads the start event and hangs up.
    auto [fd, pid] = start_stream(m_server->port(), url("/exec"), "application/x-ndjson",
                                  R"({"cmd":"while true; do echo tick; sleep 0.05; done"})", "tick");
    ASSERT_GT(pid, 1);
    EXPECT_EQ(::kill(pid, 0), 0);  // the command runs
    ::close(fd);
    EXPECT_TRUE(pid_gone(pid, std::chrono::seconds(10))) << "the command outlived its client";
}

TEST_F(DaemonHttpAgent, ClientGoneKillsASilentCommandInEitherFormat) {
    // No output to fail on: the server sees the socket close by itself (SSE's keep-alive
    // comments would find it too, but only every 5 s; NDJSON has no such line).
    for (auto [accept, marker] : {std::pair<std::string, std::string>{"text/event-stream", "event: start"},
                                  {"application/x-ndjson", "\"type\":\"start\""}}) {
        SCOPED_TRACE(accept);
        auto [fd, pid] = start_stream(m_server->port(), url("/exec"), accept, R"({"cmd":"exec sleep 60"})", marker);
        ASSERT_GT(pid, 1);
        EXPECT_EQ(::kill(pid, 0), 0);
        ::close(fd);
        EXPECT_TRUE(pid_gone(pid, std::chrono::seconds(5))) << "a silent command outlived its client";
    }
}

TEST_F(DaemonHttpAgent, StopEndsOpenStreamsAndServeReturns) {
    // An open stream of a silent command does not keep the server from stopping: its connection
    // is closed, its command killed, and serve() returns.
    auto [fd, pid] = start_stream(m_server->port(), url("/exec"), "application/x-ndjson", R"({"cmd":"exec sleep 60"})",
                                  "\"type\":\"start\"");
    ASSERT_GT(pid, 1);
    auto start = std::chrono::steady_clock::now();
    m_server->stop();
    m_thread.join();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
    EXPECT_TRUE(pid_gone(pid, std::chrono::seconds(5)));
    char buf[4096];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
    ::close(fd);
}

TEST_F(DaemonHttpAgent, FilesRoundTrip) {
    auto c = client();
    std::string path = m_dir + "/sub/data.bin";
    std::string bytes = std::string("\0\xff\x01 binary", 10) + std::string(200000, 'z');
    auto put = c.Put(files("/files", path, "&mode=0600").c_str(), bytes, "application/octet-stream");
    ASSERT_TRUE(put);
    ASSERT_EQ(put->status, 200) << put->body;
    json info = json::parse(put->body);
    EXPECT_EQ(info["path"], path);
    EXPECT_EQ(info["name"], "data.bin");
    EXPECT_EQ(info["type"], "file");
    EXPECT_EQ(info["size"], bytes.size());
    EXPECT_EQ(info["mode"], "0600");

    auto get = c.Get(files("/files", path).c_str());
    ASSERT_TRUE(get);
    EXPECT_EQ(get->status, 200);
    EXPECT_EQ(get->body, bytes);

    auto stat = c.Get(files("/files/stat", m_dir + "/sub").c_str());
    ASSERT_TRUE(stat);
    EXPECT_EQ(json::parse(stat->body)["type"], "dir");

    auto mkdir = c.Post(files("/files/mkdir", m_dir + "/a/b/c").c_str(), "", "application/json");
    ASSERT_TRUE(mkdir);
    EXPECT_EQ(mkdir->status, 200) << mkdir->body;
    EXPECT_EQ(json::parse(mkdir->body)["type"], "dir");

    auto list = c.Get(files("/files/list", m_dir).c_str());
    ASSERT_TRUE(list);
    ASSERT_EQ(list->status, 200);
    json entries = json::parse(list->body)["entries"];
    ASSERT_EQ(entries.size(), 2u);
    EXPECT_EQ(entries[0]["name"], "a");  // sorted by name
    EXPECT_EQ(entries[0]["path"], m_dir + "/a");
    EXPECT_EQ(entries[1]["name"], "sub");

    // A folder with entries needs recursive=true.
    auto del = c.Delete(files("/files", m_dir + "/a").c_str());
    ASSERT_TRUE(del);
    EXPECT_EQ(del->status, 409) << del->body;
    EXPECT_EQ(json::parse(del->body)["error"]["code"], "conflict");
    del = c.Delete(files("/files", m_dir + "/a", "&recursive=true").c_str());
    ASSERT_TRUE(del);
    EXPECT_EQ(del->status, 204) << del->body;

    // A folder is not a file: list or tar it instead.
    auto folder = c.Get(files("/files", m_dir).c_str());
    ASSERT_TRUE(folder);
    EXPECT_EQ(folder->status, 422) << folder->body;

    auto missing = c.Get(files("/files", m_dir + "/nope").c_str());
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->status, 404) << missing->body;
    EXPECT_EQ(json::parse(missing->body)["error"]["code"], "not_found");
    missing = c.Get(files("/files/stat", m_dir + "/nope").c_str());
    ASSERT_TRUE(missing);
    EXPECT_EQ(missing->status, 404);
}

TEST_F(DaemonHttpAgent, TarUploadAndDownload) {
    auto c = client();
    // A gzip tarball made by the host's tar (which is what a client would send).
    std::string src = m_dir + "/src";
    std::string cmd = "mkdir -p '" + src + "/d' && printf hello > '" + src + "/d/f.txt' && ln -s d/f.txt '" + src +
                      "/link' && tar -czf '" + m_dir + "/up.tgz' -C '" + src + "' .";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::string tgz;
    {
        FILE* f = std::fopen((m_dir + "/up.tgz").c_str(), "rb");
        ASSERT_NE(f, nullptr);
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) tgz.append(buf, n);
        std::fclose(f);
    }
    std::string dest = m_dir + "/dest/inner";
    auto up = c.Post(files("/files/tar", dest).c_str(), tgz, "application/x-tar");
    ASSERT_TRUE(up);
    ASSERT_EQ(up->status, 200) << up->body;
    EXPECT_EQ(json::parse(up->body)["bytes"], 5);
    auto read = c.Get(files("/files", dest + "/d/f.txt").c_str());
    ASSERT_TRUE(read);
    EXPECT_EQ(read->body, "hello");
    auto link = c.Get(files("/files/stat", dest + "/link").c_str());
    ASSERT_TRUE(link);
    EXPECT_EQ(json::parse(link->body)["type"], "symlink");

    // A tarball that escapes is refused whole: nothing of it is extracted.
    std::string evil = m_dir + "/evil";
    cmd = "mkdir -p '" + evil + "' && printf x > '" + evil + "/first' && ln -s / '" + evil + "/root' && tar -cf '" +
          m_dir + "/evil.tar' -C '" + evil + "' first root";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::string tar;
    {
        FILE* f = std::fopen((m_dir + "/evil.tar").c_str(), "rb");
        ASSERT_NE(f, nullptr);
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) tar.append(buf, n);
        std::fclose(f);
    }
    auto refused = c.Post(files("/files/tar", m_dir + "/out").c_str(), tar, "application/x-tar");
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 422) << refused->body;
    EXPECT_NE(refused->body.find("root"), std::string::npos) << refused->body;
    EXPECT_NE(::access((m_dir + "/out/first").c_str(), F_OK), 0) << "part of a refused tarball was extracted";

    // Download: a plain tar of the folder, which lists what was uploaded.
    auto down = c.Get(files("/files/tar", dest).c_str());
    ASSERT_TRUE(down);
    ASSERT_EQ(down->status, 200);
    EXPECT_EQ(down->get_header_value("Content-Type"), "application/x-tar");
    {
        FILE* f = std::fopen((m_dir + "/down.tar").c_str(), "wb");
        ASSERT_NE(f, nullptr);
        std::fwrite(down->body.data(), 1, down->body.size(), f);
        std::fclose(f);
    }
    FILE* p = ::popen(("tar -tf '" + m_dir + "/down.tar' | sort").c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string listing;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) listing.append(buf, n);
    EXPECT_EQ(::pclose(p), 0);
    EXPECT_NE(listing.find("./d/f.txt"), std::string::npos) << listing;
    EXPECT_NE(listing.find("./link"), std::string::npos) << listing;
}

TEST_F(DaemonHttpAgent, VmGoneIsSandboxNotRunning) {
    m_agent.client->fail_all(make_error(ErrorCode::VmGone, "the VM exited"));
    json r = exec(R"({"cmd":"true"})", 409);
    EXPECT_EQ(r["error"]["code"], "sandbox_not_running");
    auto stat = client().Get(files("/files/stat", "/").c_str());
    ASSERT_TRUE(stat);
    EXPECT_EQ(stat->status, 409);
    // Streamed: the status is sent before the exec starts, so the failure is an error event.
    auto events = exec_stream(R"({"cmd":"true"})");
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back()["type"], "error");
    EXPECT_EQ(events.back()["error"]["code"], "sandbox_not_running");
}
