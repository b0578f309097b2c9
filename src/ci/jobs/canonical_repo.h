// The repository a job belongs to, as one string: what a secret's policy names, what a bake key
// and a bake snapshot's name carry, what a pipeline's `template:` is checked against
// (docs/tenants-ci.md "Secrets and bakes per repository").
#pragma once

#include <string>
#include <string_view>

#include "ci/jobs/job_service.h"

namespace kiln::ci {

// The canonical form of a repository URL or local path; "" when `url` is not one we can name
// safely (then nothing scoped to a repository goes to the job):
//  - https://user:pw@GitHub.com:443/Acme/App.git/, git@github.com:acme/app, ssh://git@github.com/acme/app
//    all give "github.com/acme/app": no scheme, no credentials, no default port (a port other
//    than the scheme's default stays: github.com:8443/acme/app), host and path lowercased (GitHub,
//    GitLab and Gitea names are case-insensitive), no ".git", no trailing or doubled slash;
//  - a local path, or file://path: the absolute path with doubled and trailing slashes removed,
//    case kept ("/srv/git/app"); a relative path is refused;
//  - a "." or ".." path segment, a '%', '\\', a control character or whitespace anywhere: refused
//    (what git would fetch must be exactly what the name says).
std::string canonical_repo_url(std::string_view url);

// The canonical repository of a job: for a GitHub webhook's job "<host of its clone URL>/<the
// webhook's repository full_name>", lowercased (the signed name, not the clone URL's path, which a
// payload could point elsewhere; a local clone URL, a mirror, counts as github.com); for every
// other job canonical_repo_url(repo).
std::string canonical_repository(const JobSpec& spec);

// The branch a job's commit is known to be the tip of, or "" when kilnd does not know one: a
// GitHub push to refs/heads/<b>, a GitHub pull request's head branch, a job from the API whose
// commit kilnd resolved from `ref` (refs/heads/<b> or a bare name <b>). A commit given by sha is
// on no branch as far as kilnd knows, whatever `ref` says.
std::string job_branch(const JobSpec& spec);

// A short stable tag of a canonical repository (16 hex of its SHA-256): in bake snapshots' names
// instead of the name itself.
std::string repo_tag(const std::string& canonical);

}  // namespace kiln::ci
