// `kiln hosts [list]`, `kiln hosts drain NAME`, `kiln hosts undrain NAME`: the fleet's hosts
// (admin; docs/fleet.md). A drained host takes no new sandboxes; its running ones finish.
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "cli/api_client.h"
#include "cli/cli_context.h"
#include "cli/output.h"

namespace kiln::cli {
namespace {

using nlohmann::json;

std::string seconds_ago(const json& h) {
    if (!h.contains("heartbeat_age_ms") || !h["heartbeat_age_ms"].is_number()) return "-";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1fs", h["heartbeat_age_ms"].get<double>() / 1000.0);
    return buf;
}

Result<int> host_list(ApiClient& client, const ApiOptions& api) {
    json answer = TRY(client.call("GET", "/v1/hosts"));
    if (api.json_output) {
        print_json(answer);
        return 0;
    }
    if (!answer.contains("hosts") || !answer["hosts"].is_array())
        return make_error(ErrorCode::CliProtocol, "kilnd's host list has no hosts array");
    std::vector<std::vector<std::string>> rows = {
        {"NAME", "STATE", "SANDBOXES", "MEMORY", "HEARTBEAT", "ACCEL", "VERSION", "URL"}};
    for (const auto& h : answer["hosts"]) {
        json cap = h.value("capacity", json::object());
        std::string name = field(h, "name") + (h.value("self", false) ? " *" : "");
        rows.push_back({name, field(h, "state"), field(h, "live_sandboxes") + "/" + field(cap, "max_sandboxes"),
                        field(h, "memory_mib_in_use") + "/" + field(cap, "max_memory_mib") + " MiB", seconds_ago(h),
                        field(h, "accel"), field(h, "version"), field(h, "url")});
    }
    print_out(format_table(rows));
    return 0;
}

Result<int> host_set_draining(ApiClient& client, const ApiOptions& api, const std::string& name, bool draining) {
    if (name.empty() || name.find_first_of("/?#%") != std::string::npos || name == "." || name == "..")
        return make_error(ErrorCode::CliUsage, "'" + name + "' is not a host name");
    json answer = TRY(client.call("POST", "/v1/hosts/" + url_encode(name) + (draining ? "/drain" : "/undrain"), json::object()));
    if (api.json_output) print_json(answer);
    else print_out(field(answer, "name") + " " + field(answer, "state") + "\n");
    return 0;
}

}  // namespace

void add_host_commands(CLI::App& app, CliContext& ctx) {
    auto list_api = std::make_shared<ApiOptions>();
    auto* group = app.add_subcommand("hosts", "The fleet's hosts: state, load, drain (admin token)");
    group->require_subcommand(0, 1);
    add_api_options(group, *list_api);
    // `kiln hosts` alone lists; with a subcommand that subcommand runs instead.
    group->callback([group, list_api, &ctx] {
        if (!group->get_subcommands().empty()) return;
        ctx.exit_code = run_with_client(*list_api, [&](ApiClient& client) { return host_list(client, *list_api); });
    });

    auto ls_api = std::make_shared<ApiOptions>();
    auto* l = group->add_subcommand("list", "List the hosts (the same as `kiln hosts`)");
    l->alias("ls");
    add_api_options(l, *ls_api);
    l->callback([ls_api, &ctx] {
        ctx.exit_code = run_with_client(*ls_api, [&](ApiClient& client) { return host_list(client, *ls_api); });
    });

    for (bool draining : {true, false}) {
        auto api = std::make_shared<ApiOptions>();
        auto name = std::make_shared<std::string>();
        auto* c = group->add_subcommand(draining ? "drain" : "undrain",
                                        draining ? "Stop placing new sandboxes on a host; its running ones finish"
                                                 : "Let a drained host take new sandboxes again");
        c->add_option("name", *name, "Host name (kiln hosts lists them)")->required();
        add_api_options(c, *api);
        c->callback([api, name, draining, &ctx] {
            ctx.exit_code = run_with_client(
                *api, [&](ApiClient& client) { return host_set_draining(client, *api, *name, draining); });
        });
    }
}

}  // namespace kiln::cli
