// The unit tests' PostgreSQL (see pg_test_server.h).
#include "pg_test_server.h"

#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "base/child_process.h"
#include "base/db.h"
#include "base/file_util.h"

namespace kiln::test {
namespace {

constexpr const char* kBinDir = "/usr/lib/postgresql/15/bin";

std::unique_ptr<PgTestServer>& instance() {
    static std::unique_ptr<PgTestServer> server;
    return server;
}

std::string& error_text() {
    static std::string text;
    return text;
}

Status as_postgres(const std::vector<std::string>& args, const std::string& what) {
    std::vector<std::string> argv = {"runuser", "-u", "postgres", "--"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto run = run_and_capture(argv, Millis(120000));
    if (!run.ok()) return make_error(ErrorCode::Internal, what + ": " + run.error().message);
    if (!run->status.success()) return make_error(ErrorCode::Internal, what + " failed: " + run->output);
    return ok_status();
}

// Servers of earlier test runs that died before stopping theirs (a crash, an abort): each root
// records its test process's pid; a root whose process is gone has its server stopped (pg_ctl, by
// its data dir) and is removed. Nothing else is touched.
void sweep_orphans() {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/tmp", ec)) {
        const std::string root = entry.path().string();
        if (entry.path().filename().string().rfind("kiln-unit-pg-", 0) != 0) continue;
        auto owner = read_file(root + "/owner.pid");
        if (!owner.ok()) continue;
        const pid_t pid = static_cast<pid_t>(std::atol(owner->c_str()));
        if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
        (void)as_postgres({std::string(kBinDir) + "/pg_ctl", "-D", root + "/data", "-m", "immediate", "-w", "stop"},
                          "pg_ctl stop");
        (void)remove_tree(root);
    }
}

}  // namespace

PgTestServer* PgTestServer::get() {
    static bool tried = false;
    if (!tried) {
        tried = true;
        std::unique_ptr<PgTestServer> server(new PgTestServer());
        auto st = server->init();
        if (st.ok()) st = server->start();
        if (st.ok()) instance() = std::move(server);
        else error_text() = st.error().message;
    }
    return instance().get();
}

const std::string& PgTestServer::start_error() { return error_text(); }

Status PgTestServer::init() {
    if (::access((std::string(kBinDir) + "/initdb").c_str(), X_OK) != 0)
        return make_error(ErrorCode::Internal, std::string("no PostgreSQL 15 at ") + kBinDir + " (scripts/install-deps.sh)");
    const passwd* pg = ::getpwnam("postgres");
    if (!pg) return make_error(ErrorCode::Internal, "no postgres user");
    sweep_orphans();
    char tmpl[] = "/tmp/kiln-unit-pg-XXXXXX";
    if (!::mkdtemp(tmpl)) return make_error(ErrorCode::Internal, "mkdtemp failed");
    m_root = tmpl;
    TRY(write_file(m_root + "/owner.pid", std::to_string(::getpid())));
    m_bin = kBinDir;
    m_data = m_root + "/data";
    m_socket_dir = m_root + "/run";
    m_log = m_root + "/server.log";
    ::mkdir(m_socket_dir.c_str(), 0755);
    ::chmod(m_root.c_str(), 0755);
    if (::chown(m_root.c_str(), pg->pw_uid, pg->pw_gid) != 0 || ::chown(m_socket_dir.c_str(), pg->pw_uid, pg->pw_gid) != 0)
        return make_error(ErrorCode::Internal, "chown to postgres failed (the tests run as root to start PostgreSQL)");
    TRY(as_postgres({m_bin + "/initdb", "-D", m_data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"}, "initdb"));
    std::ofstream conf(m_data + "/postgresql.conf", std::ios::app);
    // Unix socket only; fsync off: the tests' data need not survive a machine crash.
    conf << "listen_addresses = ''\nunix_socket_directories = '" << m_socket_dir << "'\nfsync = off\n"
         << "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n";
    return ok_status();
}

PgTestServer::~PgTestServer() {
    if (m_running) (void)as_postgres({m_bin + "/pg_ctl", "-D", m_data, "-m", "immediate", "-w", "stop"}, "pg_ctl stop");
    if (!m_root.empty()) (void)remove_tree(m_root);
}

Status PgTestServer::start() {
    TRY(as_postgres({m_bin + "/pg_ctl", "-D", m_data, "-l", m_log, "-w", "-t", "60", "start"}, "pg_ctl start"));
    m_running = true;
    return ok_status();
}

Status PgTestServer::stop() {
    TRY(as_postgres({m_bin + "/pg_ctl", "-D", m_data, "-m", "fast", "-w", "stop"}, "pg_ctl stop"));
    m_running = false;
    return ok_status();
}

std::string PgTestServer::url_for(const std::string& database) const {
    return "postgresql://postgres@/" + database + "?host=" + m_socket_dir;
}

Result<std::string> PgTestServer::fresh_database() {
    auto admin = TRY(Db::open(url_for("postgres")));
    std::string name = "kiln_test_" + std::to_string(++m_databases);
    auto s = admin->session();
    TRY(s.exec("CREATE DATABASE " + name));
    return url_for(name);
}

std::string engine_test_name(const ::testing::TestParamInfo<Engine>& info) {
    return info.param == Engine::Sqlite ? "Sqlite" : "Postgres";
}

void EngineTest::SetUp() {
    if (engine() == Engine::Sqlite) {
        m_store = dir() + "/kilnd.db";
        return;
    }
    if (!PgTestServer::get()) {
        const char* ci = std::getenv("CI");
        if (ci && std::string(ci) == "true") GTEST_FAIL() << "PostgreSQL did not start (CI=true): " << PgTestServer::start_error();
        GTEST_SKIP() << "PostgreSQL did not start: " << PgTestServer::start_error();
    }
    m_store = another_store();
    ASSERT_FALSE(m_store.empty());
}

std::string EngineTest::another_store() {
    if (engine() == Engine::Sqlite) return dir() + "/more-" + std::to_string(++m_more) + ".db";
    auto url = PgTestServer::get()->fresh_database();
    if (!url.ok()) {
        ADD_FAILURE() << "CREATE DATABASE: " << url.error().message;
        return "";
    }
    return *url;
}

}  // namespace kiln::test
