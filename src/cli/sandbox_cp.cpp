// `kiln sandbox cp SRC DST`: copies files and folders between the host and a sandbox (ID:/path), like `docker cp`.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "cli/api_client.h"
#include "cli/output.h"
#include "cli/sandbox_commands.h"
#include "cli/tar_archive.h"

namespace kiln::cli {
namespace {

using nlohmann::json;

struct CpOptions {
    ApiOptions api;
    std::string src;
    std::string dst;
};

// One side of a copy: a host path, or "ID:/path" in a sandbox.
struct Location {
    std::string sandbox;  // empty: the host
    std::string path;
};

Error cp_error(const std::string& message) { return make_error(ErrorCode::CliUsage, "sandbox cp: " + message); }
Error io_error(const std::string& what) { return make_error(ErrorCode::CliIo, what + ": " + std::strerror(errno)); }

Result<Location> parse_location(const std::string& text) {
    size_t colon = text.find(':');
    // "sb-…:/path" is a sandbox path; anything with a '/' before the colon ("./a:b") is a host path.
    if (colon != std::string::npos && colon > 0 && text.substr(0, colon).find('/') == std::string::npos) {
        Location loc{text.substr(0, colon), text.substr(colon + 1)};
        if (loc.path.empty() || loc.path.front() != '/')
            return cp_error("the sandbox side needs an absolute path, e.g. " + loc.sandbox + ":/root/file");
        return loc;
    }
    if (text.empty()) return cp_error("empty path");
    return Location{"", text};
}

std::string base_name(std::string path) {
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string join(const std::string& dir, const std::string& name) {
    return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::string files_url(const std::string& sandbox_base, const std::string& endpoint, const std::string& path) {
    return sandbox_base + endpoint + "?path=" + url_encode(path);
}

// The sandbox path's FileInfo, or nullopt when it does not exist.
Result<std::optional<json>> remote_stat(ApiClient& client, const std::string& base, const std::string& path) {
    auto info = client.call("GET", files_url(base, "/files/stat", path));
    if (!info.ok()) {
        if (info.error().code == ErrorCode::NotFound) return std::optional<json>();
        return info.error();
    }
    return std::optional<json>(*info);
}

Result<int> upload(ApiClient& client, const CpOptions& o, const std::string& src, const Location& dst) {
    std::string base = TRY(sandbox_path(dst.sandbox));
    struct stat st;
    if (::stat(src.c_str(), &st) != 0) return io_error("sandbox cp: " + src);
    std::optional<json> target = TRY(remote_stat(client, base, dst.path));
    bool target_is_dir = target && field(*target, "type") == "dir";
    if (target && !target_is_dir && S_ISDIR(st.st_mode))
        return cp_error("cannot copy folder " + src + " onto file " + dst.path);

    // "." or "dir/.." name the folder they resolve to.
    std::string name = base_name(src);
    if (name == "." || name == "..") {
        char resolved[PATH_MAX];
        if (::realpath(src.c_str(), resolved)) name = base_name(resolved);
    }
    if (name.empty() || name == "/") name = "root";

    json answer;
    if (S_ISREG(st.st_mode)) {
        // Into an existing folder (or a path ending in '/') under the file's own name.
        std::string path = target_is_dir || dst.path.back() == '/' ? join(dst.path, name) : dst.path;
        UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
        if (!in) return io_error("sandbox cp: " + src);
        char mode[8];
        std::snprintf(mode, sizeof mode, "0%03o", static_cast<unsigned>(st.st_mode & 0777));
        WaitingLine waiting("uploading " + src, o.api.verbose);
        answer = TRY(client.upload("PUT", files_url(base, "/files", path) + "&mode=" + mode,
                                   "application/octet-stream", in.get(), static_cast<uint64_t>(st.st_size)));
    } else if (S_ISDIR(st.st_mode)) {
        // docker cp's rule: into an existing folder as <dst>/<name>, else as <dst> itself.
        std::string prefix = target_is_dir ? name + "/" : "";
        if (!target) TRY(client.call("POST", files_url(base, "/files/mkdir", dst.path)));
        PackedTar tar = TRY(pack_folder(src, prefix));
        WaitingLine waiting("uploading " + src + " (" + std::to_string(tar.entries) + " entries)", o.api.verbose);
        answer = TRY(client.upload("POST", files_url(base, "/files/tar", dst.path), "application/x-tar",
                                   tar.fd.get(), tar.size));
    } else {
        return cp_error(src + " is neither a file nor a folder");
    }
    if (o.api.json_output) print_json(answer);
    return 0;
}

// Streams a download into a temp file next to `dest`, then renames it over `dest`.
Status download_file(ApiClient& client, const std::string& url, const std::string& dest, unsigned mode) {
    if (dest == "-")
        return client.download(url, [](const char* d, size_t n) { return print_out(std::string_view(d, n)); });
    std::string tmp = dest + ".kiln-XXXXXX";
    UniqueFd out(::mkstemp(tmp.data()));
    if (!out) return io_error("sandbox cp: cannot write next to " + dest);
    Status got = client.download(url, [&](const char* d, size_t n) {
        while (n > 0) {
            ssize_t w = ::write(out.get(), d, n);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) return false;
            d += w;
            n -= static_cast<size_t>(w);
        }
        return true;
    });
    if (got.ok() && ::fchmod(out.get(), mode) != 0) got = io_error("sandbox cp: chmod " + dest);
    if (got.ok() && ::rename(tmp.c_str(), dest.c_str()) != 0) got = io_error("sandbox cp: rename to " + dest);
    if (!got.ok()) ::unlink(tmp.c_str());
    return got;
}

// The API does not say whether a folder's tar names its entries "x" or "<folder>/x". When every
// top-level name is the folder's own name and the folder has other children than one of that
// name, the names carry the folder's: strip it.
Result<std::string> name_prefix_to_strip(ApiClient& client, const std::string& base, const std::string& path,
                                         const std::vector<std::string>& names) {
    std::string folder = base_name(path);
    if (names.empty() || folder.empty() || folder == "/") return std::string();
    for (const auto& n : names)
        if (n != folder && n.rfind(folder + "/", 0) != 0) return std::string();
    json listing = TRY(client.call("GET", files_url(base, "/files/list", path)));
    const json& entries = listing.contains("entries") && listing["entries"].is_array() ? listing["entries"] : json::array();
    for (const auto& e : entries)
        if (field(e, "name") != folder) return folder;  // a child the tar would have named at its top
    // The folder's only child has the folder's name: "x/..." names are that child's, as they are.
    return std::string();
}

Result<int> download(ApiClient& client, const CpOptions& o, const Location& src, const std::string& dst) {
    std::string base = TRY(sandbox_path(src.sandbox));
    std::optional<json> info = TRY(remote_stat(client, base, src.path));
    if (!info) return make_error(ErrorCode::NotFound, src.sandbox + ":" + src.path + " does not exist");
    struct stat st;
    bool dst_exists = dst != "-" && ::stat(dst.c_str(), &st) == 0;
    bool dst_is_dir = dst_exists && S_ISDIR(st.st_mode);
    std::string type = field(*info, "type");
    unsigned mode = 0644;
    try {
        mode = static_cast<unsigned>(std::stoul(field(*info, "mode"), nullptr, 8)) & 0777;
    } catch (const std::exception&) {
    }

    if (type == "dir") {
        if (dst == "-") return cp_error("cannot write a folder to stdout");
        if (dst_exists && !dst_is_dir) return cp_error("cannot copy folder " + src.path + " onto file " + dst);
        std::string into = dst_is_dir ? join(dst, base_name(src.path)) : dst;
        if (::mkdir(into.c_str(), 0755) != 0 && errno != EEXIST) return io_error("sandbox cp: mkdir " + into);
        // The tar is spooled to an unlinked temp file first: libarchive reads a file, not a callback.
        const char* tmpdir = std::getenv("TMPDIR");
        UniqueFd spool(::open(tmpdir && *tmpdir ? tmpdir : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
        if (!spool) return io_error("sandbox cp: temp file");
        {
            WaitingLine waiting("downloading " + src.path, o.api.verbose);
            TRY(client.download(files_url(base, "/files/tar", src.path), [&](const char* d, size_t n) {
                return ::write(spool.get(), d, n) == static_cast<ssize_t>(n);
            }));
        }
        if (::lseek(spool.get(), 0, SEEK_SET) != 0) return io_error("sandbox cp: rewind");
        std::string strip = TRY(name_prefix_to_strip(client, base, src.path, TRY(tar_names(spool.get()))));
        if (::lseek(spool.get(), 0, SEEK_SET) != 0) return io_error("sandbox cp: rewind");
        TRY(unpack_into(spool.get(), into, strip));
        (void)::chmod(into.c_str(), mode);
    } else {
        std::string into = dst_is_dir ? join(dst, base_name(src.path)) : dst;
        WaitingLine waiting("downloading " + src.path, o.api.verbose);
        TRY(download_file(client, files_url(base, "/files", src.path), into, mode));
    }
    if (o.api.json_output && dst != "-") print_json(*info);
    return 0;
}

Result<int> sandbox_cp(ApiClient& client, const CpOptions& o) {
    Location src = TRY(parse_location(o.src));
    Location dst = TRY(parse_location(o.dst));
    if (!src.sandbox.empty() && !dst.sandbox.empty())
        return cp_error("copy between two sandboxes through the host: one side must be a host path");
    if (src.sandbox.empty() && dst.sandbox.empty())
        return cp_error("one side must be in a sandbox, as ID:/path (use ./a:b for a host path with a colon)");
    client.set_read_timeout(3600);  // a big tarball takes a while to pack in the guest
    if (!dst.sandbox.empty()) return upload(client, o, src.path, dst);
    return download(client, o, src, dst.path);
}

}  // namespace

void add_sandbox_cp_command(CLI::App& group, CliContext& ctx) {
    auto opts = std::make_shared<CpOptions>();
    auto* c = group.add_subcommand("cp", "Copy a file or folder between the host and a sandbox (ID:/path)");
    c->add_option("src", opts->src, "Source: a host path or ID:/path")->required();
    c->add_option("dst", opts->dst, "Destination: a host path (- for stdout) or ID:/path")->required();
    add_api_options(c, opts->api);
    c->footer(
        "Like docker cp: into an existing folder the copy keeps its name (DST/NAME); otherwise it becomes DST.\n"
        "Folders travel as tarballs (files/tar); files keep their permission bits, not their owner.\n"
        "--json prints kilnd's answer: the written file's FileInfo, the tar upload's {entries, bytes}, or the\n"
        "source's FileInfo for a download.");
    c->callback([opts, &ctx] {
        ctx.exit_code = run_with_client(opts->api, [&](ApiClient& client) { return sandbox_cp(client, *opts); });
    });
}

}  // namespace kiln::cli
