// GitCache: git on the host, run as a child process with a bounded time, output and disk use
// (see git_source.h for who runs it and where).
#include "ci/jobs/git_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "base/child_process.h"
#include "base/file_util.h"
#include "base/sha256.h"
#include "ci/jobs/git_output.h"
#include "ci/jobs/repo_url.h"

namespace kiln::ci {
namespace {

constexpr uint64_t kMaxCheckoutBytes = 4ull << 30;  // a job's files, expanded (checkout_tar)
constexpr size_t kMaxTreeListing = 64 << 20;        // `ls-tree -r -l` output: ~1 M files
// Where git run for a URL sees its folder, inside its own mount namespace: a path every user can
// reach, whereas the real one is under kilnd's 0700 data dir.
constexpr const char* kRemoteView = "/tmp";

bool has_control(const std::string& s) {
    for (unsigned char c : s)
        if (c < 0x20 || c == 0x7f) return true;
    return false;
}

// Proxy settings an operator gave kilnd for its git fetches: passed on by name (and only these),
// since git on a host behind a proxy cannot fetch without them.
constexpr const char* kProxyVariables[] = {"http_proxy", "https_proxy", "all_proxy", "no_proxy",
                                           "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"};

// git's whole environment: nothing of kilnd's (which may hold secrets, SSH_AUTH_SOCK) beyond the
// proxy settings. No prompts, no system or global config that could run commands, HOME an
// empty folder of git's own (git reads nothing there: the global config is /dev/null).
std::vector<std::string> git_environment(const std::string& home) {
    std::vector<std::string> env = minimal_environment();
    env.insert(env.end(), {"HOME=" + home, "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
                           "GIT_ASKPASS=/bin/false", "SSH_ASKPASS=/bin/false", "GIT_SSH_COMMAND=/bin/false"});
    for (const char* name : kProxyVariables)
        if (const char* value = std::getenv(name)) env.push_back(std::string(name) + "=" + value);
    return env;
}

// Only the transports a job may use: never ext:: (runs a command) nor ssh (no keys); file only
// for an operator's local path or the cache's own repositories. No redirects: an allowed host
// must not send git on to another (an address inside the network, say).
std::vector<std::string> git_argv(bool allow_file, std::initializer_list<std::string> args) {
    std::vector<std::string> argv = {"git", "-c", "protocol.allow=never", "-c", "protocol.ext.allow=never",
                                     "-c", std::string("protocol.file.allow=") + (allow_file ? "always" : "never"),
                                     "-c", "protocol.https.allow=always", "-c", "protocol.http.allow=always",
                                     "-c", "protocol.git.allow=always", "-c", "http.followRedirects=false",
                                     "-c", "core.hooksPath=/dev/null"};
    argv.insert(argv.end(), args);
    return argv;
}

Error git_failed(const std::string& what, const CapturedRun& run) {
    return make_error(ErrorCode::GitFailed, what + ": git " + run.status.describe() + ": " + last_lines(run.output, 5));
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
    return s;
}

// Bytes a folder takes on disk (allocated blocks), not following links.
uint64_t disk_usage(const std::string& path) {
    namespace fs = std::filesystem;
    uint64_t total = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(path, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end; it.increment(ec)) {
        struct stat st;
        if (::lstat(it->path().c_str(), &st) == 0) total += uint64_t(st.st_blocks) * 512;
    }
    return total;
}

// mkdir (if missing) with `mode` whatever the umask, owned by the user git runs as (if not kilnd).
Status make_owned_dir(const std::string& path, unsigned mode, const std::optional<SpawnOptions::RunAs>& owner) {
    TRY(make_dirs(path, mode));
    if (owner && ::chown(path.c_str(), owner->uid, owner->gid) != 0)
        return make_error(ErrorCode::IoError, "chown " + path + ": " + std::strerror(errno));
    if (::chmod(path.c_str(), mode) != 0) return make_error(ErrorCode::IoError, "chmod " + path + ": " + std::strerror(errno));
    return ok_status();
}

}  // namespace

// One folder of cache repositories and staged checkouts, and who runs git in it.
struct GitCache::Area {
    std::string real;  // <dir>/local or <dir>/remote
    std::string view;  // the same folder as git sees it
    std::optional<SpawnOptions::RunAs> run_as;
    bool local = false;     // an operator's local paths: file:// allowed, full history
    bool prepared = false;  // guarded by GitCache::m_mutex

    std::string to_view(const std::string& real_path) const { return view + real_path.substr(real.size()); }
    std::string home() const { return local ? view : view + "/home"; }

    // git in this area, bounded in time and output (and disk use, by `watch`).
    Result<CapturedRun> git(std::initializer_list<std::string> args, Millis timeout, size_t max_output = 256 * 1024,
                            bool allow_file = false, const std::function<Status()>& watch = {}) const {
        SpawnOptions options;
        options.argv = git_argv(local || allow_file, args);
        options.env = git_environment(home());
        options.run_as = run_as;
        return run_and_capture(options, timeout, max_output, watch);
    }
};

Status validate_repo(const std::string& repo) {
    TRY(normalize_repo(repo));
    return ok_status();
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

GitCache::GitCache(std::string dir) : GitCache(GitCacheConfig{std::move(dir)}) {}

GitCache::GitCache(GitCacheConfig config) : m_config(std::move(config)) {
    m_local = std::make_unique<Area>();
    m_local->real = m_local->view = m_config.dir + "/local";
    m_local->local = true;
    m_remote = std::make_unique<Area>();
    m_remote->real = m_config.dir + "/remote";
    m_remote->view = m_remote->real;
    if (m_config.git_uid) {
        m_remote->view = kRemoteView;
        m_remote->run_as = SpawnOptions::RunAs{*m_config.git_uid, m_config.git_gid, m_remote->real, kRemoteView};
    }
}

GitCache::~GitCache() = default;

const GitCache::Area& GitCache::area_of(const std::string& cache_repo) const {
    return cache_repo.starts_with(m_remote->real + "/") ? *m_remote : *m_local;
}

Status GitCache::prepare(const Area& area) {
    std::lock_guard lock(m_mutex);
    if (area.prepared) return ok_status();
    TRY(make_dirs(m_config.dir, 0700));
    // The remote area and everything in it belong to the git user, which never sees the rest.
    // Checkouts a crash left half made: none of this process's can be under way yet, since each
    // follows a fetch, and the first fetch prepares its area.
    (void)remove_tree(area.real + "/work");
    for (const std::string& dir : {area.real, area.real + "/work"}) TRY(make_owned_dir(dir, 0700, area.run_as));
    if (!area.local) TRY(make_owned_dir(area.real + "/home", 0700, area.run_as));
    const_cast<Area&>(area).prepared = true;
    return ok_status();
}

std::mutex& GitCache::repo_mutex(const std::string& cache_repo) {
    std::lock_guard lock(m_mutex);
    auto& m = m_repo_mutexes[cache_repo];
    if (!m) m = std::make_unique<std::mutex>();
    return *m;
}

Result<std::string> GitCache::resolve_ref(const std::string& repo_text, const std::string& ref) {
    const std::string repo = TRY(normalize_repo(repo_text));
    TRY(validate_ref(ref));
    const Area& area = is_local_repo(repo) ? *m_local : *m_remote;
    TRY(prepare(area));
    auto listed = area.git({"ls-remote", "--", repo, ref}, m_config.quick_timeout, 4 << 20);
    if (!listed.ok()) {
        Error e = listed.error();
        e.message = "listing the refs of " + repo + ": " + e.message;
        return e;
    }
    const CapturedRun& run = *listed;
    if (!run.status.success()) return git_failed("listing the refs of " + repo, run);
    if (auto sha = ref_sha_in_ls_remote(run.output, ref)) return *sha;
    return make_error(ErrorCode::NotFound, "no ref '" + ref + "' in " + repo);
}

std::string GitCache::mirror_path(const std::string& repo_text) const {
    auto repo = normalize_repo(repo_text);
    if (!repo.ok()) return "";
    const Area& area = is_local_repo(*repo) ? *m_local : *m_remote;
    return area.real + "/" + sha256_hex(*repo).substr(0, 24) + ".git";
}

Result<std::string> GitCache::fetch(const std::string& repo_text, const std::string& sha, const std::string& ref) {
    const std::string repo = TRY(normalize_repo(repo_text));
    if (!is_full_sha(sha)) return make_error(ErrorCode::InvalidArgument, "sha must be 40 lowercase hex digits");
    if (!ref.empty()) TRY(validate_ref(ref));
    const Area& area = is_local_repo(repo) ? *m_local : *m_remote;
    TRY(prepare(area));
    const std::string cache_repo = area.real + "/" + sha256_hex(repo).substr(0, 24) + ".git";
    const std::string view = area.to_view(cache_repo);
    std::lock_guard lock(repo_mutex(cache_repo));
    struct MarkUsed {  // on every path out, once git is done with it: retention goes by it
        const std::string& path;
        ~MarkUsed() { ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0); }
    } mark_used{cache_repo};
    const Millis quick = m_config.quick_timeout;
    auto have_commit = [&]() -> Result<bool> {
        auto have = TRY(area.git({"-C", view, "cat-file", "-e", sha + "^{commit}"}, quick));
        return have.status.success();
    };
    const uint64_t cap = m_config.max_repo_bytes;
    // A cache that grew past the cap over many fetches starts again from this commit alone.
    if (!area.local && path_exists(cache_repo) && disk_usage(cache_repo) > cap) TRY(remove_tree(cache_repo));
    if (!path_exists(cache_repo + "/HEAD")) {
        auto init = TRY(area.git({"init", "-q", "--bare", view}, quick));
        if (!init.status.success()) return git_failed("creating the cache repository", init);
    }
    if (TRY(have_commit())) return cache_repo;
    const std::string cap_text = std::to_string(cap >> 20) + " MiB";
    auto over_cap = [&]() -> Status {
        if (area.local || disk_usage(cache_repo) <= cap) return ok_status();
        return make_error(ErrorCode::TooLarge, "the repository " + repo + " is larger than ci_repo_max_mib (" + cap_text +
                                                   "): its fetch was stopped");
    };
    // A URL: only the commit, not its history (--depth=1). An operator's local path: everything.
    auto fetch_one = [&](const std::string& what) -> Result<CapturedRun> {
        auto run = area.local ? area.git({"-C", view, "fetch", "-q", "--no-tags", "--", repo, what}, m_config.fetch_timeout,
                                         64 * 1024)
                              : area.git({"-C", view, "fetch", "-q", "--no-tags", "--depth=1", "--", repo, what},
                                         m_config.fetch_timeout, 64 * 1024, false, over_cap);
        if (!run.ok()) {
            if (run.error().code == ErrorCode::TooLarge) (void)remove_tree(cache_repo);  // partial packs included
            Error e = run.error();
            e.message = "fetching " + what + " from " + repo + ": " + e.message;
            return e;
        }
        return run;
    };
    auto run = TRY(fetch_one(sha));
    if (run.status.success() && TRY(have_commit())) return cache_repo;
    const std::string by_id = last_lines(run.output, 3);
    // Some servers refuse a commit id (uploadpack.allowReachableSHA1InWant off, dumb HTTP): the
    // ref's tip then, which must be the commit.
    const std::string tip = ref.empty() ? "HEAD" : ref;
    auto by_ref = TRY(fetch_one(tip));
    if (!by_ref.status.success()) return git_failed("fetching " + sha + " from " + repo + " (by id: " + trim(by_id) + "; by " + tip + ")", by_ref);
    if (TRY(have_commit())) return cache_repo;
    return make_error(ErrorCode::NotFound, "commit " + sha + " is not in " + repo + ": the server would not send it by its id (" +
                                               trim(by_id) + ") and it is not the tip of " + tip);
}

Result<std::optional<std::string>> GitCache::read_file(const std::string& cache_repo, const std::string& sha,
                                                       const std::string& path, size_t max_bytes) {
    // One process: `cat-file blob` fails for a missing path or a folder alike (checked below).
    const Area& area = area_of(cache_repo);
    auto run = TRY(area.git({"-C", area.to_view(cache_repo), "cat-file", "blob", sha + ":" + path}, m_config.quick_timeout,
                            max_bytes + 1));
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
    const Area& area = area_of(cache_repo);
    auto run = TRY(area.git({"-C", area.to_view(cache_repo), "ls-tree", "--full-tree", sha, "--", path},
                            m_config.quick_timeout, 64 * 1024));
    if (!run.status.success()) return git_failed("listing " + path, run);
    return blob_id_in_ls_tree(run.output, path);
}

Result<std::string> GitCache::checkout_tar(const std::string& cache_repo, const std::string& sha, const std::string& dir) {
    const Area& area = area_of(cache_repo);
    const std::string repo_view = area.to_view(cache_repo);
    const Millis slow = m_config.fetch_timeout, quick = m_config.quick_timeout;
    {
        // The ref keeps the commit from an automatic gc of the cache repository.
        std::lock_guard lock(repo_mutex(cache_repo));
        auto upd = TRY(area.git({"-C", repo_view, "update-ref", "refs/kiln/jobs/" + sha, sha}, quick));
        if (!upd.status.success()) return git_failed("naming the commit", upd);
    }
    // The checkout expands on this host's disk now, not in the VM's: a small pack can hold
    // gigabytes of zeros, so its size is checked first (blob sizes, from the tree).
    auto tree = TRY(area.git({"-C", repo_view, "ls-tree", "-r", "-l", "-z", "--full-tree", sha}, slow, kMaxTreeListing));
    if (!tree.status.success()) return git_failed("listing " + sha, tree);
    if (tree.output.size() >= kMaxTreeListing)
        return make_error(ErrorCode::TooLarge, "the commit has too many files for a job's checkout");
    const uint64_t total = total_size_in_ls_tree(tree.output);
    if (total > kMaxCheckoutBytes)
        return make_error(ErrorCode::TooLarge, "the commit's files come to " + std::to_string(total >> 20) + " MiB; a job's checkout may have " +
                                           std::to_string(kMaxCheckoutBytes >> 20) + " MiB");

    // Staged in the area's work/<job> (owned by the user that runs git there) as work/src, so
    // that the tar extracts with `tar -C /`; tar itself (which runs nothing) reads it as kilnd.
    const std::string name = std::filesystem::path(dir).filename().string();
    if (name.empty() || name == "." || name == "..") return make_error(ErrorCode::InvalidArgument, "checkout_tar: bad job dir");
    const std::string tmp = area.real + "/work/" + name;
    const std::string src_view = area.to_view(tmp) + "/work/src";
    (void)remove_tree(tmp);
    struct Cleanup {
        std::string path;
        ~Cleanup() { (void)remove_tree(path); }
    } cleanup{tmp};
    for (const std::string& d : {tmp, tmp + "/work", tmp + "/work/src"}) TRY(make_owned_dir(d, 0755, area.run_as));
    // No hooks or sample files (--template=), no FETCH_HEAD or reflog naming this host; one pack
    // however few the objects (fetch.unpackLimit), so the VM gets a pack and its index as they are.
    auto init = TRY(area.git({"init", "-q", "--template=", src_view}, quick));
    if (!init.status.success()) return git_failed("creating the job's repository", init);
    // From the cache's own repository: the file transport, whatever the job's repository was.
    auto fetch = TRY(area.git({"-C", src_view, "-c", "fetch.unpackLimit=1", "fetch", "-q", "--no-tags", "--no-write-fetch-head",
                               "--", repo_view, sha}, slow, 64 * 1024, true));
    if (!fetch.status.success()) return git_failed("copying " + sha + " into the job's repository", fetch);
    auto co = TRY(area.git({"-C", src_view, "-c", "core.logAllRefUpdates=false", "-c", "advice.detachedHead=false", "checkout",
                            "-q", "-f", "--detach", sha}, slow, 64 * 1024));
    if (!co.status.success()) return git_failed("checking out " + sha, co);
    const std::string out = dir + "/code.tar";
    // --mode: the guest sees the modes a umask of 022 gives (files 0644, executables and folders
    // 0755) whatever kilnd's own umask (0077 under the systemd unit) made of the checkout.
    auto tar = TRY(run_and_capture({"tar", "-C", tmp, "--owner=0", "--group=0", "--numeric-owner", "--sort=name",
                                    "--mode=go+rX,go-w", "-cf", out, "work"}, slow, 64 * 1024));
    if (!tar.status.success())
        return make_error(ErrorCode::IoError, "writing the checkout's tar: tar " + tar.status.describe() + ": " + last_lines(tar.output, 5));
    return out;
}

}  // namespace kiln::ci
