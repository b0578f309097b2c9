// kilnd's commands: serve (the daemon) and token create|list|revoke (local administration).
#pragma once

#include <map>
#include <string>

namespace kiln::daemon {

struct CommandContext {
    std::string config_file;                   // --config
    std::map<std::string, std::string> flags;  // config keys given as flags
    char** envp = nullptr;
};

int run_serve(const CommandContext& ctx);
struct TokenCreateOptions {
    std::string name;
    std::string scopes;  // "sandboxes,ci:submit" (required)
    std::string quota;   // "sandboxes=4,..." (optional; unset keys take config token_quota)
    bool e2b = false;    // the E2B API key form, e2b_ + 40 hex (docs/e2b.md)
};
int run_token_create(const CommandContext& ctx, const TokenCreateOptions& options, bool json);
int run_token_list(const CommandContext& ctx, bool json);
int run_token_revoke(const CommandContext& ctx, const std::string& id_or_name);

}  // namespace kiln::daemon
