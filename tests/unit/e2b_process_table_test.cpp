// The host side of envd's processes (src/kilnd/e2b/envd_process_table.h) without a VM: watchers'
// queues and their cap, stdin's pipe, and the table's lookups. The exec itself is covered by the
// SDK tests in tests/e2b (real kilnd, real VMs).
#include <gtest/gtest.h>

#include <unistd.h>

#include "kilnd/e2b/envd_process_table.h"

using namespace kiln;
using namespace kiln::daemon::e2b;
using namespace std::chrono_literals;

namespace {
ProcessOutput data(std::string bytes) { return ProcessOutput{ProcessOutput::Kind::Stdout, std::move(bytes), std::nullopt, std::nullopt}; }
}  // namespace

TEST(EnvdProcessTable, EveryWatcherGetsEveryEventInOrder) {
    RunningProcess p("sb-1", ProcessConfig{"/bin/bash", {}, {}, std::nullopt}, std::nullopt, false);
    auto a = p.watch();
    auto b = p.watch();
    p.started(3, 42);
    p.publish(data("one"));
    p.unwatch(b);
    p.publish(data("two"));
    EXPECT_EQ(p.pid(), 42);
    EXPECT_EQ(p.stream(), 3u);
    EXPECT_EQ(a->next(10ms)->kind, ProcessOutput::Kind::Start);
    EXPECT_EQ(a->next(10ms)->data, "one");
    EXPECT_EQ(a->next(10ms)->data, "two");
    EXPECT_FALSE(a->next(10ms));
    EXPECT_EQ(b->next(10ms)->kind, ProcessOutput::Kind::Start);
    EXPECT_EQ(b->next(10ms)->data, "one");
    EXPECT_FALSE(b->next(10ms));  // it left before "two"
}

TEST(EnvdProcessTable, ASlowWatcherLosesOutputButNeverTheEnd) {
    ProcessWatch w;
    std::string mib(1024 * 1024, 'x');
    for (int i = 0; i < 10; ++i) w.push(data(mib));
    w.push(ProcessOutput{ProcessOutput::Kind::End, {}, proto::ExecResult{}, std::nullopt});
    int chunks = 0;
    for (;;) {
        auto e = w.next(10ms);
        ASSERT_TRUE(e);
        if (e->kind == ProcessOutput::Kind::End) break;
        ++chunks;
    }
    EXPECT_EQ(chunks, int(ProcessWatch::kMaxQueuedBytes / mib.size()));
}

TEST(EnvdProcessTable, StdinIsAPipeUntilClosed) {
    RunningProcess p("sb-1", ProcessConfig{"cat", {}, {}, std::nullopt}, std::nullopt, true);
    auto fd = p.open_stdin();
    ASSERT_TRUE(fd.ok());
    ASSERT_TRUE(p.write_stdin("hello").ok());
    char buf[16];
    ASSERT_EQ(::read(*fd, buf, sizeof buf), 5);
    EXPECT_EQ(std::string(buf, 5), "hello");
    ASSERT_TRUE(p.close_stdin().ok());
    EXPECT_EQ(::read(*fd, buf, sizeof buf), 0);  // EOF
    EXPECT_FALSE(p.write_stdin("late").ok());

    RunningProcess no_stdin("sb-1", ProcessConfig{"cat", {}, {}, std::nullopt}, std::nullopt, false);
    EXPECT_EQ(*no_stdin.open_stdin(), -1);
    auto refused = no_stdin.write_stdin("x");
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.error().message.find("stdin: true"), std::string::npos);
}

TEST(EnvdProcessTable, LookupsAreBySandbox) {
    ProcessTable table;
    auto p = std::make_shared<RunningProcess>("sb-1", ProcessConfig{"sleep", {"9"}, {}, std::nullopt}, "srv", false);
    p->started(1, 100);
    table.add(p);
    EXPECT_EQ(table.by_pid("sb-1", 100), p);
    EXPECT_EQ(table.by_tag("sb-1", "srv"), p);
    EXPECT_EQ(table.by_pid("sb-2", 100), nullptr);  // another sandbox's pid 100 is not this one
    EXPECT_EQ(table.by_tag("sb-2", "srv"), nullptr);
    EXPECT_EQ(table.list("sb-1").size(), 1u);
    table.remove(p);
    EXPECT_TRUE(table.list("sb-1").empty());
}
