// envd's request messages (src/kilnd/e2b/envd_messages.h), the Basic-auth user
// (envd_user.h), multipart uploads (envd_multipart.h) and EntryInfo rendering (envd_entry.h).
#include <gtest/gtest.h>

#include <signal.h>

#include "kilnd/e2b/envd_entry.h"
#include "kilnd/e2b/envd_errors.h"
#include "kilnd/e2b/envd_messages.h"
#include "kilnd/e2b/envd_multipart.h"
#include "kilnd/e2b/envd_user.h"

using namespace kiln;
using namespace kiln::daemon::e2b;

TEST(EnvdMessages, StartAsTheSdkSendsIt) {
    auto r = parse_start_request(json::parse(R"({"process":{"cmd":"/bin/bash","args":["-l","-c","echo hi"],
        "envs":{"A":"1"},"cwd":"/tmp"},"tag":"t","stdin":false})"));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value->process.cmd, "/bin/bash");
    EXPECT_EQ(r.value->process.args, (std::vector<std::string>{"-l", "-c", "echo hi"}));
    EXPECT_EQ(r.value->process.envs.at("A"), "1");
    EXPECT_EQ(*r.value->process.cwd, "/tmp");
    EXPECT_EQ(*r.value->tag, "t");
    EXPECT_FALSE(r.value->stdin);
    // stdin absent: true, as older SDKs expect.
    EXPECT_TRUE(parse_start_request(json::parse(R"({"process":{"cmd":"ls"}})")).value->stdin);
}

TEST(EnvdMessages, StartRefusals) {
    auto pty = parse_start_request(json::parse(R"({"process":{"cmd":"bash"},"pty":{"size":{"cols":80,"rows":24}}})"));
    ASSERT_FALSE(pty.ok());
    EXPECT_EQ(pty.error->code, ConnectCode::Unimplemented);
    for (const char* bad : {R"({})", R"({"process":{}})", R"({"process":{"cmd":""}})", R"({"process":{"cmd":1}})",
                            R"({"process":{"cmd":"a","args":"x"}})", R"({"process":{"cmd":"a","args":[1]}})",
                            R"({"process":{"cmd":"a","envs":{"A=B":"1"}}})", R"({"process":{"cmd":"a","envs":{"A":1}}})",
                            R"({"process":{"cmd":"a\u0000"}})", R"({"process":{"cmd":"a"},"stdin":"yes"})"}) {
        auto r = parse_start_request(json::parse(bad));
        ASSERT_FALSE(r.ok()) << bad;
        EXPECT_EQ(r.error->code, ConnectCode::InvalidArgument) << bad;
    }
}

TEST(EnvdMessages, SelectorsSignalsAndInput) {
    EXPECT_EQ(*parse_selector(json::parse(R"({"process":{"pid":12}})")).value->pid, 12u);
    EXPECT_EQ(*parse_selector(json::parse(R"({"process":{"pid":"12"}})")).value->pid, 12u);
    EXPECT_EQ(*parse_selector(json::parse(R"({"process":{"tag":"srv"}})")).value->tag, "srv");
    EXPECT_FALSE(parse_selector(json::parse(R"({"process":{}})")).ok());
    EXPECT_FALSE(parse_selector(json::parse(R"({"process":{"pid":-1}})")).ok());
    EXPECT_FALSE(parse_selector(json::parse(R"({"process":{"pid":4294967296}})")).ok());
    EXPECT_FALSE(parse_selector(json::parse(R"({"process":{"pid":1,"tag":"x"}})")).ok());

    EXPECT_EQ(*parse_signal(json::parse(R"({"signal":"SIGNAL_SIGKILL"})")).value, SIGKILL);
    EXPECT_EQ(*parse_signal(json::parse(R"({"signal":15})")).value, SIGTERM);
    EXPECT_FALSE(parse_signal(json::parse(R"({"signal":"SIGNAL_UNSPECIFIED"})")).ok());
    EXPECT_FALSE(parse_signal(json::parse(R"({})")).ok());

    EXPECT_EQ(*parse_send_input(json::parse(R"({"input":{"stdin":"aGVsbG8K"}})")).value, "hello\n");
    EXPECT_FALSE(parse_send_input(json::parse(R"({"input":{"stdin":"%%%"}})")).ok());
    EXPECT_EQ(parse_send_input(json::parse(R"({"input":{"pty":"eA=="}})")).error->code, ConnectCode::Unimplemented);
}

TEST(EnvdMessages, PathsResolveAgainstTheUsersHome) {
    EXPECT_EQ(home_of("user"), "/home/user");
    EXPECT_EQ(home_of("root"), "/root");
    EXPECT_EQ(*resolve_guest_path("a.txt", "/home/user"), "/home/user/a.txt");
    EXPECT_EQ(*resolve_guest_path("~/a", "/home/user"), "/home/user/a");
    EXPECT_EQ(*resolve_guest_path("/etc/hosts", "/home/user"), "/etc/hosts");
    EXPECT_FALSE(resolve_guest_path("", "/home/user").ok());
    auto p = parse_path_field(json::parse(R"({"path":3})"), "path", "/root");
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.error->code, ConnectCode::InvalidArgument);
    EXPECT_EQ(*parse_depth(json::parse(R"({})")).value, 1u);
    EXPECT_EQ(*parse_depth(json::parse(R"({"depth":0})")).value, 1u);
    EXPECT_EQ(*parse_depth(json::parse(R"({"depth":3})")).value, 3u);
    EXPECT_FALSE(parse_depth(json::parse(R"({"depth":1000})")).ok());
}

TEST(EnvdUser, FromBasicAuthorization) {
    EXPECT_EQ(*user_from_authorization(""), "user");
    EXPECT_EQ(*user_from_authorization("Basic cm9vdDo="), "root");  // "root:"
    EXPECT_EQ(*user_from_authorization("basic dXNlcjo="), "user");  // "user:"
    EXPECT_EQ(*user_from_authorization("Basic Og=="), "user");      // ":"
    EXPECT_EQ(*user_from_authorization("Bearer x"), "user");  // another scheme names nobody
    EXPECT_FALSE(user_from_authorization("Basic !!!").ok());
    EXPECT_FALSE(user_from_authorization("Basic Li4vZXRjOg==").ok());  // "../etc:"
    EXPECT_EQ(user_from_authorization("Basic !!!").error().code, ErrorCode::Unauthorized);
}

TEST(EnvdMultipart, TheSdksUploadForm) {
    std::string body =
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/home/user/a b;c.txt\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\nhello\r\nworld\r\n"
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.bin\"\r\n\r\n";
    body += std::string("\0\1", 2) + "\r\n--XyZ--\r\n";  // binary content, a NUL included
    auto boundary = multipart_boundary("multipart/form-data; boundary=XyZ");
    ASSERT_TRUE(boundary.ok());
    auto parts = parse_multipart(body, *boundary);
    ASSERT_TRUE(parts.ok()) << parts.error().message;
    ASSERT_EQ(parts->size(), 2u);
    EXPECT_EQ((*parts)[0].name, "file");
    EXPECT_EQ((*parts)[0].filename, "/home/user/a b;c.txt");
    EXPECT_EQ((*parts)[0].data, "hello\r\nworld");
    EXPECT_EQ((*parts)[1].filename, "b.bin");
    EXPECT_EQ((*parts)[1].data.size(), 2u);

    EXPECT_EQ(*multipart_boundary("multipart/form-data; boundary=\"a;b\""), "a;b");
    EXPECT_FALSE(multipart_boundary("application/octet-stream").ok());
    EXPECT_FALSE(multipart_boundary("multipart/form-data").ok());
    for (const char* bad : {"", "--XyZ", "--XyZ\r\nContent-Disposition: form-data\r\n\r\nno end",
                            "--XyZ\r\nNoColon\r\n\r\nx\r\n--XyZ--", "--XyZ\r\nX-A: b\r\n\r\nx\r\n--XyZ--"}) {
        EXPECT_FALSE(parse_multipart(bad, "XyZ").ok()) << bad;
    }
}

TEST(EnvdEntry, EntryInfoAsTheSdkReadsIt) {
    proto::FileInfo f;
    f.type = "dir";
    f.mode = 0755;
    f.size = 4096;
    f.mtime_unix_ns = 1700000000123000000;
    f.owner = "user";
    f.group = "user";
    json e = entry_info_json(f, "/home/user/src");
    EXPECT_EQ(e["owner"], "user");
    EXPECT_EQ(e["group"], "user");
    EXPECT_FALSE(e.contains("symlinkTarget"));
    proto::FileInfo link;
    link.type = "symlink";
    link.uid = 1000;
    link.symlink_target = "../target";
    json l = entry_info_json(link, "/tmp/l");
    EXPECT_EQ(l["type"], "FILE_TYPE_SYMLINK");
    EXPECT_EQ(l["symlinkTarget"], "../target");
    EXPECT_EQ(l["owner"], "1000");  // no name: the number
    EXPECT_EQ(join_path("/", "a"), "/a");
    EXPECT_EQ(join_path("/tmp", "a"), "/tmp/a");
    EXPECT_EQ(e["name"], "src");
    EXPECT_EQ(e["path"], "/home/user/src");
    EXPECT_EQ(e["type"], "FILE_TYPE_DIRECTORY");
    EXPECT_EQ(e["permissions"], "drwxr-xr-x");
    EXPECT_EQ(e["mode"], 0755);
    EXPECT_EQ(e["size"], "4096");
    EXPECT_EQ(e["modifiedTime"], "2023-11-14T22:13:20.123Z");
    EXPECT_EQ(permissions_text("file", 0640), "-rw-r-----");
    EXPECT_EQ(permissions_text("symlink", 0777), "Lrwxrwxrwx");
    EXPECT_EQ(base_name("/"), "/");
}

TEST(EnvdErrors, KilnCodesBecomeTheSdksCodes) {
    EXPECT_EQ(to_connect_error(make_error(ErrorCode::NotFound, "no such file"), "r").code, ConnectCode::NotFound);
    EXPECT_EQ(to_connect_error(make_error(ErrorCode::Exists, "x"), "r").code, ConnectCode::AlreadyExists);
    EXPECT_EQ(to_connect_error(make_error(ErrorCode::VmGone, "x"), "r").code, ConnectCode::Unavailable);
    EXPECT_EQ(to_connect_error(make_error(ErrorCode::Unauthorized, "x"), "r").code, ConnectCode::Unauthenticated);
    // An internal error's details stay in kilnd's log.
    auto internal = to_connect_error(make_error(ErrorCode::QemuFailed, "/var/lib/kiln/secret path"), "req-1");
    EXPECT_EQ(internal.code, ConnectCode::Internal);
    EXPECT_EQ(internal.message.find("/var/lib/kiln"), std::string::npos);
    EXPECT_EQ(envd_http_status(make_error(ErrorCode::NotFound, "x")), 404);
    EXPECT_EQ(envd_http_status(make_error(ErrorCode::SandboxNotRunning, "x")), 502);
    EXPECT_EQ(envd_http_status(make_error(ErrorCode::Unauthorized, "x")), 401);
    EXPECT_EQ(envd_error_body(404, "m"), (json{{"code", 404}, {"message", "m"}}));
}
