// Where a job's code may come from: a repository string made canonical (so that what is checked
// is exactly what git fetches) and the operator's allowlist of repository prefixes (`ci_repos`,
// docs/ci.md "Where code may come from").
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace kiln::ci {

// The one spelling kilnd stores, checks and fetches, or invalid_argument naming what is wrong:
// - a local path (`/srv/git/app` or `file:///srv/git/app`): an absolute path without `.` or `..`
//   segments, repeated and trailing slashes dropped: `/srv/git/app`;
// - an `https://`, `http://` or `git://` URL: scheme and host lowercased, the scheme's default
//   port dropped, repeated and trailing slashes dropped: `https://github.com/acme/app.git`.
// Refused: other schemes (ssh://, ext::, scp-like `git@host:x`: kilnd's git has no keys and runs
// no commands), user info (`user:pw@host`: credentials, and the `good.com@evil.com` trick), `.`
// and `..` segments, percent-encoding, backslashes, `?` and `#`, control characters, non-ASCII
// hosts and more than 2048 bytes.
Result<std::string> normalize_repo(const std::string& repo);

// "/a//b/" -> {"a", "b"}: the non-empty segments; invalid_argument when one is "." or "..".
Result<std::vector<std::string>> path_segments(const std::string& path);

// A canonical repository (normalize_repo) that names a folder on kilnd's host.
bool is_local_repo(const std::string& canonical);

// The `ci_repos` prefixes. A repository matches an entry when its canonical form equals the
// entry or continues it after a '/' (segment boundary: `https://github.com/acme` matches
// `https://github.com/acme/app.git`, not `https://github.com/acme-evil/x` nor
// `https://github.com/acme.evil.com/x`); a trailing `.git` of either is ignored, so an entry
// naming one repository matches it with or without `.git`. Hosts compare exactly (no suffix
// match), paths case-sensitively.
class RepoAllowlist {
public:
    RepoAllowlist() = default;
    // Each entry normalized as a repository; invalid_argument naming a bad entry.
    static Result<RepoAllowlist> create(const std::vector<std::string>& prefixes);
    // Entries separated by commas or white space (the config key's text form).
    static Result<RepoAllowlist> parse(const std::string& text);

    bool empty() const { return m_prefixes.empty(); }
    const std::vector<std::string>& prefixes() const { return m_prefixes; }
    // `canonical` must come from normalize_repo.
    bool allows(const std::string& canonical) const;

private:
    std::vector<std::string> m_prefixes;  // canonical, without a trailing .git
};

}  // namespace kiln::ci
