// SecretPolicy: which repositories, and optionally which branches, each CI secret may go to: the
// operator's `ci_secrets_policy` file (docs/tenants-ci.md). A secret with no line goes nowhere.
//
//   # NAME     REPOSITORY...                       [branches=PATTERN,...]
//   DEPLOY_KEY github.com/acme/app                 branches=main,release/*
//   NPM_TOKEN  acme/app acme/lib                   # owner/repo is github.com/owner/repo
//   SHARED     github.com/acme/*                   # every repository under github.com/acme/
//   TOOLS      /srv/git/tools https://git.example.com/ops/tools.git
//   ANYWHERE   *                                   # every trusted job (kilnd before 0.15 did this)
//
// A repository is written as canonical_repo_url accepts it (a URL, an scp-like address, an
// absolute path), as host/path, or as owner/repo; "/*" at its end makes it a prefix. Branch
// patterns are exact names or end with "*" (a prefix). Several lines for one name add up.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace kiln::ci {

struct SecretDecision {
    bool allowed = false;
    std::string reason;  // when withheld: why, naming the secret and never its value
};

class SecretPolicy {
public:
    // invalid_argument naming the line when a line does not parse.
    static Result<SecretPolicy> parse(std::string_view text);

    // Whether the secret `name` may go to a trusted job of `repository` (canonical, "" when the
    // job's repository has no canonical form) on `branch` ("" when none is known).
    SecretDecision decide(const std::string& name, const std::string& repository, const std::string& branch) const;

    // The secrets the policy names.
    std::vector<std::string> names() const;

private:
    struct Grant {
        std::vector<std::string> repositories;  // canonical; ending in "/": a prefix; "*": any
        std::vector<std::string> branches;      // empty: any
    };
    std::map<std::string, std::vector<Grant>> m_grants;
};

// The policy in the file `path` (read as a secret file: 0600, root's or kilnd's; "" gives the
// empty policy), logging a warning at start for each `configured` secret it does not name (that
// secret goes to no job) and each name it gives that is not configured.
Result<SecretPolicy> load_secret_policy(const std::string& path, const std::vector<std::string>& configured);

// The canonical repository a policy entry names (see the file comment), or "" when it names
// none; a prefix keeps its trailing "/".
std::string policy_repository(std::string_view entry);

}  // namespace kiln::ci
