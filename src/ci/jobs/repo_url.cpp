// Canonical repository strings and the ci_repos allowlist (see repo_url.h).
#include "ci/jobs/repo_url.h"

#include <cctype>

namespace kiln::ci {
namespace {

constexpr size_t kMaxRepoBytes = 2048;

Error bad_repo(const std::string& why) { return make_error(ErrorCode::InvalidArgument, "repo: " + why); }

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string join(const std::vector<std::string>& segments) {
    std::string out;
    for (const auto& s : segments) out += "/" + s;
    return out;
}

Result<std::string> normalize_local(const std::string& path, bool need_path) {
    if (path.find("::") != std::string::npos) return bad_repo("a local path may not contain '::'");
    auto segments = TRY(path_segments(path));
    if (segments.empty() && need_path) return bad_repo("'/' is not a repository");
    return segments.empty() ? std::string("/") : join(segments);
}

bool valid_host_name(const std::string& host) {
    if (host.empty() || host.size() > 253 || host.front() == '.' || host.back() == '.' || host.front() == '-' ||
        host.find("..") != std::string::npos)
        return false;
    for (char c : host)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-')) return false;
    return true;
}

bool valid_ipv6_literal(const std::string& inside) {
    if (inside.empty()) return false;
    for (char c : inside)
        if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.')) return false;
    return true;
}

Result<std::string> normalize_url(const std::string& repo, bool need_path) {
    const size_t sep = repo.find("://");
    const std::string scheme = lower(repo.substr(0, sep));
    if (scheme == "ssh")
        return bad_repo("ssh:// is not supported: kilnd's git runs without SSH keys; give an https:// URL");
    if (scheme != "https" && scheme != "http" && scheme != "git")
        return bad_repo("the scheme must be https://, http:// or git:// (or an absolute path for an admin)");
    const std::string rest = repo.substr(sep + 3);
    for (char c : rest) {
        if (c == '\\' || c == '%' || c == '?' || c == '#' || c == ' ')
            return bad_repo("'" + std::string(1, c) + "' is not allowed in a repository URL");
    }
    const size_t slash = rest.find('/');
    const std::string authority = rest.substr(0, slash);
    const std::string path = slash == std::string::npos ? "" : rest.substr(slash);
    if (authority.find('@') != std::string::npos)
        return bad_repo("a URL with user info (user@ or user:password@) is not accepted; credentials do not belong in a job");
    std::string host, port;
    if (!authority.empty() && authority[0] == '[') {
        size_t close = authority.find(']');
        if (close == std::string::npos || !valid_ipv6_literal(authority.substr(1, close - 1)))
            return bad_repo("invalid IPv6 host");
        host = lower(authority.substr(0, close + 1));
        if (close + 1 < authority.size()) {
            if (authority[close + 1] != ':') return bad_repo("invalid host");
            port = authority.substr(close + 2);
        }
    } else {
        size_t colon = authority.find(':');
        host = lower(authority.substr(0, colon));
        if (colon != std::string::npos) port = authority.substr(colon + 1);
        if (!valid_host_name(host)) return bad_repo("invalid host name '" + host.substr(0, 64) + "'");
    }
    if (!port.empty() || authority.find(':') != std::string::npos) {
        bool digits = !port.empty() && port.size() <= 5;
        for (char c : port) digits = digits && std::isdigit(static_cast<unsigned char>(c));
        int value = digits ? std::stoi(port) : 0;
        if (!digits || value < 1 || value > 65535) return bad_repo("invalid port");
        bool is_default = (scheme == "https" && value == 443) || (scheme == "http" && value == 80) ||
                          (scheme == "git" && value == 9418);
        port = is_default ? "" : std::to_string(value);
    }
    auto segments = TRY(path_segments(path));
    if (segments.empty() && need_path) return bad_repo("the URL names no repository (no path)");
    return scheme + "://" + host + (port.empty() ? "" : ":" + port) + join(segments);
}

Result<std::string> normalize(const std::string& repo, bool need_path) {
    if (repo.empty() || repo.size() > kMaxRepoBytes)
        return bad_repo("must be a git URL or an absolute path (at most 2048 bytes)");
    for (unsigned char c : repo)
        if (c < 0x20 || c >= 0x7f) return bad_repo("control characters and non-ASCII bytes are not allowed");
    if (repo[0] == '/') return normalize_local(repo, need_path);
    if (lower(repo.substr(0, 7)) == "file://") {
        if (repo.size() < 8 || repo[7] != '/') return bad_repo("a file:// URL names no host: file:///path");
        return normalize_local(repo.substr(7), need_path);
    }
    if (repo.find("://") == std::string::npos)
        return bad_repo("must be an https://, http:// or git:// URL, or an absolute path (scp-like host:path and "
                        "transport::address forms are not accepted)");
    return normalize_url(repo, need_path);
}

// The allowlist compares without a trailing ".git": `acme/app` and `acme/app.git` are one repository.
std::string match_key(const std::string& canonical) {
    if (canonical.size() > 4 && canonical.ends_with(".git") && canonical[canonical.size() - 5] != '/')
        return canonical.substr(0, canonical.size() - 4);
    return canonical;
}

}  // namespace

// `.` and `..` are refused rather than resolved: a path that needs
// them is either a mistake or a trick, and git would resolve them differently from us.
Result<std::vector<std::string>> path_segments(const std::string& path) {
    std::vector<std::string> out;
    for (size_t pos = 0; pos <= path.size();) {
        size_t slash = path.find('/', pos);
        if (slash == std::string::npos) slash = path.size();
        std::string seg = path.substr(pos, slash - pos);
        pos = slash + 1;
        if (seg.empty()) continue;
        if (seg == "." || seg == "..") return bad_repo("'.' and '..' are not allowed in a repository's path");
        out.push_back(std::move(seg));
    }
    return out;
}

Result<std::string> normalize_repo(const std::string& repo) { return normalize(repo, true); }

bool is_local_repo(const std::string& canonical) { return !canonical.empty() && canonical[0] == '/'; }

Result<RepoAllowlist> RepoAllowlist::create(const std::vector<std::string>& prefixes) {
    RepoAllowlist list;
    for (const auto& p : prefixes) {
        auto canonical = normalize(p, false);
        if (!canonical.ok())
            return make_error(ErrorCode::InvalidArgument, "ci_repos entry '" + p.substr(0, 200) + "': " + canonical.error().message);
        list.m_prefixes.push_back(match_key(*canonical));
    }
    return list;
}

Result<RepoAllowlist> RepoAllowlist::parse(const std::string& text) {
    std::vector<std::string> entries;
    std::string current;
    for (char c : text + ",") {
        if (c == ',' || std::isspace(static_cast<unsigned char>(c))) {
            if (!current.empty()) entries.push_back(current);
            current.clear();
        } else {
            current += c;
        }
    }
    return create(entries);
}

bool RepoAllowlist::allows(const std::string& canonical) const {
    const std::string key = match_key(canonical);
    for (const auto& p : m_prefixes) {
        // "/" (every local path) and "https://host" (a whole host) end without a segment of their own.
        const std::string boundary = p.ends_with("/") ? p : p + "/";
        if (key == p || key.starts_with(boundary)) return true;
    }
    return false;
}

}  // namespace kiln::ci
