// kilnd: the Kiln sandbox daemon. `kilnd [serve]` runs it; `kilnd token create|list|revoke` manages tokens.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <algorithm>

#include "daemon/config.h"
#include "kilnd/serve_command.h"

extern char** environ;

int main(int argc, char** argv) {
    using namespace kiln::daemon;
    CLI::App app{"kilnd: the Kiln sandbox daemon (REST API under /v1, see api/openapi.yaml)"};
    app.require_subcommand(0, 1);
    CommandContext ctx;
    ctx.envp = environ;
    app.add_option("--config", ctx.config_file, "config file: a JSON object or key=value lines");
    // Every config key is also a flag (--max-sandboxes ...); flags win over env and the file.
    std::map<std::string, std::string> values;
    std::vector<std::pair<std::string, CLI::Option*>> options;
    for (const auto& [key, description] : config_keys()) {
        std::string flag = "--" + key;
        std::replace(flag.begin(), flag.end(), '_', '-');
        options.emplace_back(key, app.add_option(flag, values[key], description));
    }
    app.set_config();     // no CLI11 config files: --config is ours
    app.fallthrough();    // `kilnd serve --listen ...` and `kilnd token list --data-dir ...` work too

    auto* serve = app.add_subcommand("serve", "run the daemon (the default)");
    auto* token = app.add_subcommand("token", "manage API tokens (local: needs the data dir)");
    token->require_subcommand(1);
    std::string id_or_name;
    TokenCreateOptions create_options;
    bool json = false;
    auto* create = token->add_subcommand("create", "create a token and print it once");
    create->add_option("--name", create_options.name, "a label for the token")->required();
    create->add_option("--scope", create_options.scopes,
                       "what it may do, comma-separated: admin, sandboxes, ci:submit, ci:trusted, ci:read "
                       "(docs/tenants.md)")->required();
    create->add_option("--quota", create_options.quota,
                       "its own limits, e.g. sandboxes=4,memory_mib=4096,snapshots=10,snapshot_mib=20480,"
                       "queued_jobs=20,lifetime_seconds=86400 (others: config token_quota)");
    create->add_flag("--json", json, "print {id, name, token}");
    create->add_flag("--e2b", create_options.e2b,
                     "print it as an E2B API key (e2b_ + 40 hex digits) for E2B's SDKs (docs/e2b.md)");
    auto* list = token->add_subcommand("list", "list tokens (never the tokens themselves)");
    list->add_flag("--json", json, "JSON output");
    auto* revoke = token->add_subcommand("revoke", "revoke a token by id, or every token of a name");
    revoke->add_option("token", id_or_name, "id or name")->required();

    CLI11_PARSE(app, argc, argv);
    for (const auto& [key, option] : options)
        if (option->count() > 0) ctx.flags[key] = values[key];

    if (create->parsed()) return run_token_create(ctx, create_options, json);
    if (list->parsed()) return run_token_list(ctx, json);
    if (revoke->parsed()) return run_token_revoke(ctx, id_or_name);
    (void)serve;
    return run_serve(ctx);
}
