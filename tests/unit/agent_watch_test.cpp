// The agent's watch op over a socketpair: inotify events as Data frames, recursion, Detach, the
// watched folder going away, the bounded queue's overflow event, and hostile requests.
#include <sys/inotify.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "agent/dir_watch.h"
#include "agent_test_harness.h"

using namespace kiln;
using namespace kiln::agent;
using namespace kiln::agent::testing;

namespace {

struct Event {
    std::string name;
    std::string type;
    bool operator==(const Event& o) const { return name == o.name && type == o.type; }
};

std::ostream& operator<<(std::ostream& os, const Event& e) { return os << e.type << " " << e.name; }

// Opens a watch stream and waits for its Started frame.
uint32_t start_watch(AgentHarness& agent, const std::string& path, bool recursive) {
    uint32_t stream = agent.next_stream();
    agent.request(stream, proto::op::kWatch, json{{"path", path}, {"recursive", recursive}});
    auto started = agent.next_frame(stream);
    EXPECT_TRUE(started && started->type == FrameType::Started) << (started ? started->payload : "no frame");
    return stream;
}

// Reads events until `want` has been seen (in any order among others) or the time is up.
std::vector<Event> events_until(AgentHarness& agent, uint32_t stream, const std::vector<Event>& want) {
    std::vector<Event> seen;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    auto all_seen = [&] {
        for (const auto& w : want)
            if (std::find(seen.begin(), seen.end(), w) == seen.end()) return false;
        return true;
    };
    while (!all_seen() && std::chrono::steady_clock::now() < deadline) {
        auto f = agent.next_frame(stream, std::chrono::milliseconds(500));
        if (!f) continue;
        EXPECT_EQ(f->type, FrameType::Data) << f->payload;
        if (f->type != FrameType::Data) break;
        auto event = proto::parse_watch_event(json::parse(f->payload));
        EXPECT_TRUE(event.ok()) << f->payload;
        if (event.ok()) seen.push_back(Event{event->name, event->type});
    }
    for (const auto& w : want) EXPECT_NE(std::find(seen.begin(), seen.end(), w), seen.end()) << "missing: " << w;
    return seen;
}

void make_file(const std::string& path, const std::string& content = "x") {
    std::ofstream(path, std::ios::binary) << content;
}

// This process's open inotify instances.
size_t inotify_fds() {
    size_t n = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        auto target = std::filesystem::read_symlink(entry.path(), ec);
        if (!ec && target.string() == "anon_inode:inotify") ++n;
    }
    return n;
}

}  // namespace

TEST(AgentWatch, ReportsCreateWriteChmodRenameRemoveAndEndsOnDetach) {
    TempDir dir;
    AgentHarness agent;
    uint32_t stream = start_watch(agent, dir.path(), false);
    make_file(dir / "f.txt", "one");
    { std::ofstream(dir / "f.txt", std::ios::app) << "two"; }
    ASSERT_EQ(chmod((dir / "f.txt").c_str(), 0600), 0);
    ASSERT_EQ(rename((dir / "f.txt").c_str(), (dir / "g.txt").c_str()), 0);
    ASSERT_EQ(unlink((dir / "g.txt").c_str()), 0);
    events_until(agent, stream,
                 {{"f.txt", "create"}, {"f.txt", "write"}, {"f.txt", "chmod"}, {"f.txt", "rename"}, {"g.txt", "create"},
                  {"g.txt", "remove"}});

    agent.send(FrameType::Detach, stream);
    auto end = agent.collect(stream);
    EXPECT_TRUE(end.ok()) << end.body.dump();
    EXPECT_EQ(end.body, json::object());
    // The stream is free again; the agent still serves.
    EXPECT_TRUE(agent.call(proto::op::kPing).ok());
}

TEST(AgentWatch, NonRecursiveSeesOnlyItsOwnEntriesRecursiveSeesNewFoldersToo) {
    TempDir dir;
    AgentHarness agent;
    ASSERT_EQ(mkdir((dir / "old").c_str(), 0755), 0);
    uint32_t flat = start_watch(agent, dir.path(), false);
    uint32_t deep = start_watch(agent, dir.path(), true);

    make_file(dir / "old/in-old.txt");
    ASSERT_EQ(mkdir((dir / "new").c_str(), 0755), 0);
    events_until(agent, deep, {{"old/in-old.txt", "create"}, {"new", "create"}});
    make_file(dir / "new/in-new.txt");
    ASSERT_EQ(mkdir((dir / "new/sub").c_str(), 0755), 0);
    make_file(dir / "new/sub/deep.txt");
    events_until(agent, deep, {{"new/in-new.txt", "create"}, {"new/sub/deep.txt", "create"}});

    make_file(dir / "top.txt");
    auto flat_events = events_until(agent, flat, {{"new", "create"}, {"top.txt", "create"}});
    for (const auto& e : flat_events) EXPECT_EQ(e.name.find('/'), std::string::npos) << e;

    agent.send(FrameType::Detach, flat);
    agent.send(FrameType::Detach, deep);
    EXPECT_TRUE(agent.collect(flat).ok());
    EXPECT_TRUE(agent.collect(deep).ok());
}

TEST(AgentWatch, EndsWithAnErrorWhenTheFolderGoesAway) {
    TempDir dir;
    AgentHarness agent;
    ASSERT_EQ(mkdir((dir / "w").c_str(), 0755), 0);
    uint32_t stream = start_watch(agent, dir / "w", true);
    make_file(dir / "w/f");
    ASSERT_EQ(unlink((dir / "w/f").c_str()), 0);
    ASSERT_EQ(rmdir((dir / "w").c_str()), 0);
    auto end = agent.collect(stream);
    EXPECT_EQ(end.error_code(), ErrorCode::NotFound) << end.body.dump();
    EXPECT_NE(end.body["message"].get<std::string>().find("the watched folder"), std::string::npos);
    // The events before the end still came, in order.
    std::vector<std::string> data;
    for (const auto& f : end.frames)
        if (f.type == FrameType::Data) data.push_back(f.payload);
    ASSERT_GE(data.size(), 2u);
    EXPECT_EQ(json::parse(data[0]), (json{{"name", "f"}, {"type", "create"}}));
}

TEST(AgentWatch, BadRequestsAndFramesAreRefused) {
    TempDir dir;
    AgentHarness agent;
    make_file(dir / "file");
    EXPECT_EQ(agent.call(proto::op::kWatch, json{{"path", dir / "none"}}).error_code(), ErrorCode::NotFound);
    EXPECT_EQ(agent.call(proto::op::kWatch, json{{"path", dir / "file"}}).error_code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call(proto::op::kWatch, json{{"path", "relative"}}).error_code(), ErrorCode::InvalidArgument);
    EXPECT_EQ(agent.call(proto::op::kWatch, json{{"path", dir.path()}, {"recursive", "yes"}}).error_code(),
              ErrorCode::InvalidArgument);

    uint32_t stream = start_watch(agent, dir.path(), false);
    agent.send(FrameType::Stdin, stream, "nonsense");
    EXPECT_EQ(agent.collect(stream).error_code(), ErrorCode::InvalidArgument);
    // A Detach for a stream that is not a watch (or has ended) is dropped quietly.
    agent.send(FrameType::Detach, 999);
    agent.send(FrameType::Detach, stream);
    EXPECT_TRUE(agent.call(proto::op::kPing).ok());
    EXPECT_FALSE(agent.next_frame(999, std::chrono::milliseconds(200)));
}

TEST(AgentWatch, ADisconnectEndsTheWatch) {
    TempDir dir;
    size_t before = inotify_fds();
    {
        AgentHarness agent;
        start_watch(agent, dir.path(), true);
        start_watch(agent, dir.path(), false);
        EXPECT_EQ(inotify_fds(), before + 2);
        EXPECT_EQ(agent.stop(), RunEnd::Disconnected);
        // The server outlives the connection here (as PID 1 does): its watches must not.
        EXPECT_EQ(inotify_fds(), before);
    }
}

// A host that stops reading: the agent's outbox fills to its back-pressure mark, the watch's
// queue to kMaxQueued, and past that events are dropped and an overflow event said, once.
TEST(AgentWatch, AHostThatDoesNotReadGetsAnOverflowEventNotUnboundedMemory) {
    TempDir dir;
    AgentHarness agent;
    uint32_t stream = start_watch(agent, dir.path(), false);
    // Each create+close is one event of ~250 bytes (long names): 16000 are enough for the outbox's
    // 1 MiB, the socket's buffer and the 4096 queued, with room to spare.
    constexpr int kFiles = 16000;
    const std::string padding(200, 'n');
    for (int i = 0; i < kFiles; ++i) {
        int fd = open((dir / (padding + std::to_string(i))).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        ASSERT_GE(fd, 0);
        close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the agent takes the last events in
    size_t creates = 0, overflows = 0;
    for (;;) {
        auto f = agent.next_frame(stream, std::chrono::milliseconds(overflows ? 500 : 10000));
        if (!f) break;
        ASSERT_EQ(f->type, FrameType::Data);
        auto event = json::parse(f->payload);
        if (event["type"] == "overflow") ++overflows;
        else if (event["type"] == "create") ++creates;
    }
    // One per loss: on a loaded machine the kernel's own queue may overflow as well.
    EXPECT_GE(overflows, 1u);
    EXPECT_LE(overflows, 3u);
    EXPECT_LT(creates, size_t(kFiles));
    EXPECT_GT(creates, DirWatch::kMaxQueued);
    // Still watching, and in order again.
    make_file(dir / "after");
    auto after = events_until(agent, stream, {{"after", "create"}});
    EXPECT_EQ(after.front(), (Event{"after", "create"}));
    agent.send(FrameType::Detach, stream);
    EXPECT_TRUE(agent.collect(stream).ok());
}

// The bounded queue: past kMaxQueued, events are dropped and one overflow event comes after the
// ones kept; nothing is queued between the loss and the overflow event.
TEST(AgentWatch, QueueOverflowSaysSoOnce) {
    TempDir dir;
    auto watch = DirWatch::start(proto::WatchRequest{dir.path(), false});
    ASSERT_TRUE(watch.ok());
    // Feed synthetic inotify records for the root watch (wd 1, the first one).
    auto record = [](int wd, uint32_t mask, const std::string& name) {
        std::string buf(sizeof(struct inotify_event) + 16, '\0');
        struct inotify_event ev {};
        ev.wd = wd;
        ev.mask = mask;
        ev.len = 16;
        std::memcpy(buf.data(), &ev, sizeof ev);
        std::memcpy(buf.data() + sizeof ev, name.data(), std::min<size_t>(name.size(), 15));
        return buf;
    };
    std::string batch;
    for (size_t i = 0; i < DirWatch::kMaxQueued + 10; ++i) batch += record(1, IN_CREATE, "f" + std::to_string(i));
    (*watch)->take_events(batch.data(), batch.size());
    size_t created = 0;
    bool overflow = false;
    while (auto e = (*watch)->next_event()) {
        EXPECT_FALSE(overflow) << "an event after the overflow event";
        if (e->type == "overflow") overflow = true;
        else ++created;
    }
    EXPECT_EQ(created, DirWatch::kMaxQueued);
    EXPECT_TRUE(overflow);
    // The kernel's own overflow, and garbage: a truncated record, an unknown wd.
    std::string more = record(-1, IN_Q_OVERFLOW, "") + record(77, IN_CREATE, "x");
    more += record(1, IN_CREATE, "half").substr(0, 20);
    (*watch)->take_events(more.data(), more.size());
    auto e = (*watch)->next_event();
    ASSERT_TRUE(e);
    EXPECT_EQ(e->type, "overflow");
    EXPECT_FALSE((*watch)->next_event());
}
