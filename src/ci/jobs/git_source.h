// GitSource: the host side of getting a job's code: checks the repository string, resolves a ref
// to a SHA, fetches the commit into a cache repository under kilnd's data dir and writes a tar
// of that commit's checkout, which the job's VM extracts (no network needed in the VM).
//
// Where the code comes from decides who runs git (docs/security.md, "Code sources"):
// - a URL (https://, http://, git://): git runs as the unprivileged ci_git_uid with an empty HOME,
//   no SSH keys and nothing of kilnd's environment, in a mount namespace of its own where its
//   folder (<dir>/remote, owned by that uid) is /tmp; it fetches the one commit shallowly and is
//   killed when the cache repository passes max_repo_bytes;
// - a local path (an admin's, or a ci_repos entry an operator made): git runs as kilnd, which
//   alone can read the operator's folders, and fetches the full history (<dir>/local).
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "ci/jobs/git_output.h"  // is_full_sha

namespace kiln::ci {

// The canonical repository (repo_url.h's normalize_repo) or invalid_argument.
Status validate_repo(const std::string& repo);
// A ref name as git check-ref-format would take it, or HEAD (invalid_argument otherwise).
Status validate_ref(const std::string& ref);

struct GitCacheConfig {
    std::string dir;  // e.g. $DATA/ci/git
    // The user git runs as for URLs; nullopt: kilnd's own (a kilnd that is not root, unit tests).
    std::optional<uid_t> git_uid;
    gid_t git_gid = 65534;
    uint64_t max_repo_bytes = 2048ull << 20;  // a cache repository's disk use (ci_repo_max_mib)
    Millis fetch_timeout{600000};             // one git fetch (ci_git_timeout_seconds)
    Millis quick_timeout{60000};              // ls-remote and the local commands
};

// Thread-safe; one fetch at a time per repository.
class GitCache {
public:
    explicit GitCache(std::string dir);  // git as kilnd's own user, the default caps
    explicit GitCache(GitCacheConfig config);
    ~GitCache();

    // `git ls-remote` of the ref: its commit (annotated tags peeled). not_found if no such ref.
    Result<std::string> resolve_ref(const std::string& repo, const std::string& ref);
    // The cache repository (mirror) of `repo` (its area's <hash of the canonical URL>.git); ""
    // for a repository string that does not parse.
    std::string mirror_path(const std::string& repo) const;
    // Makes sure `sha` is in the cache repository of `repo`; returns that repository's path. A URL
    // is fetched with --depth=1 by the commit's id; a server that refuses ids is asked for `ref`
    // (HEAD when empty), which must then be that commit. too_large past max_repo_bytes.
    // Each call marks the mirror used now (its folder's mtime), which retention goes by.
    Result<std::string> fetch(const std::string& repo, const std::string& sha, const std::string& ref = "");
    // The file's contents at `sha` (nullopt when the commit has no such file); at most max_bytes.
    Result<std::optional<std::string>> read_file(const std::string& cache_repo, const std::string& sha,
                                                 const std::string& path, size_t max_bytes);
    // The blob id of the file at `sha` ("" when missing): identifies its contents, for bake keys.
    Result<std::string> blob_id(const std::string& cache_repo, const std::string& sha, const std::string& path);
    // Makes <dir>/code.tar and returns its path: a plain tar of work/src/, the checkout of `sha`
    // with its .git (HEAD detached at `sha`, one pack of the history the cache has, an index),
    // made on the host so that the VM only extracts it (each new code path in a TCG guest is
    // slow). The checkout is staged in the cache's own folder (work/<basename of dir>), by the
    // user that fetched it; what a crash leaves there goes when the area is first used again.
    // too_large when the commit's files exceed 4 GiB. The caller removes the tar.
    Result<std::string> checkout_tar(const std::string& cache_repo, const std::string& sha, const std::string& dir);

private:
    struct Area;
    const Area& area_of(const std::string& cache_repo) const;
    Status prepare(const Area& area);
    std::mutex& repo_mutex(const std::string& cache_repo);

    const GitCacheConfig m_config;
    std::unique_ptr<Area> m_local, m_remote;
    std::mutex m_mutex;  // guards m_repo_mutexes and the areas' preparation
    std::map<std::string, std::unique_ptr<std::mutex>> m_repo_mutexes;
};

}  // namespace kiln::ci
