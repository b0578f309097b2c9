// GitCache: git on the host, run as a child process with a bounded time and output (see git_source.h).
#include "ci/jobs/git_source.h"

#include <sys/stat.h>
#include <unistd.h>

#include "base/child_process.h"
#include "base/file_util.h"
#include "base/sha256.h"

namespace kiln::ci {
namespace {

constexpr Millis kFetchTimeout{600000};
constexpr Millis kQuickTimeout{60000};

bool has_control(const std::string& s) {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return true;
    return false;
}

// git with no prompts, no system/global config surprises that could run commands, and only the
// transports a job may use (never ext::, which runs a command).
std::vector<std::string> git_argv(std::initializer_list<std::string> args) {
    std::vector<std::string> argv = {"env", "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
                                     "GIT_ASKPASS=/bin/false", "SSH_ASKPASS=/bin/false",
                                     "GIT_SSH_COMMAND=ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
                                     "git", "-c", "protocol.allow=never", "-c", "protocol.file.allow=always",
                                     "-c", "protocol.https.allow=always", "-c", "protocol.http.allow=always",
                                     "-c", "protocol.git.allow=always", "-c", "protocol.ssh.allow=always"};
    argv.insert(argv.end(), args);
    return argv;
}

Result<CapturedRun> git(std::initializer_list<std::string> args, Millis timeout, size_t max_output = 256 * 1024) {
    return run_and_capture(git_argv(args), timeout, max_output);
}

Error git_failed(const std::string& what, const CapturedRun& run) {
    return make_error("git_failed", what + ": git " + run.status.describe() + ": " + last_lines(run.output, 5));
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
    return s;
}

}  // namespace

bool is_full_sha(const std::string& t) {
    if (t.size() != 40) return false;
    for (char c : t)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

Status validate_repo(const std::string& repo) {
    if (repo.empty() || repo.size() > 2048 || has_control(repo))
        return make_error("invalid_argument", "repo must be a git URL or an absolute path (at most 2048 bytes, one line)");
    if (repo[0] == '/') {
        if (repo.find("/../") != std::string::npos || repo.ends_with("/..") || repo.find("::") != std::string::npos)
            return make_error("invalid_argument", "repo: a local path must be absolute and without '..'");
        return ok_status();
    }
    for (const char* scheme : {"https://", "http://", "git://", "ssh://", "file:///"})
        if (repo.rfind(scheme, 0) == 0) return ok_status();
    return make_error("invalid_argument",
                      "repo must be an absolute local path or an https://, http://, git://, ssh:// or file:/// URL");
}

Status validate_ref(const std::string& ref) {
    if (ref == "HEAD") return ok_status();
    bool bad = ref.empty() || ref.size() > 255 || has_control(ref) || ref[0] == '-' || ref[0] == '/' ||
               ref.back() == '/' || ref.back() == '.' || ref.find("..") != std::string::npos ||
               ref.find("@{") != std::string::npos || ref.find("//") != std::string::npos || ref.ends_with(".lock");
    for (char c : std::string(" ~^:?*[\\"))
        if (ref.find(c) != std::string::npos) bad = true;
    if (bad) return make_error("invalid_argument", "ref '" + ref.substr(0, 80) + "' is not a valid git ref name");
    return ok_status();
}

GitCache::GitCache(std::string dir) : m_dir(std::move(dir)) {}

std::mutex& GitCache::repo_mutex(const std::string& cache_repo) {
    std::lock_guard lock(m_mutex);
    auto& m = m_repo_mutexes[cache_repo];
    if (!m) m = std::make_unique<std::mutex>();
    return *m;
}

Result<std::string> GitCache::resolve_ref(const std::string& repo, const std::string& ref) {
    TRY(validate_repo(repo));
    TRY(validate_ref(ref));
    auto run = TRY(git({"ls-remote", "--", repo, ref}, kQuickTimeout, 4 << 20));
    if (!run.status.success()) return git_failed("listing the refs of " + repo, run);
    // Lines: "<sha>\t<name>". Prefer the exact name, then a branch, then a tag (peeled).
    std::map<std::string, std::string> refs;
    size_t pos = 0;
    while (pos < run.output.size()) {
        size_t nl = run.output.find('\n', pos);
        std::string line = run.output.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        pos = nl == std::string::npos ? run.output.size() : nl + 1;
        auto tab = line.find('\t');
        if (tab == std::string::npos) continue;
        refs[line.substr(tab + 1)] = line.substr(0, tab);
    }
    for (const std::string& name : {ref, "refs/heads/" + ref, "refs/tags/" + ref + "^{}", "refs/tags/" + ref})
        if (auto it = refs.find(name); it != refs.end() && is_full_sha(it->second)) return it->second;
    return make_error("not_found", "no ref '" + ref + "' in " + repo);
}

Result<std::string> GitCache::fetch(const std::string& repo, const std::string& sha) {
    TRY(validate_repo(repo));
    if (!is_full_sha(sha)) return make_error("invalid_argument", "sha must be 40 lowercase hex digits");
    std::string cache_repo = m_dir + "/" + sha256_hex(repo).substr(0, 24) + ".git";
    std::lock_guard lock(repo_mutex(cache_repo));
    if (!path_exists(cache_repo + "/HEAD")) {
        TRY(make_dirs(m_dir, 0700));
        auto init = TRY(git({"init", "-q", "--bare", cache_repo}, kQuickTimeout));
        if (!init.status.success()) return git_failed("creating the cache repository", init);
    }
    auto have = TRY(git({"-C", cache_repo, "cat-file", "-e", sha + "^{commit}"}, kQuickTimeout));
    if (have.status.success()) return cache_repo;
    auto run = TRY(git({"-C", cache_repo, "fetch", "-q", "--no-tags", "--", repo, sha}, kFetchTimeout, 64 * 1024));
    if (!run.status.success()) return git_failed("fetching " + sha + " from " + repo, run);
    have = TRY(git({"-C", cache_repo, "cat-file", "-e", sha + "^{commit}"}, kQuickTimeout));
    if (!have.status.success()) return make_error("not_found", "commit " + sha + " is not in " + repo);
    return cache_repo;
}

Result<std::optional<std::string>> GitCache::read_file(const std::string& cache_repo, const std::string& sha,
                                                       const std::string& path, size_t max_bytes) {
    // One process: `cat-file blob` fails for a missing path or a folder alike (checked below).
    auto run = TRY(git({"-C", cache_repo, "cat-file", "blob", sha + ":" + path}, kQuickTimeout, max_bytes + 1));
    if (!run.status.success()) {
        if (TRY(blob_id(cache_repo, sha, path)).empty()) return std::optional<std::string>();
        return git_failed("reading " + path, run);
    }
    if (run.output.size() > max_bytes)
        return make_error("too_large", path + " is larger than " + std::to_string(max_bytes) + " bytes");
    return std::optional<std::string>(std::move(run.output));
}

Result<std::string> GitCache::blob_id(const std::string& cache_repo, const std::string& sha, const std::string& path) {
    // "<mode> <type> <id>\t<path>" for the exact path; nothing when it is missing.
    auto run = TRY(git({"-C", cache_repo, "ls-tree", "--full-tree", sha, "--", path}, kQuickTimeout, 64 * 1024));
    if (!run.status.success()) return git_failed("listing " + path, run);
    std::string line = trim(run.output);
    auto tab = line.find('\t');
    if (tab == std::string::npos || line.substr(tab + 1) != path) return std::string();
    std::string head = line.substr(0, tab);  // mode type id
    auto sp1 = head.find(' '), sp2 = head.rfind(' ');
    if (sp1 == std::string::npos || sp2 == sp1 || head.substr(sp1 + 1, sp2 - sp1 - 1) != "blob") return std::string();
    std::string id = head.substr(sp2 + 1);
    return is_full_sha(id) ? id : std::string();
}

Status GitCache::bundle(const std::string& cache_repo, const std::string& sha, const std::string& out_path) {
    std::lock_guard lock(repo_mutex(cache_repo));
    // A commit's bundle never changes: keep one per commit beside the cache repository.
    std::string cached = cache_repo + "/kiln-bundles/" + sha + ".bundle";
    ::unlink(out_path.c_str());
    if (path_exists(cached)) {
        if (::link(cached.c_str(), out_path.c_str()) == 0) return ok_status();
        if (auto data = kiln::read_file(cached, 1ull << 32); data.ok()) return write_file(out_path, *data, 0600);
    }
    std::string ref = "refs/kiln/jobs/" + sha;
    auto upd = TRY(git({"-C", cache_repo, "update-ref", ref, sha}, kQuickTimeout));
    if (!upd.status.success()) return git_failed("naming the commit", upd);
    auto run = TRY(git({"-C", cache_repo, "bundle", "create", "-q", out_path, ref}, kFetchTimeout, 64 * 1024));
    if (!run.status.success()) return git_failed("bundling " + sha, run);
    if (make_dirs(cache_repo + "/kiln-bundles", 0700).ok()) {
        std::string tmp = cached + ".tmp";
        ::unlink(tmp.c_str());
        if (::link(out_path.c_str(), tmp.c_str()) == 0) ::rename(tmp.c_str(), cached.c_str());
    }
    return ok_status();
}

}  // namespace kiln::ci
