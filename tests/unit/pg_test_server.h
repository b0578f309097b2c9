// A real PostgreSQL for the store unit tests: one server per test binary, started on first use
// from Debian's binaries (initdb and pg_ctl under /usr/lib/postgresql/15/bin, run as the postgres
// user via runuser) in a temporary directory, listening only on a unix socket inside it, stopped
// and removed when the binary exits. Each test gets a database of its own (CREATE DATABASE).
//
// EngineTest runs a test on both engines (TEST_P + INSTANTIATE_ENGINE_TESTS): store_spec() is a SQLite
// file in the test's own folder, or a fresh PostgreSQL database's URL. When PostgreSQL cannot
// start the PostgreSQL half is skipped, unless CI=true, where it fails (a CI machine must test it).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "base/result.h"
#include "daemon_test_dir.h"

namespace kiln::test {

class PgTestServer {
public:
    // The binary's server (started now if not yet), or null with start_error() saying why.
    static PgTestServer* get();
    static const std::string& start_error();

    ~PgTestServer();
    // A new, empty database, by URL.
    Result<std::string> fresh_database();
    std::string url_for(const std::string& database) const;
    // Stop (fast: clients are disconnected, as an operator's restart does) and start again, for
    // the tests of surviving a restart. The databases are kept.
    Status stop();
    Status start();

private:
    PgTestServer() = default;
    Status init();

    std::string m_root, m_bin, m_data, m_socket_dir, m_log;
    int m_databases = 0;
    bool m_running = false;
};

enum class Engine { Sqlite, Postgres };
std::string engine_test_name(const ::testing::TestParamInfo<Engine>& info);

// A test run once per engine; store_spec() is its store (see the file comment).
class EngineTest : public ::testing::TestWithParam<Engine> {
protected:
    void SetUp() override;
    const std::string& store_spec() const { return m_store; }
    // A second, independent store of the same engine.
    std::string another_store();
    Engine engine() const { return GetParam(); }
    const std::string& dir() const { return m_dir.path(); }

private:
    TempDir m_dir;
    std::string m_store;
    int m_more = 0;
};

}  // namespace kiln::test

// After the TEST_Ps of `suite` (a class derived from kiln::test::EngineTest, or EngineTest's alias).
#define INSTANTIATE_ENGINE_TESTS(suite)                                                                          \
    INSTANTIATE_TEST_SUITE_P(Engines, suite,                                                                     \
                             ::testing::Values(::kiln::test::Engine::Sqlite, ::kiln::test::Engine::Postgres), \
                             ::kiln::test::engine_test_name)
