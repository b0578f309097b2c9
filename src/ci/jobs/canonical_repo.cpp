// canonical_repo_url, canonical_repository, job_branch (see canonical_repo.h).
#include "ci/jobs/canonical_repo.h"

#include <algorithm>
#include <cctype>
#include <vector>

#include "base/sha256.h"
#include "ci/jobs/repo_url.h"

namespace kiln::ci {
namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// The path's non-empty segments (repo_url's split, the one the fetch side uses); false when
// one is "." or "..".
bool split_path(std::string_view path, std::vector<std::string>& segments) {
    auto split = path_segments(std::string(path));
    if (!split.ok()) return false;
    segments = std::move(*split);
    return true;
}

std::string join(const std::vector<std::string>& segments) {
    std::string out;
    for (const auto& s : segments) out += (out.empty() ? "" : "/") + s;
    return out;
}

bool default_port(std::string_view scheme, std::string_view port) {
    return (scheme == "https" && port == "443") || (scheme == "http" && port == "80") ||
           (scheme == "ssh" && port == "22") || (scheme == "git" && port == "9418") ||
           (scheme == "git+ssh" && port == "22");
}

std::string local_path(std::string_view path) {
    if (path.empty() || path[0] != '/') return "";
    std::vector<std::string> segments;
    if (!split_path(path, segments)) return "";
    return "/" + join(segments);
}

// host[:port] and path of a remote URL, made canonical.
std::string remote(std::string_view scheme, std::string_view authority, std::string_view path) {
    if (auto at = authority.rfind('@'); at != std::string_view::npos) authority = authority.substr(at + 1);
    std::string host(authority);
    if (auto colon = authority.rfind(':'); colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
        std::string_view port = authority.substr(colon + 1);
        host = std::string(authority.substr(0, colon));
        if (!port.empty() && !default_port(scheme, port)) host += ":" + std::string(port);
    }
    if (host.empty()) return "";
    std::vector<std::string> segments;
    if (!split_path(path, segments) || segments.empty()) return "";
    std::string& last = segments.back();
    if (last.size() > 4 && last.compare(last.size() - 4, 4, ".git") == 0) last.resize(last.size() - 4);
    return lower(host + "/" + join(segments));
}

}  // namespace

std::string canonical_repo_url(std::string_view url) {
    for (char c : url)
        if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f || c == '%' || c == '\\') return "";
    if (url.rfind("file://", 0) == 0) return local_path(url.substr(7));
    if (!url.empty() && url[0] == '/') return local_path(url);
    if (auto sep = url.find("://"); sep != std::string_view::npos) {
        std::string scheme = lower(url.substr(0, sep));
        std::string_view rest = url.substr(sep + 3);
        size_t slash = rest.find('/');
        if (slash == std::string_view::npos) return "";
        return remote(scheme, rest.substr(0, slash), rest.substr(slash));
    }
    // scp-like: [user@]host:path
    auto colon = url.find(':');
    if (colon == std::string_view::npos || colon == 0) return "";
    std::string_view authority = url.substr(0, colon);
    if (authority.find('/') != std::string_view::npos) return "";
    if (auto at = authority.rfind('@'); at != std::string_view::npos) authority = authority.substr(at + 1);
    return remote("ssh", authority, url.substr(colon + 1));
}

std::string canonical_repository(const JobSpec& spec) {
    if (spec.source == "github") {
        auto name = spec.labels.find("github_repo");  // github::kLabelRepo (the webhook sets it)
        std::string from_url = canonical_repo_url(spec.repo);
        if (name == spec.labels.end() || from_url.empty()) return "";
        // The host of a local clone URL (a mirror on kilnd's host) is taken to be github.com.
        std::string host = from_url[0] == '/' ? "github.com" : from_url.substr(0, from_url.find('/'));
        std::vector<std::string> segments;
        if (!split_path(name->second, segments) || segments.size() != 2) return "";
        for (const auto& s : segments)
            for (char c : s)
                if (static_cast<unsigned char>(c) <= ' ' || c == '%' || c == '\\' || c == ':') return "";
        return lower(host + "/" + join(segments));
    }
    return canonical_repo_url(spec.repo);
}

std::string job_branch(const JobSpec& spec) {
    auto label = [&](const char* key) {
        auto it = spec.labels.find(key);
        return it == spec.labels.end() ? std::string() : it->second;
    };
    std::string ref;
    if (spec.source == "github") {
        const std::string event = label("github_event");
        ref = label("github_ref");
        if (event == "push") return ref.rfind("refs/heads/", 0) == 0 ? ref.substr(11) : "";
        if (event == "pull_request") return ref.rfind("refs/", 0) == 0 ? "" : ref;
        return "";
    }
    // A job from the API: only when kilnd itself resolved the ref to the commit.
    if (!spec.sha.empty() || spec.ref.empty() || spec.ref == "HEAD") return "";
    if (spec.ref.rfind("refs/heads/", 0) == 0) return spec.ref.substr(11);
    if (spec.ref.rfind("refs/", 0) == 0) return "";
    return spec.ref;
}

std::string repo_tag(const std::string& canonical) { return sha256_hex(canonical).substr(0, 16); }

}  // namespace kiln::ci
