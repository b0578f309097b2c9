// lookup_user: /etc/passwd and /etc/group parsed by hand (see user_lookup.h).
#include "agent/user_lookup.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <optional>
#include <string_view>

#include "base/unique_fd.h"

namespace kiln::agent {
namespace {

// Larger files are not account databases anyone meant; reading stops there.
constexpr size_t kMaxFileBytes = 8u << 20;

// Plain read(): an ifstream sets up C++ locales first, costly under emulation (see port.cpp).
std::optional<std::string> read_small_file(const std::string& path) {
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return std::nullopt;
    std::string text;
    char buf[16384];
    ssize_t n;
    while (text.size() < kMaxFileBytes && ((n = ::read(fd.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0) text.append(buf, static_cast<size_t>(n));
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
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && ptr == text.data() + text.size();
}

}  // namespace

Result<UserAccount> lookup_user(const std::string& name, const AccountFiles& files) {
    auto passwd = read_small_file(files.passwd);
    if (!passwd) return make_error(ErrorCode::IoError, "cannot read " + files.passwd + " to look up user '" + name + "'");
    UserAccount account;
    bool found = false;
    for (std::string_view line : split(*passwd, '\n')) {
        // name:password:uid:gid:gecos:home:shell
        auto fields = split(line, ':');
        if (fields.size() < 7 || fields[0] != name) continue;
        uint32_t uid = 0, gid = 0;
        if (!parse_id(fields[2], uid) || !parse_id(fields[3], gid)) continue;
        account.name = name;
        account.uid = uid;
        account.gid = gid;
        account.home = std::string(fields[5]);
        account.shell = std::string(fields[6]);
        found = true;
        break;
    }
    if (!found) return make_error(ErrorCode::NotFound, "no such user '" + name + "'");

    account.groups.push_back(account.gid);
    const std::string group = read_small_file(files.group).value_or("");
    for (std::string_view line : split(group, '\n')) {
        // name:password:gid:member,member
        auto fields = split(line, ':');
        uint32_t gid = 0;
        if (fields.size() < 4 || !parse_id(fields[2], gid)) continue;
        auto members = split(fields[3], ',');
        if (std::find(members.begin(), members.end(), std::string_view(name)) == members.end()) continue;
        if (std::find(account.groups.begin(), account.groups.end(), gid) == account.groups.end())
            account.groups.push_back(gid);
        if (account.groups.size() >= 1024) break;  // beyond NGROUPS_MAX territory for anyone sane
    }
    return account;
}

AccountNames AccountNames::load(const AccountFiles& files) {
    AccountNames names;
    // name:password:id:... in both files; the first line of an id names it.
    auto read_ids = [](const std::string& path, std::map<uint32_t, std::string>& out) {
        const std::string text = read_small_file(path).value_or("");
        for (std::string_view line : split(text, '\n')) {
            auto fields = split(line, ':');
            uint32_t id = 0;
            if (fields.size() < 3 || fields[0].empty() || !parse_id(fields[2], id)) continue;
            out.emplace(id, std::string(fields[0]));
        }
    };
    read_ids(files.passwd, names.m_users);
    read_ids(files.group, names.m_groups);
    return names;
}

std::string AccountNames::user_name(uid_t uid) const {
    auto it = m_users.find(uid);
    return it == m_users.end() ? std::to_string(uid) : it->second;
}

std::string AccountNames::group_name(gid_t gid) const {
    auto it = m_groups.find(gid);
    return it == m_groups.end() ? std::to_string(gid) : it->second;
}

}  // namespace kiln::agent
