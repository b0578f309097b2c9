// `kiln sandbox create|list|get|snapshot|fork|rm` (exec, cp, pause and resume in files of their own): sandboxes on kilnd, over its REST API.
#include "cli/sandbox_commands.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/api_client.h"
#include "cli/output.h"

namespace kiln::cli {
namespace {

using nlohmann::json;

std::string metadata_text(const json& sandbox) {
    if (!sandbox.contains("metadata") || !sandbox["metadata"].is_object() || sandbox["metadata"].empty()) return "-";
    std::string out;
    for (const auto& [k, v] : sandbox["metadata"].items()) {
        if (!out.empty()) out += ",";
        out += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
    }
    return out;
}

// "open", "none", "allowlist 10.0.0.0/8 192.0.2.7:443".
std::string network_text(const json& policy) {
    std::string out = policy.value("mode", "?");
    if (policy.contains("allow") && policy["allow"].is_array())
        for (const auto& a : policy["allow"]) out += " " + (a.is_string() ? a.get<std::string>() : a.dump());
    return out;
}

// The human view of one sandbox: "key: value" lines.
void print_sandbox(const json& s) {
    std::vector<std::vector<std::string>> rows = {
        {"id:", field(s, "id")},
        {"state:", field(s, "state")},
        {"template:", field(s, "template")},
        {"created:", field(s, "created_at") + " (" + relative_time(field(s, "created_at")) + ")"},
        {"expires:", field(s, "expires_at") + " (" + relative_time(field(s, "expires_at")) + ")"},
    };
    if (s.contains("ended_at")) rows.push_back({"ended:", field(s, "ended_at") + " (" + relative_time(field(s, "ended_at")) + ")"});
    rows.push_back({"vcpus:", field(s, "vcpus")});
    rows.push_back({"memory:", field(s, "memory_mib") + " MiB"});
    rows.push_back({"metadata:", metadata_text(s)});
    if (s.contains("network") && s["network"].is_object()) rows.push_back({"network:", network_text(s["network"])});
    if (s.contains("parent_id")) rows.push_back({"parent:", field(s, "parent_id")});
    if (s.value("auto_pause", false)) rows.push_back({"auto pause:", "yes (the end of the TTL pauses it)"});
    if (s.contains("paused_at")) {
        rows.push_back({"paused:", field(s, "paused_at") + " (" + relative_time(field(s, "paused_at")) + ")"});
        rows.push_back({"ttl left:", field(s, "ttl_left_seconds") + " s (counts again from the resume)"});
        rows.push_back({"snapshot:", field(s, "paused_bytes") + " bytes on its host's disk"});
    }
    if (s.contains("create_ms") && s["create_ms"].is_number()) {
        char ms[32];
        std::snprintf(ms, sizeof ms, "%.1f ms", s["create_ms"].get<double>());
        rows.push_back({"create time:", ms});
    }
    if (s.contains("error")) rows.push_back({"error:", field(s, "error")});
    print_out(format_table(rows));
}

json to_json_object(const std::map<std::string, std::string>& pairs) {
    json out = json::object();
    for (const auto& [k, v] : pairs) out[k] = v;
    return out;
}

struct CreateOptions {
    ApiOptions api;
    std::string template_id;
    int64_t ttl_seconds = 0;
    uint32_t vcpus = 0;
    uint32_t memory_mib = 0;
    std::vector<std::string> metadata;
    std::vector<std::string> env;
    std::string network;             // none | open | allowlist (then --allow)
    std::vector<std::string> allow;  // allowlist entries
    bool auto_pause = false;
};

Result<int> sandbox_create(ApiClient& client, const CreateOptions& o) {
    json body = json::object();
    if (!o.template_id.empty()) body["template"] = o.template_id;
    if (o.ttl_seconds > 0) body["ttl_seconds"] = o.ttl_seconds;
    if (o.vcpus > 0) body["vcpus"] = o.vcpus;
    if (o.memory_mib > 0) body["memory_mib"] = o.memory_mib;
    if (!o.metadata.empty()) body["metadata"] = to_json_object(TRY(parse_pairs(o.metadata, "--meta")));
    if (!o.env.empty()) body["env"] = to_json_object(TRY(parse_pairs(o.env, "--env")));
    // kilnd validates the policy (and names what is wrong); --allow alone means an allowlist.
    std::string mode = o.network.empty() && !o.allow.empty() ? "allowlist" : o.network;
    if (!mode.empty()) {
        body["network"] = {{"mode", mode}};
        if (!o.allow.empty()) body["network"]["allow"] = o.allow;
    }
    if (o.auto_pause) body["auto_pause"] = true;
    WaitingLine waiting("creating a sandbox from " + (o.template_id.empty() ? std::string("tiny") : o.template_id),
                        o.api.verbose);
    json sandbox = TRY(client.call("POST", "/v1/sandboxes", body));
    waiting.done();
    if (o.api.json_output) {
        print_json(sandbox);
    } else {
        if (o.api.verbose || ::isatty(2)) {
            std::string took;
            if (sandbox.contains("create_ms") && sandbox["create_ms"].is_number())
                took = " in " + std::to_string(std::lround(sandbox["create_ms"].get<double>())) + " ms";
            print_error("sandbox " + field(sandbox, "id") + " ready" + took);
        }
        print_out(field(sandbox, "id") + "\n");
    }
    return 0;
}

struct ListOptions {
    ApiOptions api;
    std::vector<std::string> metadata;
    bool all = false;
    std::string state;
};

Result<int> sandbox_list(ApiClient& client, const ListOptions& o) {
    std::string query;
    auto add = [&](const std::string& k, const std::string& v) {
        query += (query.empty() ? "?" : "&") + url_encode(k) + "=" + url_encode(v);
    };
    if (o.all && !o.state.empty())
        return make_error(ErrorCode::CliUsage, "sandbox list: --all and --state cannot be combined");
    if (o.all) add("state", "all");
    if (!o.state.empty()) add("state", o.state);
    for (const auto& [k, v] : TRY(parse_pairs(o.metadata, "--meta"))) add("metadata." + k, v);
    json answer = TRY(client.call("GET", "/v1/sandboxes" + query));
    if (o.api.json_output) {
        print_json(answer);
        return 0;
    }
    if (!answer.contains("sandboxes") || !answer["sandboxes"].is_array())
        return make_error(ErrorCode::CliProtocol, "kilnd's sandbox list has no sandboxes array");
    std::vector<std::vector<std::string>> rows = {{"ID", "STATE", "TEMPLATE", "CREATED", "EXPIRES", "METADATA"}};
    for (const auto& s : answer["sandboxes"])
        rows.push_back({field(s, "id"), field(s, "state"), field(s, "template"), relative_time(field(s, "created_at")),
                        // An ended sandbox no longer expires: say when it ended instead; a paused
                        // one's TTL stands still.
                        s.contains("ended_at")    ? "ended " + relative_time(field(s, "ended_at"))
                        : s.contains("paused_at") ? "paused"
                                                  : relative_time(field(s, "expires_at")),
                        metadata_text(s)});
    print_out(format_table(rows));
    return 0;
}

Result<int> sandbox_get(ApiClient& client, const ApiOptions& api, const std::string& id) {
    json sandbox = TRY(client.call("GET", TRY(sandbox_path(id))));
    if (api.json_output) print_json(sandbox);
    else print_sandbox(sandbox);
    return 0;
}

Result<int> sandbox_snapshot(ApiClient& client, const ApiOptions& api, const std::string& id, const std::string& name) {
    json body = json::object();
    if (!name.empty()) body["name"] = name;
    WaitingLine waiting("snapshotting " + id, api.verbose);
    json snapshot = TRY(client.call("POST", TRY(sandbox_path(id)) + "/snapshot", body));
    waiting.done();
    if (api.json_output) print_json(snapshot);
    else print_out(field(snapshot, "id") + "\n");
    return 0;
}

struct ForkOptions {
    ApiOptions api;
    std::string id;
    int64_t ttl_seconds = 0;
    std::vector<std::string> metadata;
};

Result<int> sandbox_fork(ApiClient& client, const ForkOptions& o) {
    json body = json::object();
    if (o.ttl_seconds > 0) body["ttl_seconds"] = o.ttl_seconds;
    if (!o.metadata.empty()) body["metadata"] = to_json_object(TRY(parse_pairs(o.metadata, "--meta")));
    WaitingLine waiting("forking " + o.id, o.api.verbose);
    json child = TRY(client.call("POST", TRY(sandbox_path(o.id)) + "/fork", body));
    waiting.done();
    if (o.api.json_output) print_json(child);
    else print_out(field(child, "id") + "\n");
    return 0;
}

// Removes every id it is given, even after a failure; exits 125 if any failed.
Result<int> sandbox_rm(ApiClient& client, const ApiOptions& api, const std::vector<std::string>& ids) {
    int code = 0;
    for (const auto& id : ids) {
        auto path = sandbox_path(id);
        Result<json> done = path.ok() ? client.call("DELETE", *path) : Result<json>(path.error());
        if (!done.ok()) {
            print_api_error(done.error());
            code = kExitKilnError;
            continue;
        }
        if (!api.json_output) print_out(id + "\n");  // the API answers 204 with no body: --json prints nothing
    }
    return code;
}

}  // namespace

void add_sandbox_commands(CLI::App& app, CliContext& ctx) {
    auto* group = app.add_subcommand("sandbox", "Sandboxes on kilnd ($KILN_URL, $KILN_TOKEN)");
    group->require_subcommand(1);

    auto create = std::make_shared<CreateOptions>();
    auto* c = group->add_subcommand("create", "Create a sandbox and print its id once it is ready for exec");
    c->add_option("-t,--template", create->template_id, "Template or snapshot id (default: kilnd's, tiny)");
    c->add_option("--ttl", create->ttl_seconds, "Seconds until kilnd destroys it (default: kilnd's, 600)")
        ->check(CLI::PositiveNumber);
    c->add_option("--vcpus", create->vcpus, "Must match the template's (default: the template's)")
        ->check(CLI::PositiveNumber);
    c->add_option("--memory-mib", create->memory_mib, "Must match the template's (default: the template's)")
        ->check(CLI::PositiveNumber);
    c->add_option("-m,--meta", create->metadata, "KEY=VALUE label (repeatable)");
    c->add_option("-e,--env", create->env, "NAME=VALUE for every exec in it (repeatable)");
    c->add_option("--network", create->network, "none | allowlist | open (default: kilnd's, none)")
        ->check(CLI::IsMember({"none", "allowlist", "open"}));
    c->add_option("--allow", create->allow, "A.B.C.D[/N][:PORT] the sandbox may reach (repeatable; implies allowlist)");
    c->add_flag("--auto-pause", create->auto_pause, "At the end of the TTL pause it instead of destroying it");
    add_api_options(c, create->api);
    c->callback([create, &ctx] {
        ctx.exit_code = run_with_client(create->api, [&](ApiClient& client) { return sandbox_create(client, *create); });
    });

    auto list = std::make_shared<ListOptions>();
    auto* l = group->add_subcommand("list", "List your sandboxes (live ones unless --all), newest first");
    l->alias("ls");
    l->add_option("-m,--meta", list->metadata, "Only those with label KEY=VALUE (repeatable, all must match)");
    l->add_flag("-a,--all", list->all, "Include ended sandboxes (deleted, expired, lost, failed); paused ones are listed anyway");
    l->add_option("--state", list->state, "Only sandboxes in this state");
    add_api_options(l, list->api);
    l->callback([list, &ctx] {
        ctx.exit_code = run_with_client(list->api, [&](ApiClient& client) { return sandbox_list(client, *list); });
    });

    auto get_api = std::make_shared<ApiOptions>();
    auto get_id = std::make_shared<std::string>();
    auto* g = group->add_subcommand("get", "Show one sandbox, in any state");
    g->add_option("id", *get_id, "Sandbox id")->required();
    add_api_options(g, *get_api);
    g->callback([get_api, get_id, &ctx] {
        ctx.exit_code =
            run_with_client(*get_api, [&](ApiClient& client) { return sandbox_get(client, *get_api, *get_id); });
    });

    add_sandbox_exec_command(*group, ctx);
    add_sandbox_cp_command(*group, ctx);
    add_sandbox_pause_commands(*group, ctx);
    add_sandbox_pause_commands(app, ctx);  // `kiln pause ID`, `kiln resume ID`

    struct SnapshotArgs {
        ApiOptions api;
        std::string id;
        std::string name;
    };
    auto snap = std::make_shared<SnapshotArgs>();
    auto* s = group->add_subcommand("snapshot", "Snapshot a running sandbox (it runs on); prints the snapshot id, "
                                                "which works as a template");
    s->add_option("id", snap->id, "Sandbox id")->required();
    s->add_option("-n,--name", snap->name, "A name for the snapshot");
    add_api_options(s, snap->api);
    s->callback([snap, &ctx] {
        ctx.exit_code = run_with_client(
            snap->api, [&](ApiClient& client) { return sandbox_snapshot(client, snap->api, snap->id, snap->name); });
    });

    auto fork = std::make_shared<ForkOptions>();
    auto* f = group->add_subcommand("fork", "Fork a running sandbox; prints the new sandbox's id");
    f->add_option("id", fork->id, "Sandbox id")->required();
    f->add_option("--ttl", fork->ttl_seconds, "The child's TTL in seconds (default: kilnd's)")->check(CLI::PositiveNumber);
    f->add_option("-m,--meta", fork->metadata, "The child's labels, KEY=VALUE (default: the parent's)");
    add_api_options(f, fork->api);
    f->callback([fork, &ctx] {
        ctx.exit_code = run_with_client(fork->api, [&](ApiClient& client) { return sandbox_fork(client, *fork); });
    });

    auto rm_api = std::make_shared<ApiOptions>();
    auto rm_ids = std::make_shared<std::vector<std::string>>();
    auto* r = group->add_subcommand("rm", "Destroy sandboxes (their VM and files); prints each id removed");
    r->alias("delete");
    r->add_option("ids", *rm_ids, "Sandbox ids")->required();
    add_api_options(r, *rm_api);
    r->callback([rm_api, rm_ids, &ctx] {
        ctx.exit_code =
            run_with_client(*rm_api, [&](ApiClient& client) { return sandbox_rm(client, *rm_api, *rm_ids); });
    });
}

}  // namespace kiln::cli
