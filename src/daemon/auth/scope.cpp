// Scope names and quota text (see scope.h).
#include "daemon/auth/scope.h"

#include <charconv>

#include <nlohmann/json.hpp>

namespace kiln::daemon {
namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return s;
}

template <class F>
void for_each_item(std::string_view text, F&& f) {
    while (true) {
        size_t comma = text.find(',');
        f(trim(text.substr(0, comma)));
        if (comma == std::string_view::npos) return;
        text.remove_prefix(comma + 1);
    }
}

struct QuotaField {
    const char* name;
    std::optional<int64_t> TokenQuota::*member;
};
constexpr QuotaField kQuotaFields[] = {
    {"sandboxes", &TokenQuota::sandboxes},       {"memory_mib", &TokenQuota::memory_mib},
    {"snapshots", &TokenQuota::snapshots},       {"snapshot_mib", &TokenQuota::snapshot_mib},
    {"queued_jobs", &TokenQuota::queued_jobs},   {"lifetime_seconds", &TokenQuota::lifetime_seconds},
};

std::string known_quota_keys() {
    std::string out;
    for (const auto& f : kQuotaFields) out += (out.empty() ? "" : ", ") + std::string(f.name);
    return out;
}

}  // namespace

std::string_view scope_name(Scope scope) {
    switch (scope) {
        case Scope::Admin: return "admin";
        case Scope::Sandboxes: return "sandboxes";
        case Scope::CiSubmit: return "ci:submit";
        case Scope::CiTrusted: return "ci:trusted";
        case Scope::CiRead: return "ci:read";
    }
    return "?";
}

std::optional<Scope> parse_scope(std::string_view name) {
    for (Scope s : kAllScopes)
        if (scope_name(s) == name) return s;
    return std::nullopt;
}

Result<ScopeSet> parse_scope_list(std::string_view text) {
    ScopeSet set = 0;
    std::optional<Error> problem;
    for_each_item(text, [&](std::string_view item) {
        if (problem) return;
        auto scope = parse_scope(item);
        if (!scope) {
            problem = make_error(ErrorCode::InvalidArgument,
                                 (item.empty() ? std::string("an empty scope") : "unknown scope '" + std::string(item) + "'") +
                                     "; scopes are admin, sandboxes, ci:submit, ci:trusted, ci:read");
            return;
        }
        if (set & static_cast<uint32_t>(*scope)) {
            problem = make_error(ErrorCode::InvalidArgument, "scope '" + std::string(item) + "' is named twice");
            return;
        }
        set |= static_cast<uint32_t>(*scope);
    });
    if (problem) return *problem;
    return set;
}

std::vector<std::string> scope_names(ScopeSet set) {
    std::vector<std::string> out;
    for (Scope s : kAllScopes)
        if (set & static_cast<uint32_t>(s)) out.emplace_back(scope_name(s));
    return out;
}

std::string scope_list(ScopeSet set) {
    std::string out;
    for (const auto& name : scope_names(set)) out += (out.empty() ? "" : ",") + name;
    return out;
}

Result<TokenQuota> parse_quota_list(std::string_view text) {
    TokenQuota quota;
    std::optional<Error> problem;
    for_each_item(text, [&](std::string_view item) {
        if (problem) return;
        size_t eq = item.find('=');
        std::string_view key = trim(item.substr(0, eq));
        const QuotaField* field = nullptr;
        for (const auto& f : kQuotaFields)
            if (key == f.name) field = &f;
        if (eq == std::string_view::npos || !field) {
            problem = make_error(ErrorCode::InvalidArgument,
                                 "quota '" + std::string(item) + "' is not key=value with a key of " + known_quota_keys());
            return;
        }
        std::string_view value = trim(item.substr(eq + 1));
        int64_t n = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (ec != std::errc() || end != value.data() + value.size() || n < 0) {
            problem = make_error(ErrorCode::InvalidArgument, "quota " + std::string(key) + " must be a whole number >= 0");
            return;
        }
        quota.*(field->member) = n;
    });
    if (problem) return *problem;
    return quota;
}

std::string quota_json(const TokenQuota& quota) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& f : kQuotaFields)
        if (quota.*(f.member)) j[f.name] = *(quota.*(f.member));
    return j.dump();
}

TokenQuota parse_quota_json(const std::string& text) {
    TokenQuota quota;
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_object()) return quota;
    for (const auto& f : kQuotaFields) {
        auto it = j.find(f.name);
        if (it != j.end() && it->is_number_integer() && it->get<int64_t>() >= 0) quota.*(f.member) = it->get<int64_t>();
    }
    return quota;
}

TokenQuota with_defaults(TokenQuota quota, const TokenQuota& defaults) {
    for (const auto& f : kQuotaFields)
        if (!(quota.*(f.member))) quota.*(f.member) = defaults.*(f.member);
    return quota;
}

}  // namespace kiln::daemon
