// GitCache: git on the host, run as a child process with a bounded time and output (see git_source.h).
#include "ci/jobs/git_source.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/child_process.h"
#include "base/file_util.h"
#include "base/sha256.h"

namespace kiln::ci {
namespace {

constexpr Millis kFetchTimeout{600000};
constexpr Millis kQuickTimeout{60000};
constexpr uint64_t kMaxCheckoutBytes = 4ull << 30;  // a job's files, expanded (checkout_tar)
constexpr size_t kMaxTreeListing = 64 << 20;        // `ls-tree -r -l` output: ~1 M files

bool has_control(const std::string& s) {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return true;
    return false;
}

// Proxy settings an operator gave kilnd for its git fetches: passed on by name (and only these),
// since git on a host behind a proxy cannot fetch without them.
constexpr const char* kProxyVariables[] = {"http_proxy", "https_proxy", "all_proxy", "no_proxy",
                                           "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"};

// git's whole environment: nothing of kilnd's (which may hold secrets) beyond the proxy settings.
// No prompts, no system or global config that could run commands, HOME in the cache dir (git
// reads nothing there: the global config is /dev/null), and ssh's known hosts kept there too
// rather than in root's home, which the systemd unit hides (ProtectHome).
std::vector<std::string> git_environment(const std::string& home) {
    std::vector<std::string> env = minimal_environment();
    std::string quoted_known_hosts = "'" + home + "/known_hosts'";
    if (home.find('\'') != std::string::npos) quoted_known_hosts = "/dev/null";  // cannot be quoted simply
    env.insert(env.end(), {"HOME=" + home, "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
                           "GIT_ASKPASS=/bin/false", "SSH_ASKPASS=/bin/false",
                           "GIT_SSH_COMMAND=ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=" +
                               quoted_known_hosts});
    for (const char* name : kProxyVariables)
        if (const char* value = std::getenv(name)) env.push_back(std::string(name) + "=" + value);
    return env;
}

// Only the transports a job may use (never ext::, which runs a command).
std::vector<std::string> git_argv(std::initializer_list<std::string> args) {
    std::vector<std::string> argv = {"git", "-c", "protocol.allow=never", "-c", "protocol.file.allow=always",
                                     "-c", "protocol.https.allow=always", "-c", "protocol.http.allow=always",
                                     "-c", "protocol.git.allow=always", "-c", "protocol.ssh.allow=always"};
    argv.insert(argv.end(), args);
    return argv;
}

// git in `home` (the cache dir: see git_environment), bounded in time and output.
Result<CapturedRun> git(const std::string& home, std::initializer_list<std::string> args, Millis timeout,
                        size_t max_output = 256 * 1024) {
    return run_and_capture(git_argv(args), timeout, max_output, git_environment(home));
}

Error git_failed(const std::string& what, const CapturedRun& run) {
    return make_error(ErrorCode::GitFailed, what + ": git " + run.status.describe() + ": " + last_lines(run.output, 5));
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
        return make_error(ErrorCode::InvalidArgument, "repo must be a git URL or an absolute path (at most 2048 bytes, one line)");
    if (repo[0] == '/') {
        if (repo.find("/../") != std::string::npos || repo.ends_with("/..") || repo.find("::") != std::string::npos)
            return make_error(ErrorCode::InvalidArgument, "repo: a local path must be absolute and without '..'");
        return ok_status();
    }
    for (const char* scheme : {"https://", "http://", "git://", "ssh://", "file:///"})
        if (repo.rfind(scheme, 0) == 0) return ok_status();
    return make_error(ErrorCode::InvalidArgument,
                      "repo must be an absolute local path or an https://, http://, git://, ssh:// or file:/// URL");
}

Status validate_ref(const std::string& ref) {
    if (ref == "HEAD") return ok_status();
    bool bad = ref.empty() || ref.size() > 255 || has_control(ref) || ref[0] == '-' || ref[0] == '/' ||
               ref.back() == '/' || ref.back() == '.' || ref.find("..") != std::string::npos ||
               ref.find("@{") != std::string::npos || ref.find("//") != std::string::npos || ref.ends_with(".lock");
    for (char c : std::string(" ~^:?*[\\"))
        if (ref.find(c) != std::string::npos) bad = true;
    if (bad) return make_error(ErrorCode::InvalidArgument, "ref '" + ref.substr(0, 80) + "' is not a valid git ref name");
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
    auto run = TRY(git(m_dir, {"ls-remote", "--", repo, ref}, kQuickTimeout, 4 << 20));
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
    return make_error(ErrorCode::NotFound, "no ref '" + ref + "' in " + repo);
}

Result<std::string> GitCache::fetch(const std::string& repo, const std::string& sha) {
    TRY(validate_repo(repo));
    if (!is_full_sha(sha)) return make_error(ErrorCode::InvalidArgument, "sha must be 40 lowercase hex digits");
    std::string cache_repo = m_dir + "/" + sha256_hex(repo).substr(0, 24) + ".git";
    std::lock_guard lock(repo_mutex(cache_repo));
    if (!path_exists(cache_repo + "/HEAD")) {
        TRY(make_dirs(m_dir, 0700));
        auto init = TRY(git(m_dir, {"init", "-q", "--bare", cache_repo}, kQuickTimeout));
        if (!init.status.success()) return git_failed("creating the cache repository", init);
    }
    auto have = TRY(git(m_dir, {"-C", cache_repo, "cat-file", "-e", sha + "^{commit}"}, kQuickTimeout));
    if (have.status.success()) return cache_repo;
    auto run = TRY(git(m_dir, {"-C", cache_repo, "fetch", "-q", "--no-tags", "--", repo, sha}, kFetchTimeout, 64 * 1024));
    if (!run.status.success()) return git_failed("fetching " + sha + " from " + repo, run);
    have = TRY(git(m_dir, {"-C", cache_repo, "cat-file", "-e", sha + "^{commit}"}, kQuickTimeout));
    if (!have.status.success()) return make_error(ErrorCode::NotFound, "commit " + sha + " is not in " + repo);
    return cache_repo;
}

Result<std::optional<std::string>> GitCache::read_file(const std::string& cache_repo, const std::string& sha,
                                                       const std::string& path, size_t max_bytes) {
    // One process: `cat-file blob` fails for a missing path or a folder alike (checked below).
    auto run = TRY(git(m_dir, {"-C", cache_repo, "cat-file", "blob", sha + ":" + path}, kQuickTimeout, max_bytes + 1));
    if (!run.status.success()) {
        if (TRY(blob_id(cache_repo, sha, path)).empty()) return std::optional<std::string>();
        return git_failed("reading " + path, run);
    }
    if (run.output.size() > max_bytes)
        return make_error(ErrorCode::TooLarge, path + " is larger than " + std::to_string(max_bytes) + " bytes");
    return std::optional<std::string>(std::move(run.output));
}

Result<std::string> GitCache::blob_id(const std::string& cache_repo, const std::string& sha, const std::string& path) {
    // "<mode> <type> <id>\t<path>" for the exact path; nothing when it is missing.
    auto run = TRY(git(m_dir, {"-C", cache_repo, "ls-tree", "--full-tree", sha, "--", path}, kQuickTimeout, 64 * 1024));
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

Result<std::string> GitCache::checkout_tar(const std::string& cache_repo, const std::string& sha, const std::string& dir) {
    {
        // The ref keeps the commit from an automatic gc of the cache repository.
        std::lock_guard lock(repo_mutex(cache_repo));
        auto upd = TRY(git(m_dir, {"-C", cache_repo, "update-ref", "refs/kiln/jobs/" + sha, sha}, kQuickTimeout));
        if (!upd.status.success()) return git_failed("naming the commit", upd);
    }
    // The checkout expands on this host's disk now, not in the VM's: a small pack can hold
    // gigabytes of zeros, so its size is checked first (blob sizes, from the tree).
    auto tree = TRY(git(m_dir, {"-C", cache_repo, "ls-tree", "-r", "-l", "-z", "--full-tree", sha}, kFetchTimeout, kMaxTreeListing));
    if (!tree.status.success()) return git_failed("listing " + sha, tree);
    if (tree.output.size() >= kMaxTreeListing)
        return make_error(ErrorCode::TooLarge, "the commit has too many files for a job's checkout");
    uint64_t total = 0;
    for (size_t pos = 0; pos < tree.output.size();) {
        size_t end = tree.output.find('\0', pos);
        if (end == std::string::npos) end = tree.output.size();
        // "<mode> <type> <id> <size>\t<path>": the size is "-" for a submodule's commit.
        std::string head = tree.output.substr(pos, tree.output.find('\t', pos) - pos);
        if (auto sp = head.rfind(' '); sp != std::string::npos) total += std::strtoull(head.c_str() + sp + 1, nullptr, 10);
        pos = end + 1;
    }
    if (total > kMaxCheckoutBytes)
        return make_error(ErrorCode::TooLarge, "the commit's files come to " + std::to_string(total >> 20) + " MiB; a job's checkout may have " +
                                           std::to_string(kMaxCheckoutBytes >> 20) + " MiB");

    // The checkout is made under <dir>/checkout/work/src, so the tar extracts with `tar -C /`.
    const std::string tmp = dir + "/checkout";
    const std::string src = tmp + "/work/src";
    (void)remove_tree(tmp);
    TRY(make_dirs(src, 0755));
    ::chmod((tmp + "/work").c_str(), 0755);  // make_dirs applies our umask; these modes reach the VM
    ::chmod(src.c_str(), 0755);
    struct Cleanup {
        std::string path;
        ~Cleanup() { (void)remove_tree(path); }
    } cleanup{tmp};
    // No hooks or sample files (--template=), no FETCH_HEAD or reflog naming this host; one pack
    // however few the objects (fetch.unpackLimit), so the VM gets a pack and its index as they are.
    auto init = TRY(git(m_dir, {"init", "-q", "--template=", src}, kQuickTimeout));
    if (!init.status.success()) return git_failed("creating the job's repository", init);
    auto fetch = TRY(git(m_dir, {"-C", src, "-c", "fetch.unpackLimit=1", "fetch", "-q", "--no-tags", "--no-write-fetch-head",
                          "--", cache_repo, sha}, kFetchTimeout, 64 * 1024));
    if (!fetch.status.success()) return git_failed("copying " + sha + " into the job's repository", fetch);
    auto co = TRY(git(m_dir, {"-C", src, "-c", "core.logAllRefUpdates=false", "-c", "advice.detachedHead=false", "checkout",
                       "-q", "-f", "--detach", sha}, kFetchTimeout, 64 * 1024));
    if (!co.status.success()) return git_failed("checking out " + sha, co);
    const std::string out = dir + "/code.tar";
    // --mode: the guest sees the modes a umask of 022 gives (files 0644, executables and folders
    // 0755) whatever kilnd's own umask (0077 under the systemd unit) made of the checkout.
    auto tar = TRY(run_and_capture({"tar", "-C", tmp, "--owner=0", "--group=0", "--numeric-owner", "--sort=name",
                                    "--mode=go+rX,go-w", "-cf", out, "work"}, kFetchTimeout, 64 * 1024));
    if (!tar.status.success())
        return make_error(ErrorCode::IoError, "writing the checkout's tar: tar " + tar.status.describe() + ": " + last_lines(tar.output, 5));
    return out;
}

}  // namespace kiln::ci
