// Locates and sanity-checks guest kernels and images; names run directories.
#include "vm/guest_artifacts.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/errno_error.h"
#include "base/file_util.h"
#include "base/unique_fd.h"
#include "base/unix_socket.h"

namespace kiln::vm {
namespace {

std::string env_or(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return v && *v ? v : fallback;
}

std::string trim(std::string s) {
    while (!s.empty() && isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
    size_t start = 0;
    while (start < s.size() && isspace(static_cast<unsigned char>(s[start]))) ++start;
    return s.substr(start);
}

Result<std::string> read_at(const std::string& path, off_t offset, size_t size) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return errno_error("open " + path);
    std::string buf(size, '\0');
    ssize_t n = ::pread(fd.get(), buf.data(), size, offset);
    if (n < 0) return errno_error("read " + path);
    buf.resize(static_cast<size_t>(n));
    return buf;
}

const char* kBuildHint = "build it with `make images` (or scripts/build-kernel.sh), or point KILN_KERNEL at a vmlinux";

}  // namespace

std::string cache_root() { return env_or("KILN_CACHE", "/var/cache/kiln"); }
std::string data_dir() { return env_or("KILN_DATA_DIR", "/var/lib/kiln"); }
std::string vms_dir() { return data_dir() + "/vms"; }

Status check_kernel_file(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return errno_error("kernel " + path);
    if (!S_ISREG(st.st_mode)) return make_error(ErrorCode::KernelInvalid, "the kernel " + path + " is not a regular file");
    auto head = read_at(path, 0, 4);
    if (!head.ok()) return head.error();
    auto setup = read_at(path, 0x202, 4);
    bool elf = *head == "\x7f" "ELF";
    bool bzimage = setup.ok() && *setup == "HdrS";
    if (!elf && !bzimage)
        return make_error(ErrorCode::KernelInvalid, "the kernel " + path + " is neither an ELF vmlinux nor a bzImage");
    return ok_status();
}

Result<KernelArtifact> find_kernel() {
    KernelArtifact k;
    const char* env = std::getenv("KILN_KERNEL");
    if (env && *env) {
        k.path = env;
        k.origin = "KILN_KERNEL";
    } else {
        k.path = cache_root() + "/kernel/vmlinux";
        k.origin = cache_root() + "/kernel";
    }
    if (!path_exists(k.path)) {
        std::string detail = k.origin == "KILN_KERNEL" ? "KILN_KERNEL points at " + k.path + ", which does not exist"
                                                        : "no guest kernel at " + k.path;
        return make_error(ErrorCode::KernelMissing, detail + "; " + kBuildHint);
    }
    Status st = check_kernel_file(k.path);
    if (!st.ok()) return make_error(st.error().code == ErrorCode::IoError ? ErrorCode::KernelMissing : st.error().code,
                                    st.error().message + "; " + kBuildHint);
    std::string dir = k.path.substr(0, k.path.rfind('/'));
    if (auto release = read_file(dir + "/release", 4096); release.ok()) k.release = trim(*release);
    return k;
}

Status validate_image_name(const std::string& name) {
    if (name.empty() || name.size() > 64)
        return make_error(ErrorCode::InvalidArgument, "image name must be 1 to 64 characters");
    for (char c : name)
        if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
            return make_error(ErrorCode::InvalidArgument, "image name '" + name + "' may hold only letters, digits, '-', '_' and '.'");
    if (name[0] == '.') return make_error(ErrorCode::InvalidArgument, "image name must not start with '.'");
    return ok_status();
}

Status check_ext4_image(const std::string& path) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return errno_error("image " + path);
    if (!S_ISREG(st.st_mode)) return make_error(ErrorCode::ImageCorrupt, "the image " + path + " is not a regular file");
    auto magic = read_at(path, 1080, 2);
    if (!magic.ok()) return magic.error();
    if (magic->size() != 2 || static_cast<unsigned char>((*magic)[0]) != 0x53 ||
        static_cast<unsigned char>((*magic)[1]) != 0xEF)
        return make_error(ErrorCode::ImageCorrupt, "the image " + path +
                                               " has no ext4 superblock (magic 0xEF53 at byte 1080); rebuild it "
                                               "with `make images`");
    return ok_status();
}

Result<ImageArtifact> find_image(const std::string& name) {
    TRY(validate_image_name(name));
    ImageArtifact image;
    image.name = name;
    std::string dir = cache_root() + "/images/" + name;
    image.rootfs = dir + "/rootfs.ext4";
    image.manifest = dir + "/manifest.json";
    if (!path_exists(image.rootfs))
        return make_error(ErrorCode::ImageMissing, "no image '" + name + "' at " + image.rootfs +
                                               "; build it with `make images` (scripts/build-image-" + name + ".sh)");
    TRY(check_ext4_image(image.rootfs));
    return image;
}

std::vector<std::string> list_images() {
    std::vector<std::string> names;
    std::string dir = cache_root() + "/images";
    DIR* d = ::opendir(dir.c_str());
    if (!d) return names;
    while (struct dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n.empty() || n[0] == '.' || !validate_image_name(n).ok()) continue;
        // The keyed build dirs behind the names (tiny -> tiny-<16 hex key>) are not image names.
        if (n.size() > 17 && n[n.size() - 17] == '-' &&
            n.find_first_not_of("0123456789abcdef", n.size() - 16) == std::string::npos)
            continue;
        struct stat st;
        if (::stat((dir + "/" + n).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) names.push_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    return names;
}

Result<std::string> run_dir_for(const std::string& vm_id) {
    if (vm_id.empty() || vm_id.size() > 32 || vm_id.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyz-") != std::string::npos)
        return make_error(ErrorCode::InvalidArgument, "VM id must be 1 to 32 lowercase letters, digits or '-'");
    std::string dir = vms_dir() + "/" + vm_id;
    // The longest socket name inside is "console.sock".
    if (dir.size() + std::strlen("/console.sock") > kMaxUnixPathLength)
        return make_error(ErrorCode::InvalidArgument, "the data dir " + data_dir() +
                                                  " is too long for unix socket paths (at most 107 bytes); set "
                                                  "KILN_DATA_DIR to a shorter path");
    return dir;
}

}  // namespace kiln::vm
