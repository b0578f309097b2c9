// PgListener against a real PostgreSQL of the test's own (Debian's initdb and pg_ctl run as the
// postgres user, a unix socket in a temporary folder; no TCP port, no system service): a NOTIFY on
// its channel calls back, another channel's does not, and after PostgreSQL restarts the listener
// connects again by itself and hears the next NOTIFY.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "base/child_process.h"
#include "base/pg_listener.h"
#include "daemon_test_dir.h"

namespace kiln {
namespace {

std::string pg_bin() {
    for (int v = 20; v >= 12; --v) {
        std::string dir = "/usr/lib/postgresql/" + std::to_string(v) + "/bin";
        if (std::filesystem::exists(dir + "/initdb")) return dir;
    }
    return "";
}

// One PostgreSQL cluster in a folder owned by postgres, listening on a socket inside it only.
class PgCluster {
public:
    Status start_new() {
        m_bin = pg_bin();
        if (m_bin.empty()) return make_error(ErrorCode::Internal, "PostgreSQL is not installed (scripts/install-deps.sh)");
        char tmpl[] = "/tmp/kiln-pg-unit-XXXXXX";
        if (!::mkdtemp(tmpl)) return make_error(ErrorCode::Internal, "mkdtemp");
        m_root = tmpl;
        TRY(as_postgres({"true"}));  // the user exists
        TRY(run({"chown", "postgres:postgres", m_root}));
        TRY(as_postgres({m_bin + "/initdb", "-D", m_root + "/data", "-A", "trust", "-U", "postgres"}));
        return start();
    }
    Status start() {
        return as_postgres({m_bin + "/pg_ctl", "-D", m_root + "/data", "-l", m_root + "/log", "-w", "-o",
                            "-c listen_addresses='' -c unix_socket_directories='" + m_root + "' -c fsync=off", "start"});
    }
    Status stop() { return as_postgres({m_bin + "/pg_ctl", "-D", m_root + "/data", "-m", "fast", "-w", "stop"}); }
    Status notify(const std::string& channel) {
        return as_postgres({m_bin + "/psql", "-h", m_root, "-U", "postgres", "-d", "postgres", "-c", "NOTIFY " + channel});
    }
    std::string url() const { return "host=" + m_root + " user=postgres dbname=postgres connect_timeout=2"; }
    ~PgCluster() {
        if (m_root.empty()) return;
        (void)run({"runuser", "-u", "postgres", "--", m_bin + "/pg_ctl", "-D", m_root + "/data", "-m", "immediate", "-w", "stop"});
        std::error_code ec;
        std::filesystem::remove_all(m_root, ec);
    }

private:
    static Status run(std::vector<std::string> argv) {
        auto out = run_and_capture(argv, Millis(120000));
        if (!out.ok()) return out.error();
        if (!out->status.success()) return make_error(ErrorCode::Internal, argv[0] + ": " + out->output);
        return ok_status();
    }
    Status as_postgres(std::vector<std::string> argv) {
        argv.insert(argv.begin(), {"runuser", "-u", "postgres", "--"});
        return run(std::move(argv));
    }
    std::string m_bin, m_root;
};

bool wait_for(const std::function<bool()>& done, int ms) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < until) {
        if (done()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return done();
}

TEST(PgListener, HearsItsChannelAndReconnectsAfterARestart) {
    if (::geteuid() != 0) GTEST_SKIP() << "starting PostgreSQL as the postgres user needs root";
    PgCluster pg;
    auto started = pg.start_new();
    ASSERT_TRUE(started.ok()) << started.error().to_string();
    std::atomic<int> heard{0};
    auto listener = PgListener::start(pg.url(), "kiln_ci_queue", [&] { ++heard; });
    ASSERT_TRUE(listener.ok()) << listener.error().to_string();
    // The first connect calls back once (what was sent before it listened is not known).
    ASSERT_TRUE(wait_for([&] { return (*listener)->connects() == 1 && heard.load() == 1; }, 10000)) << heard.load();

    ASSERT_TRUE(pg.notify("other_channel").ok());
    ASSERT_TRUE(pg.notify("kiln_ci_queue").ok());
    ASSERT_TRUE(wait_for([&] { return heard.load() == 2; }, 5000)) << "the NOTIFY was not heard: " << heard.load();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_EQ(heard.load(), 2) << "another channel's NOTIFY was heard";

    // PostgreSQL restarts: the listener connects again by itself and hears the next NOTIFY.
    ASSERT_TRUE(pg.stop().ok());
    ASSERT_TRUE(pg.start().ok());
    ASSERT_TRUE(wait_for([&] { return (*listener)->connects() == 2; }, 15000)) << "no reconnect";
    const int before = heard.load();  // 3: the reconnect's own call
    ASSERT_TRUE(pg.notify("kiln_ci_queue").ok());
    ASSERT_TRUE(wait_for([&] { return heard.load() == before + 1; }, 5000));
}

TEST(PgListener, RefusesAChannelThatIsNotAPlainIdentifier) {
    for (const char* bad : {"", "Upper", "a;drop", "1abc", "a b", "\"q\""})
        EXPECT_FALSE(PgListener::start("host=/nonexistent", bad, [] {}).ok()) << bad;
}

}  // namespace
}  // namespace kiln
