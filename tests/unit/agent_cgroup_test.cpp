// Agent exec tests with per-exec cgroup v2 leaves, on the host's cgroup2 hierarchy (skipped without one).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <set>

#include "agent/cgroup_leaves.h"
#include "agent_test_harness.h"

using namespace kiln;
using namespace kiln::agent;
using namespace kiln::agent::testing;

namespace {

// A fresh folder in the host's cgroup2 hierarchy, removed with its leaves at the end.
class CgroupRoot {
public:
    CgroupRoot() {
        std::ifstream mounts("/proc/mounts");
        std::string source, target, type, rest;
        while (mounts >> source >> target >> type && std::getline(mounts, rest)) {
            if (type != "cgroup2") continue;
            std::string dir = target + "/kiln-agent-test-" + std::to_string(getpid()) + "-" + std::to_string(++s_count);
            if (mkdir(dir.c_str(), 0755) == 0) {
                m_path = dir;
                m_relative = dir.substr(target.size());
                break;
            }
        }
    }
    ~CgroupRoot() {
        if (m_path.empty()) return;
        // Leaves may still be emptying (cgroup.kill is asynchronous).
        for (int i = 0; i < 300; ++i) {
            (void)!system(("rmdir '" + m_path + "'/exec-* 2>/dev/null").c_str());
            if (rmdir(m_path.c_str()) == 0) return;
            usleep(10000);
        }
    }
    bool ok() const { return !m_path.empty(); }
    const std::string& path() const { return m_path; }
    // The root as /proc/self/cgroup shows it ("/kiln-agent-test-...").
    const std::string& relative() const { return m_relative; }

private:
    static inline int s_count = 0;
    std::string m_path;
    std::string m_relative;
};

ServerConfig with_cgroups(const CgroupRoot& root) {
    ServerConfig config;
    config.cgroup_root = root.path();
    return config;
}

// The exec's cgroup v2 path, relative to the test root.
std::string exec_cgroup(AgentHarness& agent, const CgroupRoot& root, const std::string& shell = "") {
    auto reply = agent.call(proto::op::kExec, json{{"shell", shell + "grep '^0::' /proc/self/cgroup"}});
    EXPECT_TRUE(reply.ok()) << reply.body.dump();
    std::string line = reply.out;
    if (!line.empty() && line.back() == '\n') line.pop_back();
    std::string prefix = "0::" + root.relative() + "/";
    if (line.rfind(prefix, 0) != 0) return "not under the root: " + line;
    return line.substr(prefix.size());
}

bool exists(const std::string& path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

}  // namespace

#define REQUIRE_CGROUP2(root) \
    if (!(root).ok()) GTEST_SKIP() << "no writable cgroup2 hierarchy on this host"

TEST(AgentCgroup, EachExecRunsInALeafThatIsReusedOnceEmpty) {
    CgroupRoot root;
    REQUIRE_CGROUP2(root);
    AgentHarness agent(true, with_cgroups(root));
    EXPECT_EQ(exec_cgroup(agent, root), "exec-1");
    EXPECT_EQ(exec_cgroup(agent, root), "exec-1");  // empty again: reused, not remade
    EXPECT_FALSE(exists(root.path() + "/exec-2"));
}

TEST(AgentCgroup, FreezeCreatesTheFirstLeafAhead) {
    // Clones of a snapshot find their first exec's leaf made (mkdir of a cgroup is slow under TCG).
    CgroupRoot root;
    REQUIRE_CGROUP2(root);
    AgentHarness agent(true, with_cgroups(root));
    EXPECT_FALSE(exists(root.path() + "/exec-1"));
    EXPECT_TRUE(agent.call(proto::op::kFreeze).ok());
    EXPECT_TRUE(exists(root.path() + "/exec-1"));
    EXPECT_TRUE(agent.call(proto::op::kFreeze).ok());
    EXPECT_FALSE(exists(root.path() + "/exec-2")) << "one spare is enough";
}

TEST(AgentCgroup, ALeafWithBackgroundProcessesIsNotReusedAndGoesWhenTheyDo) {
    CgroupRoot root;
    REQUIRE_CGROUP2(root);
    AgentHarness agent(true, with_cgroups(root));
    auto reply = agent.call(proto::op::kExec, json{{"shell", "sleep 100 & echo $!"}});
    ASSERT_TRUE(reply.ok());
    pid_t background = std::atoi(reply.out.c_str());
    ASSERT_GT(background, 0);
    EXPECT_EQ(exec_cgroup(agent, root), "exec-2");  // exec-1 still holds the sleep
    kill(background, SIGKILL);
    bool gone = false;
    for (int i = 0; i < 300 && !gone; ++i) {
        usleep(10000);
        exec_cgroup(agent, root);  // every child exit retries the leaves left behind
        gone = !exists(root.path() + "/exec-1");
    }
    EXPECT_TRUE(gone) << "exec-1 was never removed";
}

TEST(AgentCgroup, ConcurrentExecsGetTheirOwnLeaves) {
    CgroupRoot root;
    REQUIRE_CGROUP2(root);
    AgentHarness agent(true, with_cgroups(root));
    std::vector<uint32_t> streams;
    for (int i = 0; i < 4; ++i) {
        uint32_t s = agent.next_stream();
        agent.request(s, proto::op::kExec, json{{"shell", "grep '^0::' /proc/self/cgroup; sleep 0.3"}});
        streams.push_back(s);
    }
    std::set<std::string> leaves;
    for (uint32_t s : streams) {
        auto reply = agent.collect(s);
        ASSERT_TRUE(reply.ok());
        leaves.insert(reply.out);
    }
    EXPECT_EQ(leaves.size(), 4u);
}

TEST(AgentCgroup, TimeoutKillsProcessesThatLeftTheProcessGroup) {
    CgroupRoot root;
    REQUIRE_CGROUP2(root);
    AgentHarness agent(true, with_cgroups(root));
    // setsid: the background sleep is in a session of its own, out of reach of kill(-pgid).
    auto reply = agent.call(proto::op::kExec,
                            json{{"shell", "setsid sleep 100 & echo $!; sleep 100"}, {"timeout_ms", 500}});
    ASSERT_TRUE(reply.ok()) << reply.body.dump();
    EXPECT_TRUE(reply.body["timed_out"].get<bool>());
    pid_t escaped = std::atoi(reply.out.c_str());
    ASSERT_GT(escaped, 0) << reply.out;
    EXPECT_TRUE(wait_gone(escaped)) << "the setsid'd sleep survived the timeout";
}

TEST(AgentCgroup, IsEmptyReadsPopulated) {
    CgroupRoot root;
    REQUIRE_CGROUP2(root);
    UniqueFd events(open((root.path() + "/cgroup.events").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(events);
    EXPECT_TRUE(cgroup_is_empty(events.get()));
    EXPECT_TRUE(cgroup_is_empty(events.get()));  // read again from the start
    EXPECT_FALSE(cgroup_is_empty(-1));
}
