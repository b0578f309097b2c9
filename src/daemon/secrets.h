// kilnd's secrets (the GitHub webhook secret and token, the fleet secret, CI jobs' secrets), gathered from where the
// config points: files first (docs/kilnd.md "Secrets"), the environment only as a deprecated
// fallback. No value is ever logged or put in an error.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/result.h"
#include "daemon/config.h"

namespace kiln::daemon {

struct DaemonSecrets {
    std::string github_webhook_secret;       // empty: the webhook answers 503
    std::string github_token;                // empty: no commit statuses
    std::string fleet_secret;                // hosts of a fleet authenticate to each other with it
    std::map<std::string, std::string> ci;   // NAME -> value, what trusted jobs may ask for
    // owner/repo (lowercase) -> that repository's own webhook secret (github_webhook_secrets_dir).
    std::map<std::string, std::string> github_repo_webhook_secrets;
    // Where each secret came from ("github_token_file /etc/kiln/token", "environment
    // KILN_CI_SECRET_X", ...), for the start-up log; never a value.
    std::map<std::string, std::string> sources;
    // The environment variables that gave a secret: deprecated, worth a warning.
    std::vector<std::string> from_environment;
};

// In $CREDENTIALS_DIRECTORY (systemd's LoadCredential=): these names, and ci_secret_<NAME> per CI
// secret (LoadCredential=ci_secret:/DIR loads each file of DIR as ci_secret_<file name>).
inline constexpr const char* kWebhookSecretCredential = "github_webhook_secret";
inline constexpr const char* kTokenCredential = "github_token";
inline constexpr const char* kFleetSecretCredential = "fleet_secret";
inline constexpr const char* kCiSecretCredentialPrefix = "ci_secret_";
inline constexpr const char* kCiSecretEnvPrefix = "KILN_CI_SECRET_";

// Each secret from at most one source; two for the same secret are an error naming both (a
// silent precedence would hide which value is in use):
//  - GitHub's two and the fleet's: `github_webhook_secret` / `github_token` / `fleet_secret`
//    (config file, environment or flag), or `github_webhook_secret_file` / `github_token_file` /
//    `fleet_secret_file`, or else, when it holds one, $CREDENTIALS_DIRECTORY/<the plain key>;
//  - per-repository webhook secrets: the files <owner>/<repo> of `github_webhook_secrets_dir`
//    (the folder and each owner's folder checked as ci_secrets_dir is);
//  - CI secrets: the files of `ci_secrets_dir` (file name = secret name), the
//    $CREDENTIALS_DIRECTORY/ci_secret_<NAME> files, and KILN_CI_SECRET_<NAME> variables.
// Every file goes through read_secret_file (root's or ours, no group/other bits); a CI secret's
// name must be a variable name. `envp` is kilnd's environment (for CREDENTIALS_DIRECTORY and the
// deprecated variables).
Result<DaemonSecrets> load_secrets(const DaemonConfig& config, char** envp);

}  // namespace kiln::daemon
