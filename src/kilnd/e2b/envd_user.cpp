#include "kilnd/e2b/envd_user.h"

#include <cctype>

#include "base/base64.h"

namespace kiln::daemon::e2b {

bool plausible_user_name(std::string_view name) {
    if (name.empty() || name.size() > 32) return false;
    for (size_t i = 0; i < name.size(); ++i) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || c == '_' ||
                  (i > 0 && ((c >= '0' && c <= '9') || c == '-' || (c == '$' && i + 1 == name.size())));
        if (!ok) return false;
    }
    return true;
}

Result<std::string> user_from_authorization(std::string_view authorization) {
    if (authorization.empty()) return std::string(kDefaultEnvdUser);
    constexpr std::string_view kBasic = "basic ";
    // Another scheme (a Bearer token meant for a proxy in front) does not name a user.
    if (authorization.size() < kBasic.size()) return std::string(kDefaultEnvdUser);
    for (size_t i = 0; i < kBasic.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(authorization[i])) != kBasic[i]) return std::string(kDefaultEnvdUser);
    auto decoded = base64_decode(authorization.substr(kBasic.size()));
    if (!decoded) return make_error(ErrorCode::Unauthorized, "the Basic Authorization header is not valid base64");
    std::string name = decoded->substr(0, decoded->find(':'));
    if (name.empty()) return std::string(kDefaultEnvdUser);
    if (!plausible_user_name(name)) return make_error(ErrorCode::Unauthorized, "invalid user name in the Authorization header");
    return name;
}

}  // namespace kiln::daemon::e2b
