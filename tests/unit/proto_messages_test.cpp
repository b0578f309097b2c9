// Unit tests for the agent message schema: round trips and rejection of hostile fields.
#include <gtest/gtest.h>

#include "proto/messages.h"

using namespace kiln::proto;
using kiln::ErrorCode;

TEST(Messages, ExecRequestRoundTrip) {
    ExecRequest r;
    r.argv = {"/bin/echo", "hi"};
    r.env = {{"A", "1"}};
    r.cwd = "/tmp";
    r.uid = 65534;
    r.timeout_ms = 1500;
    r.stdin = true;
    auto parsed = parse_exec_request(to_json(r));
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    EXPECT_EQ(parsed->argv, r.argv);
    EXPECT_EQ(parsed->env, r.env);
    EXPECT_EQ(parsed->cwd, "/tmp");
    EXPECT_EQ(parsed->uid, 65534u);
    EXPECT_EQ(parsed->timeout_ms, 1500u);
    EXPECT_TRUE(parsed->stdin);
}

TEST(Messages, ExecRequestNeedsExactlyOneCommandForm) {
    EXPECT_FALSE(parse_exec_request(json{{"op", "exec"}}).ok());
    EXPECT_FALSE(parse_exec_request(json{{"argv", {"a"}}, {"shell", "b"}}).ok());
    EXPECT_FALSE(parse_exec_request(json{{"argv", json::array()}}).ok());
    EXPECT_TRUE(parse_exec_request(json{{"shell", "true"}}).ok());
}

TEST(Messages, ExecRequestRejectsHostileFields) {
    EXPECT_FALSE(parse_exec_request(json{{"argv", {1, 2}}}).ok());
    EXPECT_FALSE(parse_exec_request(json{{"argv", {std::string("a\0b", 3)}}}).ok());
    EXPECT_FALSE(parse_exec_request(json{{"shell", "x"}, {"env", {{"A=B", "1"}}}}).ok());
    EXPECT_FALSE(parse_exec_request(json{{"shell", "x"}, {"env", {{"A", 1}}}}).ok());
    EXPECT_FALSE(parse_exec_request(json{{"shell", "x"}, {"cwd", "relative"}}).ok());
    EXPECT_FALSE(parse_exec_request(json{{"shell", "x"}, {"uid", -1}}).ok());
    EXPECT_FALSE(parse_exec_request(json{{"shell", "x"}, {"timeout_ms", "soon"}}).ok());
    EXPECT_FALSE(parse_exec_request(json::array()).ok());
}

TEST(Messages, PathsMustBeAbsoluteBoundedAndNulFree) {
    EXPECT_TRUE(validate_path("/a/b").ok());
    EXPECT_EQ(validate_path("").error().code, ErrorCode::InvalidArgument);
    EXPECT_FALSE(validate_path("a/b").ok());
    EXPECT_FALSE(validate_path(std::string("/a\0b", 4)).ok());
    EXPECT_FALSE(validate_path("/" + std::string(5000, 'a')).ok());
    EXPECT_FALSE(parse_remove_request(json{{"path", "/"}, {"recursive", true}}).ok());
    EXPECT_FALSE(parse_write_request(json{{"path", "/x"}, {"mode", 070000}}).ok());
}

TEST(Messages, InitRequestValidatesHostnameAndEntropy) {
    InitRequest r{"sb-1", "sb-1", 123, std::string(128, 'a'), true};
    EXPECT_TRUE(parse_init_request(to_json(r)).ok());
    r.hostname = "bad host";
    EXPECT_FALSE(parse_init_request(to_json(r)).ok());
    r.hostname = "ok";
    r.entropy_hex = "zz";
    EXPECT_FALSE(parse_init_request(to_json(r)).ok());
    r.entropy_hex = std::string(130, 'a');
    EXPECT_FALSE(parse_init_request(to_json(r)).ok());
}

TEST(Messages, ParseJsonObjectRejectsNonObjects) {
    EXPECT_FALSE(parse_json_object("not json").ok());
    EXPECT_FALSE(parse_json_object("[1,2]").ok());
    EXPECT_FALSE(parse_json_object("").ok());
    EXPECT_TRUE(parse_json_object(R"({"op":"ping"})").ok());
}

TEST(Messages, ErrorBodyRoundTripAndGarbage) {
    auto e = parse_error_body(make_error_body(ErrorCode::NotFound, "no /x").dump());
    EXPECT_EQ(e.code, ErrorCode::NotFound);
    EXPECT_EQ(e.message, "no /x");
    EXPECT_EQ(parse_error_body("\x01garbage").code, ErrorCode::ProtocolError);
}

TEST(Messages, ShellStatusFollowsTheShellConvention) {
    ExecResult r;
    r.exit_code = 3;
    EXPECT_EQ(r.shell_status(), 3);
    r.signal = 9;
    EXPECT_EQ(r.shell_status(), 137);
}
