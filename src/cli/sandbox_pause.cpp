// `kiln sandbox pause|resume` (also `kiln pause|resume`): scale a sandbox to zero and back
// (docs/pause.md), over kilnd's REST API.
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "cli/api_client.h"
#include "cli/output.h"
#include "cli/sandbox_commands.h"

namespace kiln::cli {
namespace {

using nlohmann::json;

struct PauseOptions {
    ApiOptions api;
    std::vector<std::string> ids;
    int64_t ttl_seconds = 0;  // resume only; 0: the TTL left at the pause
};

// Acts on every id it is given, even after a failure; prints each id done (--json: each sandbox
// as kilnd answers it, one per line); exits 125 if any failed.
Result<int> pause_or_resume(ApiClient& client, const PauseOptions& o, const std::string& action) {
    int code = 0;
    for (const auto& id : o.ids) {
        json body = json::object();
        if (o.ttl_seconds > 0) body["ttl_seconds"] = o.ttl_seconds;
        auto path = sandbox_path(id);
        WaitingLine waiting((action == "pause" ? "pausing " : "resuming ") + id, o.api.verbose);
        Result<json> done = path.ok() ? client.call("POST", *path + "/" + action, body) : Result<json>(path.error());
        waiting.done();
        if (!done.ok()) {
            print_api_error(done.error());
            code = kExitKilnError;
            continue;
        }
        if (o.api.json_output) print_json(*done);
        else print_out(id + "\n");
    }
    return code;
}

}  // namespace

void add_sandbox_pause_commands(CLI::App& parent, CliContext& ctx) {
    auto pause = std::make_shared<PauseOptions>();
    auto* p = parent.add_subcommand("pause", "Pause running sandboxes: memory and disk saved, VM stopped, TTL stopped; "
                                             "prints each id paused");
    p->add_option("ids", pause->ids, "Sandbox ids")->required();
    add_api_options(p, pause->api);
    p->callback([pause, &ctx] {
        ctx.exit_code = run_with_client(pause->api, [&](ApiClient& client) { return pause_or_resume(client, *pause, "pause"); });
    });

    auto resume = std::make_shared<PauseOptions>();
    auto* r = parent.add_subcommand("resume", "Resume paused sandboxes (same id, files and processes); prints each id "
                                              "once it is ready for exec");
    r->add_option("ids", resume->ids, "Sandbox ids")->required();
    r->add_option("--ttl", resume->ttl_seconds, "TTL in seconds from now (default: what was left at the pause)")
        ->check(CLI::PositiveNumber);
    add_api_options(r, resume->api);
    r->callback([resume, &ctx] {
        ctx.exit_code = run_with_client(resume->api, [&](ApiClient& client) { return pause_or_resume(client, *resume, "resume"); });
    });
}

}  // namespace kiln::cli
