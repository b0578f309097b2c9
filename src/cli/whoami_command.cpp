// `kiln whoami`: the token's name, scopes, quotas and what it uses of them (GET /v1/token), so a
// user can see why kilnd would answer 403 or 429 before it does.
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

Result<int> whoami(ApiClient& client, const ApiOptions& api) {
    json answer = TRY(client.call("GET", "/v1/token"));
    if (api.json_output) {
        print_json(answer);
        return 0;
    }
    if (!answer.is_object() || !answer.contains("scopes") || !answer["scopes"].is_array())
        return make_error(ErrorCode::CliProtocol, "kilnd's token answer has no scopes array");
    std::string scopes;
    for (const auto& s : answer["scopes"]) scopes += (scopes.empty() ? "" : ",") + (s.is_string() ? s.get<std::string>() : "?");
    std::string out = "token   " + field(answer, "name") + " (id " + field(answer, "id") + ")\n";
    out += "scopes  " + (scopes.empty() ? std::string("none") : scopes) + "\n";
    std::vector<std::vector<std::string>> rows = {{"QUOTA", "USED", "LIMIT"}};
    const json& quota = answer.contains("quota") && answer["quota"].is_object() ? answer["quota"] : json::object();
    const json& usage = answer.contains("usage") && answer["usage"].is_object() ? answer["usage"] : json::object();
    for (const auto& [name, limit] : quota.items())
        rows.push_back({name, usage.contains(name) ? usage[name].dump() : "-", limit.is_null() ? "unlimited" : limit.dump()});
    print_out(out + format_table(rows));
    return 0;
}

}  // namespace

void add_whoami_command(CLI::App& app, CliContext& ctx) {
    auto options = std::make_shared<ApiOptions>();
    auto* cmd = app.add_subcommand("whoami", "Show the token's name, scopes and quotas (docs/tenants.md)");
    add_api_options(cmd, *options);
    cmd->callback([options, &ctx] {
        ctx.exit_code = run_with_client(*options, [&](ApiClient& client) { return whoami(client, *options); });
    });
}

}  // namespace kiln::cli
