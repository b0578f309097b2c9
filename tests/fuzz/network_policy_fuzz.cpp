// libFuzzer target: the sandbox network policy (an API client's JSON) is accepted or refused, never a crash,
// and whatever is accepted round-trips through its canonical form and yields a loadable-looking ruleset.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "daemon/net/egress_options.h"
#include "daemon/net/network_policy.h"
#include "daemon/net/nft_rules.h"

using namespace kiln::daemon::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 64 * 1024) return 0;  // the HTTP layer caps bodies long before this
    std::string_view text(reinterpret_cast<const char*>(data), size);
    (void)parse_allow_rule(text);
    (void)parse_open_allow(text);  // kilnd's network_open_allow: the same entries, comma-separated
    auto policy = parse_network_policy_text(text);
    if (!policy.ok()) return 0;
    // Canonical form: parsing what we print gives the same policy back.
    auto again = parse_network_policy(to_json(*policy));
    if (!again.ok() || !(*again == *policy)) std::abort();
    SandboxRulesInput input;
    input.policy = *policy;
    input.pool = AllowRule{0x0ac90000, 16, 0};
    input.dns_resolver = 0x0affff35;  // open's rules then name the resolver too
    std::string rules = sandbox_ruleset(input);
    // Nothing from the client reaches the ruleset but numbers: no quote, brace or newline injection.
    for (const auto& rule : policy->allow)
        if (rules.find(rule.prefix == 32 ? format_ipv4(rule.network) : rule.to_string().substr(0, rule.to_string().find(':'))) ==
            std::string::npos)
            std::abort();
    return 0;
}
