// The sandbox lifecycle: every pair of states against the table of allowed moves, written out
// here independently of can_transition, and what a refused move leaves behind.
#include <gtest/gtest.h>

#include <set>
#include <utility>

#include "daemon/sandboxes/sandbox_state.h"

using namespace kiln::daemon;

namespace {

using S = SandboxState;

// The lifecycle as docs/kilnd.md and api/openapi.yaml describe it.
const std::set<std::pair<S, S>> kAllowed = {
    {S::Creating, S::Running}, {S::Creating, S::Failed},  {S::Creating, S::Lost},
    {S::Creating, S::Deleting}, {S::Creating, S::Deleted},  // a delete that came while creating
    {S::Running, S::Deleting}, {S::Running, S::Expired},  {S::Running, S::Lost},
    {S::Deleting, S::Deleted}, {S::Deleting, S::Lost},
    // Pause and resume (docs/pause.md).
    {S::Running, S::Pausing},
    {S::Pausing, S::Paused}, {S::Pausing, S::Running}, {S::Pausing, S::Deleting}, {S::Pausing, S::Lost},
    {S::Paused, S::Resuming}, {S::Paused, S::Deleted}, {S::Paused, S::Lost},
    {S::Resuming, S::Running}, {S::Resuming, S::Paused}, {S::Resuming, S::Deleted}, {S::Resuming, S::Deleting},
    {S::Resuming, S::Lost},
};

}  // namespace

TEST(SandboxLifecycle, EveryPairOfStatesFollowsTheTable) {
    int allowed = 0;
    for (S from : kAllSandboxStates) {
        for (S to : kAllSandboxStates) {
            bool want = kAllowed.count({from, to}) > 0;
            std::string pair = std::string(state_name(from)) + " -> " + state_name(to);
            EXPECT_EQ(can_transition(from, to), want) << pair;
            SandboxInfo info = SandboxInfo::from_row(from);
            info.id = "sb-000000000001";
            EXPECT_EQ(info.move_to(to), want) << pair;
            // A refused move leaves the state as it was; an allowed one lands on `to`.
            EXPECT_EQ(info.state(), want ? to : from) << pair;
            allowed += want;
        }
    }
    EXPECT_EQ(allowed, static_cast<int>(kAllowed.size()));
}

TEST(SandboxLifecycle, ANewRecordIsCreatingAndFinishedStatesGoNowhere) {
    SandboxInfo fresh;
    EXPECT_EQ(fresh.state(), S::Creating);
    for (S final_state : {S::Deleted, S::Expired, S::Lost, S::Failed}) {
        for (S to : kAllSandboxStates) {
            SandboxInfo info = SandboxInfo::from_row(final_state);
            EXPECT_FALSE(info.move_to(to)) << state_name(final_state) << " -> " << state_name(to);
            EXPECT_EQ(info.state(), final_state);
        }
    }
}

TEST(SandboxLifecycle, FromRowKeepsEveryOtherField) {
    SandboxInfo fields;
    fields.id = "sb-00000000000a";
    fields.error = "why";
    fields.qemu_pid = 42;
    SandboxInfo info = SandboxInfo::from_row(S::Expired, fields);
    EXPECT_EQ(info.state(), S::Expired);
    EXPECT_EQ(info.id, "sb-00000000000a");
    EXPECT_EQ(info.error, "why");
    EXPECT_EQ(info.qemu_pid, 42);
}

TEST(SandboxLifecycle, PausedIsNeitherLiveNorEnded) {
    EXPECT_FALSE(is_live(S::Paused));
    EXPECT_FALSE(is_ended(S::Paused));
    for (S s : {S::Creating, S::Running, S::Pausing, S::Resuming}) EXPECT_TRUE(is_live(s)) << state_name(s);
    for (S s : {S::Deleted, S::Expired, S::Lost, S::Failed}) EXPECT_TRUE(is_ended(s)) << state_name(s);
}

TEST(SandboxLifecycle, StateNamesRoundTrip) {
    for (S s : kAllSandboxStates) EXPECT_EQ(parse_state(state_name(s)), s);
    EXPECT_FALSE(parse_state("zombie"));
    EXPECT_FALSE(parse_state(""));
}
