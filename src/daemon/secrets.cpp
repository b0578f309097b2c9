// load_secrets: one source per secret, files checked by base/secret_file (see secrets.h).
#include "daemon/secrets.h"

#include <dirent.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <memory>
#include <string_view>

#include "base/errno_error.h"
#include "base/file_util.h"
#include "base/secret_file.h"

namespace kiln::daemon {
namespace {

std::string env_value(char** envp, std::string_view name) {
    for (char** e = envp; e && *e; ++e) {
        std::string_view kv(*e);
        if (kv.size() > name.size() && kv.substr(0, name.size()) == name && kv[name.size()] == '=')
            return std::string(kv.substr(name.size() + 1));
    }
    return "";
}

bool is_variable_name(const std::string& s) {
    if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
    for (char c : s)
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    return true;
}

// One secret's value and where it came from, refusing a second source.
class SecretSlot {
public:
    SecretSlot(std::string name, std::string* value, DaemonSecrets& secrets)
        : m_name(std::move(name)), m_value(value), m_secrets(secrets) {}

    Status set(const std::string& source, std::string value) {
        auto [it, fresh] = m_secrets.sources.emplace(m_name, source);
        if (!fresh)
            return make_error(ErrorCode::InvalidArgument, "secret " + m_name + " is given twice, by " + it->second + " and by " +
                                                              source + "; keep one");
        *m_value = std::move(value);
        return ok_status();
    }

private:
    std::string m_name;
    std::string* m_value;
    DaemonSecrets& m_secrets;
};

// The names in `dir` (no dot files), sorted.
Result<std::vector<std::string>> list_dir(const std::string& dir) {
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) return errno_error("open secrets folder " + dir);
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(d.get()))
        if (e->d_name[0] != '.') names.emplace_back(e->d_name);
    std::sort(names.begin(), names.end());
    return names;
}

Status add_ci_secret(DaemonSecrets& secrets, const std::string& name, const std::string& source, std::string value) {
    if (!is_variable_name(name))
        return make_error(ErrorCode::InvalidArgument, source + ": '" + name.substr(0, 64) +
                                                          "' is not a CI secret name (letters, digits and _, not starting with a digit)");
    return SecretSlot("CI secret " + name, &secrets.ci[name], secrets).set(source, std::move(value));
}

// One named secret (GitHub's webhook secret or token, the fleet secret): the config's value,
// its _file key, or the credential of its name.
Status load_named_secret(DaemonSecrets& secrets, std::string* out, const std::string& key, const std::string& value,
                          const std::string& file, const std::string& credentials_dir, char** envp) {
    SecretSlot slot(key, out, secrets);
    if (!value.empty()) {
        std::string env_name = "KILN_";
        for (char c : key) env_name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        bool from_env = env_value(envp, env_name) == value;
        if (from_env) secrets.from_environment.push_back(env_name);
        TRY(slot.set(from_env ? "environment " + env_name : "config " + key, value));
    }
    if (!file.empty()) TRY(slot.set(key + "_file " + file, TRY(read_secret_file(file))));
    if (value.empty() && file.empty() && !credentials_dir.empty()) {
        std::string path = credentials_dir + "/" + key;
        if (path_exists(path)) TRY(slot.set("credential " + path, TRY(read_secret_file(path))));
    }
    return ok_status();
}

}  // namespace

Result<DaemonSecrets> load_secrets(const DaemonConfig& config, char** envp) {
    DaemonSecrets secrets;
    const std::string credentials_dir = env_value(envp, "CREDENTIALS_DIRECTORY");
    TRY(load_named_secret(secrets, &secrets.github_webhook_secret, kWebhookSecretCredential, config.github_webhook_secret,
                           config.github_webhook_secret_file, credentials_dir, envp));
    TRY(load_named_secret(secrets, &secrets.github_token, kTokenCredential, config.github_token, config.github_token_file,
                           credentials_dir, envp));
    TRY(load_named_secret(secrets, &secrets.fleet_secret, kFleetSecretCredential, config.fleet_secret,
                          config.fleet_secret_file, credentials_dir, envp));

    if (!config.github_webhook_secrets_dir.empty()) {
        const std::string& dir = config.github_webhook_secrets_dir;
        TRY(check_secret_dir(dir));
        for (const auto& owner : TRY(list_dir(dir))) {
            TRY(check_secret_dir(dir + "/" + owner));
            for (const auto& repo : TRY(list_dir(dir + "/" + owner))) {
                std::string path = dir + "/" + owner + "/" + repo;
                std::string name = owner + "/" + repo;
                for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                std::string* slot = &secrets.github_repo_webhook_secrets[name];
                TRY(SecretSlot("webhook secret of " + name, slot, secrets).set("github_webhook_secrets_dir file " + path,
                                                                               TRY(read_secret_file(path))));
            }
        }
    }
    if (!config.ci_secrets_dir.empty()) {
        TRY(check_secret_dir(config.ci_secrets_dir));
        for (const auto& name : TRY(list_dir(config.ci_secrets_dir))) {
            std::string path = config.ci_secrets_dir + "/" + name;
            TRY(add_ci_secret(secrets, name, "ci_secrets_dir file " + path, TRY(read_secret_file(path))));
        }
    }
    if (!credentials_dir.empty() && path_exists(credentials_dir)) {
        const std::string prefix = kCiSecretCredentialPrefix;
        for (const auto& name : TRY(list_dir(credentials_dir))) {
            if (name.rfind(prefix, 0) != 0) continue;  // another credential (GitHub's, or not ours)
            std::string path = credentials_dir + "/" + name;
            TRY(add_ci_secret(secrets, name.substr(prefix.size()), "credential " + path, TRY(read_secret_file(path))));
        }
    }
    const std::string_view env_prefix = kCiSecretEnvPrefix;
    for (char** e = envp; e && *e; ++e) {
        std::string_view kv(*e);
        if (kv.substr(0, env_prefix.size()) != env_prefix) continue;
        auto eq = kv.find('=');
        if (eq == std::string_view::npos || eq == env_prefix.size()) continue;
        std::string variable(kv.substr(0, eq));
        secrets.from_environment.push_back(variable);
        TRY(add_ci_secret(secrets, variable.substr(env_prefix.size()), "environment " + variable, std::string(kv.substr(eq + 1))));
    }
    return secrets;
}

}  // namespace kiln::daemon
