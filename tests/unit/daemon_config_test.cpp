// kilnd's config: file formats, env, flags, their precedence, and refusals.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "base/db.h"
#include "base/file_util.h"
#include "daemon/config.h"
#include "daemon_test_dir.h"

using namespace kiln;
using namespace kiln::daemon;

TEST(DaemonConfig, Defaults) {
    auto c = load_config("", nullptr, {});
    ASSERT_TRUE(c.ok()) << c.error().to_string();
    EXPECT_EQ(c->listen, "127.0.0.1:7070");
    EXPECT_EQ(c->max_ttl_seconds, 86400);
    EXPECT_EQ(c->default_ttl_seconds, 600);
    EXPECT_EQ(c->on_shutdown, OnShutdown::Destroy);
}

TEST(DaemonConfig, FileFormats) {
    auto json = parse_config_text(R"({"listen": "0.0.0.0:9000", "max_sandboxes": 3, "keep_spare": false})");
    ASSERT_TRUE(json.ok()) << json.error().to_string();
    EXPECT_EQ(json->at("max_sandboxes"), "3");
    EXPECT_EQ(json->at("keep_spare"), "false");
    auto kv = parse_config_text("# comment\n\n listen = 127.0.0.1:1 \nmax_ttl_seconds=60\n");
    ASSERT_TRUE(kv.ok()) << kv.error().to_string();
    EXPECT_EQ(kv->at("listen"), "127.0.0.1:1");
    EXPECT_EQ(kv->at("max_ttl_seconds"), "60");
    EXPECT_FALSE(parse_config_text("{\"listen\": [1]}").ok());
    auto list = parse_config_text(R"({"network_open_allow": ["10.1.0.0/16", "192.168.3.4:3128"]})");
    ASSERT_TRUE(list.ok()) << list.error().to_string();
    EXPECT_EQ(list->at("network_open_allow"), "10.1.0.0/16,192.168.3.4:3128");
    EXPECT_FALSE(parse_config_text("{not json").ok());
    EXPECT_FALSE(parse_config_text("no equals sign").ok());
    auto typo = parse_config_text("max_sandbox=3");
    ASSERT_FALSE(typo.ok());
    EXPECT_NE(typo.error().message.find("max_sandbox"), std::string::npos);
}

TEST(DaemonConfig, PrecedenceFlagsOverEnvOverFileOverDefaults) {
    test::TempDir dir;
    std::string file = dir.path() + "/kilnd.conf";
    ASSERT_TRUE(write_file(file, "listen=127.0.0.1:1111\nmax_sandboxes=5\nmax_memory_mib=1000\non_shutdown=keep\n").ok());
    std::string e1 = "KILN_LISTEN=127.0.0.1:2222", e2 = "KILN_MAX_SANDBOXES=6", e3 = "PATH=/bin";
    char* env[] = {e1.data(), e2.data(), e3.data(), nullptr};
    auto c = load_config(file, env, {{"listen", "127.0.0.1:3333"}});
    ASSERT_TRUE(c.ok()) << c.error().to_string();
    EXPECT_EQ(c->listen, "127.0.0.1:3333");  // flag
    EXPECT_EQ(c->max_sandboxes, 6);          // env over file
    EXPECT_EQ(c->max_memory_mib, 1000);      // file over default
    EXPECT_EQ(c->on_shutdown, OnShutdown::Keep);
    EXPECT_EQ(c->max_ttl_seconds, 86400);    // default
}

TEST(DaemonConfig, RefusesBadValuesNamingTheKey) {
    DaemonConfig c;
    for (auto [key, value] : std::vector<std::pair<std::string, std::string>>{
             {"listen", "nohost"}, {"listen", "h:99999"}, {"max_sandboxes", "-1"}, {"max_sandboxes", "3x"},
             {"max_ttl_seconds", "0"}, {"on_shutdown", "maybe"}, {"data_dir", "relative"}, {"keep_spare", "perhaps"},
             {"accel", "hvf"}, {"nonsense", "1"}, {"network_default", "{\"mode\":\"wide\"}"},
             {"network_default", "open"}, {"ci_network_untrusted", "{\"mode\":\"open\"}"},
             {"network_pool", "10.0.0.0/31"}, {"network_dns", "resolver.example"},
             {"network_open_allow", "169.254.169.254"}, {"network_open_allow", "mirror.internal"},
             {"network_max_connections", "-1"}, {"network_new_connections_per_second", "fast"},
             {"network_new_connection_burst", "0"}}) {
        auto st = apply_config_value(c, key, value);
        ASSERT_FALSE(st.ok()) << key << "=" << value;
        EXPECT_EQ(st.error().code, ErrorCode::InvalidArgument);
        EXPECT_NE(st.error().message.find(key), std::string::npos) << st.error().message;
    }
    ASSERT_TRUE(apply_config_value(c, "ci_network_untrusted", R"({"mode":"allowlist","allow":["192.0.2.7:443"]})").ok());
    EXPECT_EQ(c.ci_network_untrusted.mode, net::NetworkMode::Allowlist);
    ASSERT_TRUE(apply_config_value(c, "network_default", R"({"mode":"open"})").ok());
    EXPECT_EQ(c.network_default.mode, net::NetworkMode::Open);
    EXPECT_EQ(c.network_egress.max_connections, 512u) << "default";
    EXPECT_EQ(c.network_egress.new_connections_per_second, 100u) << "default";
    EXPECT_EQ(c.network_egress.new_connection_burst, 200u) << "default";
    EXPECT_TRUE(c.network_egress.open_allow.empty()) << "default: open reaches the public internet only";
    ASSERT_TRUE(apply_config_value(c, "network_open_allow", "10.1.0.0/16,192.168.3.4:3128").ok());
    EXPECT_EQ(c.network_egress.open_allow, (std::vector<net::AllowRule>{{0x0a010000, 16, 0}, {0xc0a80304, 32, 3128}}));
    ASSERT_TRUE(apply_config_value(c, "network_max_connections", "0").ok());
    EXPECT_EQ(c.network_egress.max_connections, 0u);
    std::string e1 = "KILN_MAX_TTL_SECONDS=60", e2 = "KILN_DEFAULT_TTL_SECONDS=120";
    char* env[] = {e1.data(), e2.data(), nullptr};
    auto bad = load_config("", env, {});
    ASSERT_FALSE(bad.ok()) << "default TTL above the maximum";
    EXPECT_FALSE(load_config("/nonexistent/kilnd.conf", nullptr, {}).ok());
}

TEST(DaemonConfig, TheStoreIsSqliteInTheDataDirOrAPostgresqlUrl) {
    DaemonConfig c;
    c.data_dir = "/srv/kiln";
    EXPECT_EQ(c.store, "sqlite");
    EXPECT_EQ(store_spec(c), "/srv/kiln/kilnd.db");
    for (const char* url : {"postgresql://kiln:pw@db.internal:5432/kiln", "postgres://db/kiln?sslmode=require"}) {
        ASSERT_TRUE(apply_config_value(c, "store", url).ok()) << url;
        EXPECT_EQ(store_spec(c), url);
    }
    for (const char* bad : {"mysql://db/kiln", "/srv/kiln/other.db", "", "postgresql:/db"}) {
        auto st = apply_config_value(c, "store", bad);
        ASSERT_FALSE(st.ok()) << bad;
        EXPECT_NE(st.error().message.find("store"), std::string::npos) << st.error().message;
    }
    // A URL's password never reaches an error or a log.
    auto st = apply_config_value(c, "store", "mysql://kiln:hunter2@db/kiln");
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().message.find("hunter2"), std::string::npos) << st.error().message;
    EXPECT_EQ(redact_store_spec("postgresql://kiln:hunter2@db:5432/kiln"), "postgresql://kiln:***@db:5432/kiln");
    EXPECT_EQ(redact_store_spec("postgresql://kiln@db/kiln"), "postgresql://kiln@db/kiln");
    EXPECT_EQ(redact_store_spec("postgresql:///kiln?host=/run/pg"), "postgresql:///kiln?host=/run/pg");
    ASSERT_TRUE(apply_config_value(c, "fleet_secret_file", "/etc/kiln/fleet").ok());
    EXPECT_FALSE(apply_config_value(c, "fleet_secret_file", "fleet").ok()) << "absolute paths only";
    std::string e1 = "KILN_STORE=postgresql://db/kiln", e2 = "KILN_FLEET_SECRET=s3cret";
    char* env[] = {e1.data(), e2.data(), nullptr};
    auto loaded = load_config("", env, {});
    ASSERT_TRUE(loaded.ok()) << loaded.error().to_string();
    EXPECT_EQ(loaded->store, "postgresql://db/kiln");
    EXPECT_EQ(loaded->fleet_secret, "s3cret");
}

TEST(DaemonConfig, HostIdentityAndHeartbeat) {
    auto c = load_config("", nullptr, {});
    ASSERT_TRUE(c.ok());
    EXPECT_EQ(c->host_heartbeat_seconds, 2);
    EXPECT_EQ(c->host_timeout_seconds, 15);
    // Unset: the machine's hostname (its first label) and http://<listen>.
    ASSERT_TRUE(resolve_host_identity(*c).ok());
    char name[256] = {};
    ASSERT_EQ(::gethostname(name, sizeof name - 1), 0);
    EXPECT_EQ(c->host_name, std::string(name).substr(0, std::string(name).find('.')));
    EXPECT_EQ(c->advertise_url, "http://127.0.0.1:7070");

    auto set = load_config("", nullptr, {{"host_name", "kiln-b.2"}, {"advertise_url", "https://b.internal:7070"},
                                         {"host_heartbeat_seconds", "1"}, {"host_timeout_seconds", "5"}});
    ASSERT_TRUE(set.ok()) << set.error().to_string();
    ASSERT_TRUE(resolve_host_identity(*set).ok());
    EXPECT_EQ(set->host_name, "kiln-b.2");
    EXPECT_EQ(set->advertise_url, "https://b.internal:7070");
    EXPECT_EQ(set->host_timeout_seconds, 5);

    // A name that could not be a path segment or a metrics label, a URL that is not one, and a
    // timeout a live host could pass between two heartbeats are refused, naming the key.
    for (const std::string& bad : std::vector<std::string>{"", "a b", "a/b", "host\"x", std::string(64, 'a')}) {
        auto r = load_config("", nullptr, {{"host_name", bad}});
        ASSERT_FALSE(r.ok()) << bad;
        EXPECT_NE(r.error().message.find("host_name"), std::string::npos);
    }
    EXPECT_FALSE(load_config("", nullptr, {{"advertise_url", "b.internal:7070"}}).ok());
    auto slow = load_config("", nullptr, {{"host_heartbeat_seconds", "10"}, {"host_timeout_seconds", "10"}});
    ASSERT_FALSE(slow.ok());
    EXPECT_NE(slow.error().message.find("host_timeout_seconds"), std::string::npos);
}
