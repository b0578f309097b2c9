// kilnd's request parsers and JSON rendering: every field's type and range as api/openapi.yaml says.
#include <gtest/gtest.h>

#include "kilnd/http/json_render.h"
#include "kilnd/http/request_parsing.h"

using namespace kiln;
using namespace kiln::daemon;
using namespace kiln::daemon::http;

namespace {

template <typename T>
std::string code_of(const Result<T>& r) {
    return r.ok() ? "ok" : code_name(r.error().code);
}

}  // namespace

TEST(DaemonHttpParsing, CreateDefaultsAndFields) {
    auto empty = parse_create("");
    ASSERT_TRUE(empty.ok());
    EXPECT_EQ(empty->template_id, "tiny");
    EXPECT_FALSE(empty->ttl_seconds);

    auto r = parse_create(R"({"template":"snap-0123456789ab","ttl_seconds":60,"metadata":{"repo":"x/y"},
                             "vcpus":1,"memory_mib":256,"env":{"A":"1"}})");
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    EXPECT_EQ(r->template_id, "snap-0123456789ab");
    EXPECT_EQ(r->ttl_seconds, 60);
    EXPECT_EQ(r->metadata.at("repo"), "x/y");
    EXPECT_EQ(r->vcpus, 1u);
    EXPECT_EQ(r->memory_mib, 256u);
    EXPECT_EQ(r->env.at("A"), "1");
}

TEST(DaemonHttpParsing, MalformedBodiesAreMalformedNotInvalid) {
    // 400 (malformed) for bodies that are not a JSON object; 422 (invalid_argument) for the rest.
    for (const char* body : {"{", "[1]", "\"x\"", "nul", "{\"a\":1}}", "\xff\xfe"})
        EXPECT_EQ(code_of(parse_create(body)), "malformed_body") << body;
    EXPECT_EQ(code_of(parse_exec("")), "malformed_body");
    EXPECT_EQ(code_of(parse_patch_ttl("")), "malformed_body");
    EXPECT_EQ(code_of(parse_create(R"({"nope":1})")), "invalid_argument");
}

TEST(DaemonHttpParsing, TtlRange) {
    for (const char* body : {R"({"ttl_seconds":0})", R"({"ttl_seconds":-5})", R"({"ttl_seconds":2147483648})",
                             R"({"ttl_seconds":18446744073709551615})", R"({"ttl_seconds":1e30})",
                             R"({"ttl_seconds":1.5})", R"({"ttl_seconds":"60"})", R"({"ttl_seconds":null})",
                             R"({"ttl_seconds":true})"})
        EXPECT_EQ(code_of(parse_create(body)), "invalid_argument") << body;
    EXPECT_EQ(*parse_create(R"({"ttl_seconds":1})")->ttl_seconds, 1);
    EXPECT_EQ(*parse_create(R"({"ttl_seconds":2147483647})")->ttl_seconds, 2147483647);
    EXPECT_EQ(*parse_patch_ttl(R"({"ttl_seconds":30})"), 30);
    EXPECT_EQ(code_of(parse_patch_ttl("{}")), "invalid_argument");
    EXPECT_EQ(code_of(parse_patch_ttl(R"({"ttl_seconds":30,"x":1})")), "invalid_argument");
}

TEST(DaemonHttpParsing, MetadataLimits) {
    std::string ok = "{\"metadata\":{";
    for (int i = 0; i < 32; ++i) ok += (i ? "," : "") + std::string("\"k") + std::to_string(i) + "\":\"v\"";
    std::string too_many = ok + ",\"k32\":\"v\"}}";
    ok += "}}";
    EXPECT_TRUE(parse_create(ok).ok());
    EXPECT_EQ(code_of(parse_create(too_many)), "invalid_argument");

    std::string key64(64, 'a'), key65(65, 'a'), value256(256, 'v'), value257(257, 'v');
    EXPECT_TRUE(parse_create("{\"metadata\":{\"" + key64 + "\":\"" + value256 + "\"}}").ok());
    EXPECT_EQ(code_of(parse_create("{\"metadata\":{\"" + key65 + "\":\"v\"}}")), "invalid_argument");
    EXPECT_EQ(code_of(parse_create("{\"metadata\":{\"k\":\"" + value257 + "\"}}")), "invalid_argument");
    for (const char* body : {R"({"metadata":{"":"v"}})", R"({"metadata":{"a b":"v"}})", R"({"metadata":{"k":1}})",
                             R"({"metadata":{"k":null}})", R"({"metadata":[]})", R"({"metadata":"k=v"})",
                             R"({"env":{"A":1}})", R"({"env":{"A=B":"1"}})", R"({"env":[]})"})
        EXPECT_EQ(code_of(parse_create(body)), "invalid_argument") << body;
}

TEST(DaemonHttpParsing, CreateTypesChecked) {
    for (const char* body : {R"({"template":1})", R"({"template":""})", R"({"vcpus":0})", R"({"vcpus":-1})",
                             R"({"vcpus":"1"})", R"({"memory_mib":0})", R"({"memory_mib":99999999999})"})
        EXPECT_EQ(code_of(parse_create(body)), "invalid_argument") << body;
}

TEST(DaemonHttpParsing, ExecCmdOrArgv) {
    auto cmd = parse_exec(R"({"cmd":"echo hi","env":{"X":"1"},"cwd":"/tmp","timeout_seconds":2.5,"stdin":"in"})");
    ASSERT_TRUE(cmd.ok()) << cmd.error().to_string();
    EXPECT_EQ(cmd->request.shell, "echo hi");
    EXPECT_TRUE(cmd->request.argv.empty());
    EXPECT_EQ(cmd->request.env.at("X"), "1");
    EXPECT_EQ(cmd->request.cwd, "/tmp");
    EXPECT_EQ(cmd->request.timeout_ms, 2500u);
    EXPECT_TRUE(cmd->request.stdin);
    EXPECT_EQ(cmd->stdin_data, "in");

    auto argv = parse_exec(R"({"argv":["ls","-l"]})");
    ASSERT_TRUE(argv.ok());
    EXPECT_EQ(argv->request.argv, (std::vector<std::string>{"ls", "-l"}));
    EXPECT_FALSE(argv->request.stdin);
    EXPECT_FALSE(argv->stdin_data);
    // 0 or absent: the default of 600 s.
    EXPECT_EQ(argv->request.timeout_ms, 600000u);
    EXPECT_EQ(parse_exec(R"({"cmd":"true","timeout_seconds":0})")->request.timeout_ms, 600000u);

    for (const char* body :
         {R"({})", R"({"cmd":"x","argv":["x"]})", R"({"argv":[]})", R"({"argv":"ls"})", R"({"argv":[1]})",
          R"({"cmd":5})", R"({"cmd":"x","timeout_seconds":-1})", R"({"cmd":"x","timeout_seconds":"5"})",
          R"({"cmd":"x","cwd":"tmp"})", R"({"cmd":"x","cwd":"/a/../b"})", R"({"cmd":"x","stdin":5})",
          R"({"cmd":"x","shell":"y"})", R"({"cmd":"x","env":{"A":["1"]}})"})
        EXPECT_EQ(code_of(parse_exec(body)), "invalid_argument") << body;
    // A NUL inside a JSON string is valid JSON, but cannot reach execve.
    EXPECT_EQ(code_of(parse_exec(R"({"argv":["a\u0000b"]})")), "invalid_argument");
    EXPECT_EQ(code_of(parse_exec(R"({"cmd":"a\u0000b"})")), "invalid_argument");
}

TEST(DaemonHttpParsing, SnapshotAndFork) {
    EXPECT_EQ(*parse_snapshot_name(""), "");
    EXPECT_EQ(*parse_snapshot_name("{}"), "");
    EXPECT_EQ(*parse_snapshot_name(R"({"name":"base-1.0_x"})"), "base-1.0_x");
    for (const char* body : {R"({"name":""})", R"({"name":"-x"})", R"({"name":"a/b"})", R"({"name":1})",
                             R"({"nam":"x"})"})
        EXPECT_EQ(code_of(parse_snapshot_name(body)), "invalid_argument") << body;
    EXPECT_EQ(code_of(parse_snapshot_name(R"({"name":")" + std::string(64, 'a') + "\"}")), "invalid_argument");

    auto fork = parse_fork(R"({"ttl_seconds":10,"metadata":{"a":"b"}})");
    ASSERT_TRUE(fork.ok());
    EXPECT_EQ(fork->ttl_seconds, 10);
    EXPECT_EQ(fork->metadata.at("a"), "b");
    EXPECT_TRUE(parse_fork("").ok());
    EXPECT_EQ(code_of(parse_fork(R"({"ttl_seconds":0})")), "invalid_argument");
    EXPECT_EQ(code_of(parse_fork(R"({"template":"x"})")), "invalid_argument");
}

TEST(DaemonHttpParsing, GuestPaths) {
    for (const char* ok : {"/", "/tmp", "/tmp/a b", "/a/./b", "/a/...", "/a/..b", "/a/b/"})
        EXPECT_TRUE(validate_guest_path(ok).ok()) << ok;
    for (const char* bad : {"", "tmp", "./tmp", "/..", "/a/..", "/a/../b", "../x"})
        EXPECT_EQ(code_of(validate_guest_path(bad)), "invalid_argument") << bad;
    EXPECT_EQ(code_of(validate_guest_path(std::string_view("/a\0b", 4))), "invalid_argument");
    EXPECT_EQ(code_of(validate_guest_path("/" + std::string(256, 'a'))), "invalid_argument");
}

TEST(DaemonHttpParsing, Modes) {
    EXPECT_EQ(*parse_mode("0644"), 0644u);
    EXPECT_EQ(*parse_mode("755"), 0755u);
    EXPECT_EQ(*parse_mode("4755"), 04755u);
    for (const char* bad : {"", "8", "0x1ff", "-644", "rwx", "99999", "0644 "})
        EXPECT_EQ(code_of(parse_mode(bad)), "invalid_argument") << bad;
}

TEST(DaemonHttpParsing, ListFilter) {
    auto all = parse_list_filter({{"state", "all"}});
    ASSERT_TRUE(all.ok());
    EXPECT_TRUE(all->all_states);
    auto f = parse_list_filter({{"state", "expired"}, {"metadata.repo", "a/b"}, {"metadata[ci]", "1"}});
    ASSERT_TRUE(f.ok()) << f.error().to_string();
    EXPECT_EQ(f->state, SandboxState::Expired);
    EXPECT_EQ(f->metadata.at("repo"), "a/b");
    EXPECT_EQ(f->metadata.at("ci"), "1");
    EXPECT_EQ(code_of(parse_list_filter({{"state", "zombie"}})), "invalid_argument");
    EXPECT_EQ(code_of(parse_list_filter({{"metadata.", "x"}})), "invalid_argument");
    EXPECT_EQ(code_of(parse_list_filter({{"color", "red"}})), "invalid_argument");
}

TEST(DaemonHttpRender, Timestamps) {
    EXPECT_EQ(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(rfc3339_ms(1795879266123), "2026-11-28T15:21:06.123Z");
    EXPECT_EQ(rfc3339_ms(1795879266005), "2026-11-28T15:21:06.005Z");
}

TEST(DaemonHttpRender, Sandbox) {
    SandboxInfo s = SandboxInfo::from_row(SandboxState::Running);
    s.id = "sb-0123456789ab";
    s.template_id = "tiny";
    s.created_at_ms = 1795879266123;
    s.expires_at_ms = 1795879866123;
    s.metadata = {{"repo", "x"}};
    s.env = {{"SECRET", "not shown"}};
    s.vcpus = 1;
    s.memory_mib = 256;
    s.create_ms = 48.5;
    json j = render(s);
    EXPECT_EQ(j["id"], "sb-0123456789ab");
    EXPECT_EQ(j["state"], "running");
    EXPECT_EQ(j["template"], "tiny");
    EXPECT_EQ(j["created_at"], "2026-11-28T15:21:06.123Z");
    EXPECT_EQ(j["expires_at"], "2026-11-28T15:31:06.123Z");
    EXPECT_EQ(j["metadata"], json({{"repo", "x"}}));
    EXPECT_EQ(j["vcpus"], 1);
    EXPECT_EQ(j["memory_mib"], 256);
    EXPECT_EQ(j["create_ms"], 48.5);
    // Optional fields only when set; env, the owner and the pid are never shown.
    for (const char* absent : {"ended_at", "parent_id", "error", "env", "owner_token_id", "qemu_pid"})
        EXPECT_FALSE(j.contains(absent)) << absent;
    // Empty metadata is still an object.
    s.metadata.clear();
    ASSERT_TRUE(s.move_to(SandboxState::Lost));
    s.error = "the VM died";
    s.ended_at_ms = 1795879270000;
    j = render(s);
    EXPECT_TRUE(j["metadata"].is_object());
    EXPECT_EQ(j["state"], "lost");
    EXPECT_EQ(j["error"], "the VM died");
    EXPECT_EQ(j["ended_at"], "2026-11-28T15:21:10.000Z");
}

TEST(DaemonHttpRender, SnapshotTemplateFile) {
    SnapshotInfo snap;
    snap.id = "snap-0123456789ab";
    snap.sandbox_id = "sb-0123456789ab";
    snap.template_id = "tiny";
    snap.created_at_ms = 1000;
    snap.size_bytes = 12345;
    json j = render(snap);
    EXPECT_EQ(j["id"], "snap-0123456789ab");
    EXPECT_EQ(j["sandbox_id"], "sb-0123456789ab");
    EXPECT_EQ(j["template"], "tiny");
    EXPECT_EQ(j["size_bytes"], 12345);
    EXPECT_EQ(j["created_at"], "1970-01-01T00:00:01.000Z");
    EXPECT_FALSE(j.contains("name"));
    EXPECT_FALSE(j.contains("owner_token_id"));

    TemplateInfo t;
    t.id = "tiny";
    t.kind = "builtin";
    t.ready = true;
    j = render(t);
    EXPECT_EQ(j["kind"], "builtin");
    EXPECT_EQ(j["ready"], true);
    EXPECT_TRUE(j.contains("vcpus") && j.contains("memory_mib"));

    proto::FileInfo f;
    f.name = "ignored";
    f.type = "file";
    f.size = 3;
    f.mode = 0100644;
    f.mtime_unix_ns = 1795879266123456789;
    j = render(f, "/tmp/a.txt");
    EXPECT_EQ(j["path"], "/tmp/a.txt");
    EXPECT_EQ(j["name"], "a.txt");
    EXPECT_EQ(j["type"], "file");
    EXPECT_EQ(j["size"], 3);
    EXPECT_EQ(j["mode"], "0644");  // permission bits only, in octal
    EXPECT_EQ(j["mtime"], "2026-11-28T15:21:06.123Z");
    f.mode = 04755;
    EXPECT_EQ(render(f, "/")["mode"], "4755");
}

namespace {
CappedOutput kept(std::string_view bytes) {
    CappedOutput out(1024);
    out.append(bytes);
    return out;
}
}  // namespace

TEST(DaemonHttpRender, ExecResultAndErrors) {
    proto::ExecResult r;
    r.exit_code = 3;
    r.duration_ms = 12;
    json j = render_exec_result(r, kept("out"), kept("err"));
    EXPECT_EQ(j["stdout"], "out");
    EXPECT_EQ(j["stderr"], "err");
    EXPECT_EQ(j["exit_code"], 3);
    EXPECT_EQ(j["timed_out"], false);
    EXPECT_EQ(j["duration_ms"], 12);
    r.signal = 9;
    r.timed_out = true;
    r.output_truncated = true;
    j = render_exec_result(r, kept(""), kept(""));
    EXPECT_TRUE(j["exit_code"].is_null());
    EXPECT_EQ(j["signal"], 9);
    EXPECT_EQ(j["timed_out"], true);
    EXPECT_EQ(j["truncated"], true);

    EXPECT_EQ(render_error(make_error(ErrorCode::NotFound, "no sandbox")),
              json({{"error", {{"code", "not_found"}, {"message", "no sandbox"}}}}));
}

TEST(DaemonHttpRender, InvalidUtf8BecomesReplacementCharacter) {
    std::string text = dump(json{{"stdout", std::string("a\xff" "b\xc3")}});
    EXPECT_EQ(text, "{\"stdout\":\"a\xef\xbf\xbd" "b\xef\xbf\xbd\"}");
    EXPECT_FALSE(json::parse(text, nullptr, false).is_discarded());
}

TEST(DaemonHttpRender, Utf8CarryKeepsSplitSequences) {
    Utf8Carry carry;
    std::string euro = "\xe2\x82\xac";  // 3 bytes
    EXPECT_EQ(carry.take("a" + euro.substr(0, 1)), "a");
    EXPECT_EQ(carry.take(euro.substr(1, 1)), "");
    EXPECT_EQ(carry.take(euro.substr(2) + "b"), euro + "b");
    EXPECT_EQ(carry.flush(), "");
    // Garbage is passed on (dump() replaces it), never held back for ever.
    EXPECT_EQ(carry.take("\xff\xff"), "\xff\xff");
    EXPECT_EQ(carry.take("\xf0\x9f"), "");
    EXPECT_EQ(carry.flush(), "\xf0\x9f");
}
