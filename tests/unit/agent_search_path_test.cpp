// The agent's reading of PATH, shared by the exec plan (execvp's order) and the lookup cache.
#include <gtest/gtest.h>

#include "agent/exec_child.h"

using namespace kiln::agent;

TEST(AgentSearchPath, SplitsInOrderAndKeepsEmptyEntriesAsTheCurrentDirectory) {
    using Dirs = std::vector<std::string>;
    EXPECT_EQ(split_search_path(kDefaultPath), (Dirs{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}));
    EXPECT_EQ(split_search_path("/a::b:"), (Dirs{"/a", "", "b", ""}));
    EXPECT_EQ(split_search_path(":/a"), (Dirs{"", "/a"}));
    EXPECT_EQ(split_search_path(""), (Dirs{""}));
}
