// GitSource: the host side of getting a job's code: checks the repository string, resolves a ref
// to a SHA, fetches the commit into a cache repository under kilnd's data dir and writes a tar
// of that commit's checkout, which the job's VM extracts (no network needed in the VM).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "base/result.h"

namespace kiln::ci {

// A repository kilnd may fetch: an absolute local path, or an http(s)://, git://, ssh:// or
// file:// URL. Anything else (a leading '-', ext::, control characters) is invalid_argument.
Status validate_repo(const std::string& repo);
// A ref name as git check-ref-format would take it, or HEAD (invalid_argument otherwise).
Status validate_ref(const std::string& ref);
bool is_full_sha(const std::string& text);  // 40 lowercase hex digits

// Thread-safe; one fetch at a time per repository.
class GitCache {
public:
    explicit GitCache(std::string dir);  // e.g. $DATA/ci/git

    // `git ls-remote` of the ref: its commit (annotated tags peeled). not_found if no such ref.
    Result<std::string> resolve_ref(const std::string& repo, const std::string& ref);
    // Makes sure `sha` is in the cache repository of `repo`; returns that repository's path.
    Result<std::string> fetch(const std::string& repo, const std::string& sha);
    // The file's contents at `sha` (nullopt when the commit has no such file); at most max_bytes.
    Result<std::optional<std::string>> read_file(const std::string& cache_repo, const std::string& sha,
                                                 const std::string& path, size_t max_bytes);
    // The blob id of the file at `sha` ("" when missing): identifies its contents, for bake keys.
    Result<std::string> blob_id(const std::string& cache_repo, const std::string& sha, const std::string& path);
    // Makes <dir>/code.tar and returns its path: a plain tar of work/src/, the checkout of `sha`
    // with its .git (HEAD detached at `sha`, one pack of its history, an index), made on the host
    // so that the VM only extracts it (each new code path in a TCG guest is slow). too_large when
    // the commit's files exceed 4 GiB. The caller removes the tar.
    Result<std::string> checkout_tar(const std::string& cache_repo, const std::string& sha, const std::string& dir);

private:
    std::mutex& repo_mutex(const std::string& cache_repo);
    const std::string m_dir;
    std::mutex m_mutex;  // guards m_repo_mutexes
    std::map<std::string, std::unique_ptr<std::mutex>> m_repo_mutexes;
};

}  // namespace kiln::ci
