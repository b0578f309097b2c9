// Parsing /etc/passwd and /etc/group: colon-separated lines, read without NSS.
#include "agent/user_db.h"

#include <charconv>
#include <fstream>
#include <string_view>
#include <vector>

namespace kiln::agent {
namespace {

constexpr size_t kMaxFileBytes = 16u << 20;  // a bigger passwd is not one the agent reads

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    std::string text;
    char buf[8192];
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
        text.append(buf, static_cast<size_t>(in.gcount()));
        if (text.size() > kMaxFileBytes) return {};
    }
    return text;
}

std::vector<std::string_view> split(std::string_view line, char sep) {
    std::vector<std::string_view> fields;
    size_t start = 0;
    for (;;) {
        size_t end = line.find(sep, start);
        fields.push_back(line.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
        if (end == std::string_view::npos) return fields;
        start = end + 1;
    }
}

bool parse_id(std::string_view text, uint32_t& out) {
    if (text.empty()) return false;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size();
}

template <typename Fn>
void for_each_line(const std::string& text, Fn&& fn) {
    std::string_view rest(text);
    while (!rest.empty()) {
        size_t nl = rest.find('\n');
        std::string_view line = rest.substr(0, nl);
        rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty() || line.front() == '#') continue;
        fn(line);
    }
}

}  // namespace

UserDb UserDb::load(const std::string& passwd_path, const std::string& group_path) {
    return parse(slurp(passwd_path), slurp(group_path));
}

UserDb UserDb::parse(const std::string& passwd_text, const std::string& group_text) {
    UserDb db;
    // name:password:uid:gid:gecos:home:shell
    for_each_line(passwd_text, [&](std::string_view line) {
        auto f = split(line, ':');
        uint32_t uid = 0, gid = 0;
        if (f.size() < 7 || f[0].empty() || !parse_id(f[2], uid) || !parse_id(f[3], gid)) return;
        UserEntry entry{std::string(f[0]), uid, gid, std::string(f[5]), std::string(f[6])};
        db.m_user_names.emplace(uid, entry.name);  // the first line of a uid names it, as getpwuid does
        db.m_users.emplace(entry.name, std::move(entry));
    });
    // name:password:gid:members
    for_each_line(group_text, [&](std::string_view line) {
        auto f = split(line, ':');
        uint32_t gid = 0;
        if (f.size() < 3 || f[0].empty() || !parse_id(f[2], gid)) return;
        db.m_group_names.emplace(gid, std::string(f[0]));
    });
    return db;
}

Result<UserEntry> UserDb::find_user(const std::string& name) const {
    auto it = m_users.find(name);
    if (it == m_users.end()) return make_error(ErrorCode::InvalidArgument, "no such user '" + name + "'");
    return it->second;
}

std::string UserDb::user_name(uid_t uid) const {
    auto it = m_user_names.find(uid);
    return it == m_user_names.end() ? std::to_string(uid) : it->second;
}

std::string UserDb::group_name(gid_t gid) const {
    auto it = m_group_names.find(gid);
    return it == m_group_names.end() ? std::to_string(gid) : it->second;
}

}  // namespace kiln::agent
