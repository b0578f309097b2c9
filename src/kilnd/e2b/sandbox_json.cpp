// E2B's control-plane bodies; see sandbox_json.h.
#include "kilnd/e2b/sandbox_json.h"

#include "base/json_log.h"

namespace kiln::daemon::e2b {

using nlohmann::json;

namespace {

Error invalid(const std::string& message) { return make_error(ErrorCode::InvalidArgument, message); }

Result<Labels> string_map(const json& value, const std::string& field) {
    Labels out;
    if (value.is_null()) return out;
    if (!value.is_object()) return invalid(field + " must be an object of strings");
    for (const auto& [key, item] : value.items()) {
        if (!item.is_string()) return invalid(field + "." + key + " must be a string");
        out[key] = item.get<std::string>();
    }
    return out;
}

Result<std::vector<std::string>> string_list(const json& body, const std::string& field) {
    std::vector<std::string> out;
    const auto it = body.find(field);
    if (it == body.end() || it->is_null()) return out;
    if (!it->is_array()) return invalid("network." + field + " must be an array of strings");
    for (const auto& item : *it) {
        if (!item.is_string()) return invalid("network." + field + " must be an array of strings");
        out.push_back(item.get<std::string>());
    }
    return out;
}

// E2B's egress fields. denyOut ["0.0.0.0/0"] with allowOut addresses is Kiln's allowlist; allowOut
// alone adds nothing to an open network; anything else has no Kiln equivalent.
Result<std::optional<net::NetworkPolicy>> parse_network(const json& network, std::optional<bool> internet) {
    std::optional<net::NetworkPolicy> policy;
    if (internet) policy = net::NetworkPolicy{*internet ? net::NetworkMode::Open : net::NetworkMode::None, {}};
    if (network.is_null()) return policy;
    if (!network.is_object()) return invalid("network must be an object");
    auto allow_out = TRY(string_list(network, "allowOut"));
    auto deny_out = TRY(string_list(network, "denyOut"));
    if (deny_out.empty()) return policy;
    if (deny_out.size() != 1 || deny_out[0] != "0.0.0.0/0")
        return invalid("network.denyOut: Kiln denies either nothing or everything (\"0.0.0.0/0\") outside allowOut");
    if (internet && !*internet && !allow_out.empty())
        return invalid("allow_internet_access false and network.allowOut contradict each other");
    net::NetworkPolicy allowlist{allow_out.empty() ? net::NetworkMode::None : net::NetworkMode::Allowlist, {}};
    if (allow_out.size() > net::kMaxAllowRules)
        return invalid("network.allowOut has more than " + std::to_string(net::kMaxAllowRules) + " entries");
    for (const auto& entry : allow_out) {
        auto rule = net::parse_allow_rule(entry);
        if (!rule.ok())
            return invalid("network.allowOut '" + entry.substr(0, 64) + "': Kiln allows IPv4 addresses and networks, not names (" +
                           rule.error().message + ")");
        allowlist.allow.push_back(*rule);
    }
    return std::optional<net::NetworkPolicy>(allowlist);
}

bool truthy(const json& body, const char* field) {
    auto it = body.find(field);
    return it != body.end() && it->is_boolean() && it->get<bool>();
}

bool present(const json& body, const char* field) {
    auto it = body.find(field);
    return it != body.end() && !it->is_null();
}

}  // namespace

Result<CreateRequest> parse_new_sandbox(std::string_view text) {
    json body = json::parse(text, nullptr, false);
    if (body.is_discarded()) return make_error(ErrorCode::MalformedBody, "the body is not JSON");
    if (!body.is_object()) return invalid("the body must be a JSON object");

    CreateRequest request;
    auto tmpl = body.find("templateID");
    if (tmpl == body.end() || !tmpl->is_string() || tmpl->get<std::string>().empty())
        return invalid("templateID is required (E2B's default is base)");
    request.template_id = tmpl->get<std::string>();

    if (auto t = body.find("timeout"); t != body.end() && !t->is_null()) {
        if (!t->is_number_integer()) return invalid("timeout must be a whole number of seconds");
        request.ttl_seconds = t->get<int64_t>();
    } else {
        request.ttl_seconds = kDefaultTimeoutSeconds;
    }
    request.metadata = TRY(string_map(body.value("metadata", json()), "metadata"));
    request.env = TRY(string_map(body.value("envVars", json()), "envVars"));

    std::optional<bool> internet;
    if (auto a = body.find("allow_internet_access"); a != body.end() && !a->is_null()) {
        if (!a->is_boolean()) return invalid("allow_internet_access must be true or false");
        internet = a->get<bool>();
    }
    request.network = TRY(parse_network(body.value("network", json()), internet));

    // onTimeout: 'pause' (docs/pause.md: the end of the TTL pauses). Kiln's pause always keeps
    // memory, and resumes on connect only, never on traffic.
    request.auto_pause = truthy(body, "autoPause");
    if (auto m = body.find("autoPauseMemory"); m != body.end() && m->is_boolean() && !m->get<bool>())
        return invalid("autoPauseMemory false (keepMemory: false) is not supported: Kiln's pause keeps the memory");
    if (auto r = body.find("autoResume"); r != body.end() && r->is_object() && r->value("enabled", false) == true)
        return invalid("autoResume is not supported: a paused Kiln sandbox resumes on connect");
    if (present(body, "mcp")) return invalid("mcp is not supported by Kiln");
    if (present(body, "volumeMounts") && !body["volumeMounts"].empty()) return invalid("volumeMounts are not supported by Kiln");
    return request;
}

const char* e2b_state(SandboxState state) {
    return state == SandboxState::Pausing || state == SandboxState::Paused ? "paused" : "running";
}

bool visible_to_e2b(SandboxState state) {
    switch (state) {
        case SandboxState::Creating:
        case SandboxState::Running:
        case SandboxState::Pausing:
        case SandboxState::Paused:
        case SandboxState::Resuming: return true;
        case SandboxState::Deleting:
        case SandboxState::Deleted:
        case SandboxState::Expired:
        case SandboxState::Lost:
        case SandboxState::Failed: return false;
    }
    return false;
}

json render_sandbox(const SandboxInfo& info, const std::string& access_token) {
    return json{{"sandboxID", info.id},          {"templateID", info.template_id}, {"clientID", "kiln"},
                {"envdVersion", kEnvdVersion},   {"envdAccessToken", access_token}, {"trafficAccessToken", nullptr},
                {"domain", nullptr}};
}

json render_listed_sandbox(const SandboxInfo& info) {
    return json{{"sandboxID", info.id},
                {"templateID", info.template_id},
                {"clientID", "kiln"},
                {"startedAt", log::rfc3339_ms(info.created_at_ms)},
                {"endAt", log::rfc3339_ms(info.expires_at_ms)},
                {"cpuCount", info.vcpus},
                {"memoryMB", info.memory_mib},
                {"metadata", info.metadata},
                {"state", e2b_state(info.state())},
                {"envdVersion", kEnvdVersion}};
}

json render_sandbox_detail(const SandboxInfo& info, const std::string& access_token) {
    json out = render_listed_sandbox(info);
    out["envdAccessToken"] = access_token;
    out["domain"] = nullptr;
    out["allowInternetAccess"] = info.network.mode != net::NetworkMode::None;
    return out;
}

}  // namespace kiln::daemon::e2b
