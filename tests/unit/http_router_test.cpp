// The pieces of kilnd's HTTP server that need no socket: the route table, path and query
// decoding, the per-token caps and the stream queue between a producer thread and its connection.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "kilnd/http/http_message.h"
#include "kilnd/http/json_render.h"
#include "kilnd/http/router.h"
#include "kilnd/http/stream_channel.h"
#include "kilnd/http/token_limiter.h"

using namespace kiln::daemon::http;

TEST(HttpRouter, FirstMatchingRouteOfTheMethodWithItsCapturesAndLimit) {
    Router router(1024);
    int which = 0;
    router.Get("/v1/sandboxes/([^/]+)", [&](const Request&, Response&) { which = 1; });
    router.Put("/v1/sandboxes/([^/]+)/files", [&](const Request&, Response&) { which = 2; }, 1 << 20);
    router.Get("/v1/sandboxes/([^/]+)/files", [&](const Request&, Response&) { which = 3; });
    router.Get("/v1/jobs/([^/]+)/artifacts/(.+)", [&](const Request&, Response&) { which = 4; });

    std::smatch m;
    std::string path = "/v1/sandboxes/sb-1";
    const Route* r = router.match("GET", path, m);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(m[1].str(), "sb-1");
    EXPECT_EQ(r->max_body, 1024u);  // the default: the JSON limit
    Request req;
    Response res;
    r->handler.fn(req, res);
    EXPECT_EQ(which, 1);

    std::string files = "/v1/sandboxes/sb-1/files";
    r = router.match("PUT", files, m);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->max_body, 1u << 20);
    r = router.match("GET", files, m);
    ASSERT_NE(r, nullptr);
    r->handler.fn(req, res);
    EXPECT_EQ(which, 3);

    std::string artifact = "/v1/jobs/job-1/artifacts/out/a b.txt";
    r = router.match("GET", artifact, m);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(m[2].str(), "out/a b.txt");

    // The whole path must match, and the method.
    std::string longer = "/v1/sandboxes/sb-1/nothing";
    EXPECT_EQ(router.match("GET", longer, m), nullptr);
    EXPECT_EQ(router.match("DELETE", path, m), nullptr);
    EXPECT_EQ(router.match("get", path, m), nullptr);
}

TEST(HttpRouter, AuthedFlagAndEventLoopRoutes) {
    Router router(1024);
    router.GetOnEventLoop("/healthz", [](const Request&, Response& res) { res.status = 200; });
    router.Get("/metrics", Handler([](const Request&, Response&) {}, true));
    std::smatch m;
    std::string healthz = "/healthz", metrics = "/metrics";
    const Route* h = router.match("GET", healthz, m);
    ASSERT_NE(h, nullptr);
    EXPECT_TRUE(h->on_event_loop);
    EXPECT_FALSE(h->handler.authenticated);
    const Route* mt = router.match("GET", metrics, m);
    ASSERT_NE(mt, nullptr);
    EXPECT_FALSE(mt->on_event_loop);
    EXPECT_TRUE(mt->handler.authenticated);
}

TEST(HttpMessage, PercentDecodingAndQueries) {
    EXPECT_EQ(percent_decode("/a%2Fb%20c", false), "/a/b c");
    EXPECT_EQ(percent_decode("a+b", false), "a+b");
    EXPECT_EQ(percent_decode("a+b", true), "a b");
    // Bad or cut escapes stay as they are.
    EXPECT_EQ(percent_decode("%zz%4", true), "%zz%4");
    EXPECT_EQ(percent_decode("%", true), "%");
    EXPECT_EQ(percent_decode("%00", true), std::string("\0", 1));

    Params p = parse_query("path=%2Ftmp%2Fx&recursive=true&metadata.repo=a%2Fb&&flag&k=1&k=2&sp=a+b");
    EXPECT_EQ(p.find("path")->second, "/tmp/x");
    EXPECT_EQ(p.find("recursive")->second, "true");
    EXPECT_EQ(p.find("metadata.repo")->second, "a/b");
    EXPECT_EQ(p.find("flag")->second, "");
    EXPECT_EQ(p.count("k"), 2u);
    EXPECT_EQ(p.find("sp")->second, "a b");

    Request req;
    req.params = p;
    req.headers.emplace("Content-Type", "application/json");
    EXPECT_TRUE(req.has_param("path"));
    EXPECT_FALSE(req.has_param("nope"));
    EXPECT_EQ(req.get_param_value("nope"), "");
    // Header names are case-insensitive.
    EXPECT_EQ(req.get_header_value("content-type"), "application/json");
    EXPECT_TRUE(req.has_header("CONTENT-TYPE"));
    EXPECT_EQ(req.get_header_value("Accept"), "");
}

TEST(HttpTokenLimiter, CapsPerTokenAndKind) {
    TokenLimiter limiter(2, 1);
    EXPECT_TRUE(limiter.try_acquire(1, TokenLimiter::Kind::Request));
    EXPECT_TRUE(limiter.try_acquire(1, TokenLimiter::Kind::Request));
    EXPECT_FALSE(limiter.try_acquire(1, TokenLimiter::Kind::Request));
    // Another token, and another kind, have their own counts.
    EXPECT_TRUE(limiter.try_acquire(2, TokenLimiter::Kind::Request));
    EXPECT_TRUE(limiter.try_acquire(1, TokenLimiter::Kind::Stream));
    EXPECT_FALSE(limiter.try_acquire(1, TokenLimiter::Kind::Stream));
    EXPECT_EQ(limiter.held(1, TokenLimiter::Kind::Request), 2);
    limiter.release(1, TokenLimiter::Kind::Request);
    EXPECT_TRUE(limiter.try_acquire(1, TokenLimiter::Kind::Request));
    limiter.release(1, TokenLimiter::Kind::Request);
    limiter.release(1, TokenLimiter::Kind::Request);
    limiter.release(1, TokenLimiter::Kind::Stream);
    EXPECT_EQ(limiter.held(1, TokenLimiter::Kind::Request), 0);
    EXPECT_EQ(limiter.held(1, TokenLimiter::Kind::Stream), 0);
    // A release too many does not make room beyond the cap.
    limiter.release(1, TokenLimiter::Kind::Stream);
    EXPECT_TRUE(limiter.try_acquire(1, TokenLimiter::Kind::Stream));
    EXPECT_FALSE(limiter.try_acquire(1, TokenLimiter::Kind::Stream));
}

TEST(HttpStreamChannel, WakesAnIdleWriterOnceAndHandsOverInOrder) {
    StreamChannel channel(1024);
    int wakes = 0;
    channel.set_wake([&] { ++wakes; });
    EXPECT_TRUE(channel.write("ab", 2));
    EXPECT_TRUE(channel.write("cd", 2));
    EXPECT_EQ(wakes, 1);  // the writer was woken and is busy until it finds the queue empty
    auto t = channel.take(1 << 20);
    EXPECT_EQ(t.data, "abcd");
    EXPECT_FALSE(t.finished);
    t = channel.take(1 << 20);
    EXPECT_TRUE(t.data.empty());
    EXPECT_FALSE(t.finished);  // now idle
    channel.finish(true);
    EXPECT_EQ(wakes, 2);
    t = channel.take(1 << 20);
    EXPECT_TRUE(t.finished);
    EXPECT_TRUE(t.complete);
}

TEST(HttpStreamChannel, AFullQueueHoldsTheProducerUntilTakenOrGone) {
    StreamChannel channel(8);
    channel.set_wake([] {});
    std::string block(8, 'x');
    ASSERT_TRUE(channel.write(block.data(), block.size()));
    std::atomic<int> state{0};
    std::thread producer([&] {
        state = channel.write("y", 1) ? 1 : 2;  // blocks: the queue is full
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(state.load(), 0) << "the producer was not held back";
    EXPECT_EQ(channel.take(1 << 20).data, block);
    producer.join();
    EXPECT_EQ(state.load(), 1);

    ASSERT_TRUE(channel.write(block.data(), block.size()));
    std::thread second([&] { state = channel.write("z", 1) ? 1 : 2; });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    channel.mark_gone();  // the client left: the producer's write fails instead of waiting
    second.join();
    EXPECT_EQ(state.load(), 2);
    EXPECT_TRUE(channel.gone());
    EXPECT_FALSE(channel.write("w", 1));
}

TEST(HttpErrors, QemuLogTailsAreCutFromWhatClientsSee) {
    std::string vm_gone = "QEMU exited with status 1; qemu.log:\n  qemu: /var/lib/kiln/vms/sb-1/disk.qcow2: error"
                          "; last console lines:\n  [ 1.0] Kernel panic";
    EXPECT_EQ(without_host_logs(vm_gone), "QEMU exited with status 1; last console lines:\n  [ 1.0] Kernel panic");
    EXPECT_EQ(without_host_logs("memory limit reached (OOM); qemu.log:\n  /var/lib/x"), "memory limit reached (OOM)");
    EXPECT_EQ(without_host_logs("no sandbox 'sb-1'"), "no sandbox 'sb-1'");
}
