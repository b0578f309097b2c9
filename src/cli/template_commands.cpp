// `kiln template list|rm`: what sandboxes can be created from (built-in templates and your snapshots).
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

Result<int> template_list(ApiClient& client, const ApiOptions& api) {
    json answer = TRY(client.call("GET", "/v1/templates"));
    if (api.json_output) {
        print_json(answer);
        return 0;
    }
    if (!answer.contains("templates") || !answer["templates"].is_array())
        return make_error(ErrorCode::CliProtocol, "kilnd's template list has no templates array");
    std::vector<std::vector<std::string>> rows = {{"ID", "KIND", "NAME", "READY", "VCPUS", "MEMORY", "CREATED"}};
    for (const auto& t : answer["templates"]) {
        std::string name = field(t, "name");
        if (name == "-") name = field(t, "image");
        rows.push_back({field(t, "id"), field(t, "kind"), name, t.value("ready", false) ? "yes" : "no",
                        field(t, "vcpus"), field(t, "memory_mib") + " MiB",
                        t.contains("created_at") ? relative_time(field(t, "created_at")) : "-"});
    }
    print_out(format_table(rows));
    return 0;
}

Result<int> template_rm(ApiClient& client, const ApiOptions& api, const std::vector<std::string>& ids) {
    int code = 0;
    for (const auto& id : ids) {
        // Template ids are names (tiny) or snapshot ids (snap-…): one path segment.
        if (id.empty() || id.find_first_of("/?#%") != std::string::npos || id == "." || id == "..") {
            print_error("'" + id + "' is not a template id");
            code = kExitKilnError;
            continue;
        }
        auto done = client.call("DELETE", "/v1/templates/" + url_encode(id));
        if (!done.ok()) {
            print_api_error(done.error());
            code = kExitKilnError;
            continue;
        }
        if (!api.json_output) print_out(id + "\n");  // 204, no body: --json prints nothing
    }
    return code;
}

}  // namespace

void add_template_commands(CLI::App& app, CliContext& ctx) {
    auto* group = app.add_subcommand("template", "Templates on kilnd: built-in images and your snapshots");
    group->require_subcommand(1);

    auto list_api = std::make_shared<ApiOptions>();
    auto* l = group->add_subcommand("list", "List the templates sandboxes can be created from");
    l->alias("ls");
    add_api_options(l, *list_api);
    l->callback([list_api, &ctx] {
        ctx.exit_code = run_with_client(*list_api, [&](ApiClient& client) { return template_list(client, *list_api); });
    });

    auto rm_api = std::make_shared<ApiOptions>();
    auto rm_ids = std::make_shared<std::vector<std::string>>();
    auto* r = group->add_subcommand(
        "rm", "Delete templates: a snapshot, or a built-in's baked snapshot (baked again on next use)");
    r->alias("delete");
    r->add_option("ids", *rm_ids, "Template ids")->required();
    add_api_options(r, *rm_api);
    r->callback([rm_api, rm_ids, &ctx] {
        ctx.exit_code =
            run_with_client(*rm_api, [&](ApiClient& client) { return template_rm(client, *rm_api, *rm_ids); });
    });
}

}  // namespace kiln::cli
