// ErrorCode: every code has one snake_case wire name that parses back, and the API mapping gives
// every code a status and one of the codes api/openapi.yaml lists.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "base/error_code.h"
#include "base/result.h"
#include "daemon/api_error.h"

using kiln::ErrorCode;

namespace {

// Every ErrorCode, found the way parse_error_code() finds them (values are contiguous from 0).
std::vector<ErrorCode> all_codes() {
    std::vector<ErrorCode> codes;
    for (int i = 0; kiln::code_name(static_cast<ErrorCode>(i)) != nullptr; ++i) codes.push_back(static_cast<ErrorCode>(i));
    return codes;
}

// The `code` enum of the Error schema in api/openapi.yaml.
std::set<std::string> openapi_error_codes() {
    std::ifstream in(std::string(KILN_SOURCE_DIR) + "/api/openapi.yaml");
    std::stringstream text;
    text << in.rdbuf();
    std::string yaml = text.str();
    std::smatch m;
    std::regex list(R"(enum: \[(unauthorized,[^\]]*)\])");
    EXPECT_TRUE(std::regex_search(yaml, m, list)) << "the Error schema's code enum is not in api/openapi.yaml";
    std::set<std::string> names;
    std::regex word(R"([a-z_]+)");
    std::string inner = m[1];
    for (auto it = std::sregex_iterator(inner.begin(), inner.end(), word); it != std::sregex_iterator(); ++it)
        names.insert(it->str());
    return names;
}

}  // namespace

TEST(ErrorCode, EveryCodeHasOneSnakeCaseNameThatParsesBack) {
    auto codes = all_codes();
    EXPECT_GE(codes.size(), 50u);  // the list in error_code.h; a short count means code_name() stops early
    std::set<std::string> seen;
    for (ErrorCode c : codes) {
        std::string name = kiln::code_name(c);
        EXPECT_TRUE(std::regex_match(name, std::regex("[a-z][a-z_]*[a-z]"))) << name;
        EXPECT_TRUE(seen.insert(name).second) << "two codes are called " << name;
        EXPECT_EQ(kiln::parse_error_code(name), c) << name;
    }
    EXPECT_EQ(kiln::parse_error_code("no_such_code"), std::nullopt);
    EXPECT_EQ(kiln::parse_error_code(""), std::nullopt);
    EXPECT_EQ(kiln::code_name(static_cast<ErrorCode>(codes.size())), nullptr);
}

TEST(ErrorCode, TheWireNamesAreTheOnesKilnAlwaysSent) {
    // The strings logs, agent frames and API bodies carried before ErrorCode existed.
    EXPECT_STREQ(kiln::code_name(ErrorCode::InvalidArgument), "invalid_argument");
    EXPECT_STREQ(kiln::code_name(ErrorCode::SandboxNotRunning), "sandbox_not_running");
    EXPECT_STREQ(kiln::code_name(ErrorCode::VmGone), "vm_gone");
    EXPECT_STREQ(kiln::code_name(ErrorCode::TooManyStreams), "too_many_streams");
    EXPECT_STREQ(kiln::code_name(ErrorCode::KvmUnavailable), "kvm_unavailable");
    EXPECT_EQ(kiln::make_error(ErrorCode::BootFailed, "no agent").to_string(), "boot_failed: no agent");
    std::ostringstream out;
    out << ErrorCode::NotFound;
    EXPECT_EQ(out.str(), "not_found");
}

TEST(ApiError, EveryCodeMapsToAStatusAndAnApiCodeTheSpecLists) {
    std::set<std::string> listed = openapi_error_codes();
    ASSERT_EQ(listed.size(), 10u);
    for (ErrorCode c : all_codes()) {
        auto api = kiln::daemon::to_api_error(kiln::make_error(c, "m"));
        EXPECT_TRUE(listed.count(kiln::code_name(api.code))) << kiln::code_name(c) << " -> " << kiln::code_name(api.code);
        EXPECT_GE(api.http_status, 400) << kiln::code_name(c);
        EXPECT_LT(api.http_status, 600) << kiln::code_name(c);
        // A code the API lists is answered as itself, with its message untouched.
        if (listed.count(kiln::code_name(c))) {
            EXPECT_EQ(api.code, c);
            EXPECT_EQ(api.message, "m");
        }
    }
}

TEST(ApiError, TheStatusesTheApiHasAlwaysAnswered) {
    auto status = [](ErrorCode c) { return kiln::daemon::to_api_error(kiln::make_error(c, "m")).http_status; };
    auto code = [](ErrorCode c) { return kiln::daemon::to_api_error(kiln::make_error(c, "m")).code; };
    EXPECT_EQ(status(ErrorCode::Unauthorized), 401);
    EXPECT_EQ(status(ErrorCode::NotFound), 404);
    EXPECT_EQ(status(ErrorCode::TemplateNotFound), 404);
    EXPECT_EQ(status(ErrorCode::InvalidArgument), 422);
    EXPECT_EQ(status(ErrorCode::MalformedBody), 400);
    EXPECT_EQ(code(ErrorCode::MalformedBody), ErrorCode::InvalidArgument);
    EXPECT_EQ(status(ErrorCode::BodyTooLarge), 413);
    EXPECT_EQ(code(ErrorCode::BodyTooLarge), ErrorCode::InvalidArgument);
    EXPECT_EQ(status(ErrorCode::SandboxNotRunning), 409);
    EXPECT_EQ(status(ErrorCode::Conflict), 409);
    EXPECT_EQ(status(ErrorCode::QuotaExceeded), 429);
    EXPECT_EQ(status(ErrorCode::Unavailable), 503);
    EXPECT_EQ(status(ErrorCode::VmGone), 409);
    EXPECT_EQ(code(ErrorCode::VmGone), ErrorCode::SandboxNotRunning);
    EXPECT_EQ(code(ErrorCode::NotReady), ErrorCode::SandboxNotRunning);
    EXPECT_EQ(code(ErrorCode::NotEmpty), ErrorCode::Conflict);
    EXPECT_EQ(code(ErrorCode::Exists), ErrorCode::InvalidArgument);
    EXPECT_EQ(code(ErrorCode::PermissionDenied), ErrorCode::InvalidArgument);
    EXPECT_EQ(code(ErrorCode::TooLarge), ErrorCode::InvalidArgument);
    // Anything else is internal and names the original code.
    auto boot = kiln::daemon::to_api_error(kiln::make_error(ErrorCode::BootFailed, "no agent"));
    EXPECT_EQ(boot.http_status, 500);
    EXPECT_EQ(boot.code, ErrorCode::Internal);
    EXPECT_EQ(boot.message, "boot_failed: no agent");
    EXPECT_EQ(kiln::daemon::to_api_error(kiln::make_error(ErrorCode::Internal, "x")).message, "x");
    // A store that is down (PostgreSQL restarting) is 503 with its reason, as it is.
    auto down = kiln::daemon::to_api_error(kiln::make_error(ErrorCode::StoreUnavailable, "the store is unavailable: why"));
    EXPECT_EQ(down.http_status, 503);
    EXPECT_EQ(down.code, ErrorCode::Unavailable);
    EXPECT_EQ(down.message, "the store is unavailable: why");
}
