// SecretPolicy: parsing ci_secrets_policy and deciding who gets a secret (see secret_policy.h).
#include "ci/jobs/secret_policy.h"

#include <algorithm>
#include <sstream>

#include "base/json_log.h"
#include "base/secret_file.h"

#include "ci/jobs/canonical_repo.h"

namespace kiln::ci {
namespace {

bool is_secret_name(std::string_view s) {
    if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
    for (char c : s)
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    return true;
}

bool branch_matches(const std::string& pattern, const std::string& branch) {
    if (!pattern.empty() && pattern.back() == '*') return branch.rfind(pattern.substr(0, pattern.size() - 1), 0) == 0;
    return pattern == branch;
}

bool repository_matches(const std::string& entry, const std::string& repository) {
    if (entry == "*") return true;
    if (!entry.empty() && entry.back() == '/') return repository.rfind(entry, 0) == 0 && repository.size() > entry.size();
    return entry == repository;
}

std::string joined(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
    return out;
}

}  // namespace

std::string policy_repository(std::string_view entry) {
    if (entry == "*") return "*";
    bool prefix = entry.size() > 2 && entry.substr(entry.size() - 2) == "/*";
    if (prefix) entry.remove_suffix(2);
    std::string canonical;
    if (entry.find("://") != std::string_view::npos || (!entry.empty() && entry[0] == '/')) {
        canonical = canonical_repo_url(entry);
    } else {
        size_t slash = entry.find('/');
        size_t colon = entry.find(':');
        if (colon != std::string_view::npos && (slash == std::string_view::npos || colon < slash)) {
            canonical = canonical_repo_url(entry);  // scp-like git@host:owner/repo
        } else if (slash != std::string_view::npos) {
            std::string_view first = entry.substr(0, slash);
            // owner/repo (no dot in the first part: not a host name) is GitHub's.
            bool github_short = first.find('.') == std::string_view::npos && entry.find('/', slash + 1) == std::string_view::npos;
            canonical = canonical_repo_url((github_short ? "https://github.com/" : "https://") + std::string(entry));
        } else if (prefix && entry.find('.') == std::string_view::npos) {
            canonical = canonical_repo_url("https://github.com/" + std::string(entry));  // owner/*: a GitHub owner's
        }
    }
    if (canonical.empty()) return "";
    if (prefix && canonical[0] != '/' && canonical.find('/') == std::string::npos) return "";
    return prefix ? canonical + "/" : canonical;
}

Result<SecretPolicy> SecretPolicy::parse(std::string_view text) {
    SecretPolicy policy;
    std::istringstream in{std::string(text)};
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
        std::istringstream words(line);
        std::string name;
        if (!(words >> name)) continue;
        auto bad = [&](const std::string& why) {
            return make_error(ErrorCode::InvalidArgument, "ci_secrets_policy line " + std::to_string(number) + ": " + why);
        };
        if (!is_secret_name(name)) return bad("'" + name.substr(0, 64) + "' is not a secret name");
        Grant grant;
        for (std::string word; words >> word;) {
            if (word.rfind("branches=", 0) == 0) {
                std::istringstream list(word.substr(9));
                for (std::string b; std::getline(list, b, ',');)
                    if (!b.empty()) grant.branches.push_back(b);
                if (grant.branches.empty()) return bad("branches= names no branch");
                continue;
            }
            std::string repository = policy_repository(word);
            if (repository.empty())
                return bad("'" + word.substr(0, 200) + "' is not a repository (owner/repo, host/path, a git URL, "
                                                       "an absolute path, one of these ending in /*, or *)");
            grant.repositories.push_back(std::move(repository));
        }
        if (grant.repositories.empty()) return bad("secret " + name + " names no repository (write * for every one)");
        policy.m_grants[name].push_back(std::move(grant));
    }
    return policy;
}

SecretDecision SecretPolicy::decide(const std::string& name, const std::string& repository, const std::string& branch) const {
    auto it = m_grants.find(name);
    if (it == m_grants.end())
        return {false, "secret " + name + " is withheld: no repository is allowed it (ci_secrets_policy has no line for it)"};
    std::vector<std::string> wanted_branches;
    bool repository_allowed = false;
    for (const Grant& grant : it->second) {
        bool matches = false;
        for (const auto& r : grant.repositories)
            if (repository_matches(r, repository) && (r == "*" || !repository.empty())) matches = true;
        if (!matches) continue;
        repository_allowed = true;
        if (grant.branches.empty()) return {true, ""};
        for (const auto& b : grant.branches) {
            if (!branch.empty() && branch_matches(b, branch)) return {true, ""};
            wanted_branches.push_back(b);
        }
    }
    if (!repository_allowed)
        return {false, "secret " + name + " is withheld: it does not go to repository " +
                           (repository.empty() ? std::string("(none: the job's repository has no canonical name)") : repository)};
    return {false, "secret " + name + " is withheld: it goes to this repository only on branch " + joined(wanted_branches) +
                       (branch.empty() ? std::string(", and this job's commit is on no branch kilnd knows of")
                                       : ", not on " + branch)};
}

std::vector<std::string> SecretPolicy::names() const {
    std::vector<std::string> out;
    for (const auto& [name, grants] : m_grants) out.push_back(name);
    return out;
}

Result<SecretPolicy> load_secret_policy(const std::string& path, const std::vector<std::string>& configured) {
    SecretPolicy policy;
    if (!path.empty()) policy = TRY(SecretPolicy::parse(TRY(read_secret_file(path))));
    const std::vector<std::string> named = policy.names();
    for (const auto& name : configured)
        if (!std::binary_search(named.begin(), named.end(), name))
            log::warn("ci: secret goes to no job: ci_secrets_policy names no repository for it (docs/tenants-ci.md)",
                      {{"secret", name}});
    for (const auto& name : named)
        if (std::find(configured.begin(), configured.end(), name) == configured.end())
            log::warn("ci: ci_secrets_policy names a secret that is not configured", {{"secret", name}});
    return policy;
}

}  // namespace kiln::ci
