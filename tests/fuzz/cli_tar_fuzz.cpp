// libFuzzer target: `kiln sandbox cp SB:/dir .` unpacking a guest's tar (src/cli/tar_archive.cpp)
// for real, into a fresh folder under a temp dir. Checks: unpack_into never crashes, leaves the
// working directory where it was, writes nothing beside its destination, and what it writes is
// only files, folders and symlinks, with no setuid, setgid or sticky bit and no hard links.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include "fuzz_support.h"
#include "cli/tar_archive.h"

using kiln::fuzz::check;

namespace fs = std::filesystem;

namespace {

// One temp dir per process: <root>/dest is emptied and remade for each input. (Never freed: the
// exit handler that removes the dir runs after static destructors would have.)
const std::string& root_dir() {
    static const std::string* root = [] {
        char tmpl[] = "/tmp/kiln-cli-tar-fuzz-XXXXXX";
        check(::mkdtemp(tmpl) != nullptr);
        auto* dir = new std::string(tmpl);
        std::atexit([] {
            std::error_code ec;
            fs::remove_all(root_dir(), ec);
        });
        return dir;
    }();
    return *root;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 1 << 20) return 0;
    const std::string& root = root_dir();
    const std::string dest = root + "/dest";
    std::error_code ec;
    fs::remove_all(dest, ec);
    check(fs::create_directory(dest, ec));

    kiln::UniqueFd tar(::memfd_create("tar", MFD_CLOEXEC));
    check(bool(tar));
    check(::write(tar.get(), data, size) == static_cast<ssize_t>(size));
    check(::lseek(tar.get(), 0, SEEK_SET) == 0);
    auto names = kiln::cli::tar_names(tar.get());
    check(::lseek(tar.get(), 0, SEEK_SET) == 0);
    std::string strip = names.ok() && !names->empty() ? names->front().substr(0, names->front().find('/')) : "";

    char before[4096];
    check(::getcwd(before, sizeof before) != nullptr);
    (void)kiln::cli::unpack_into(tar.get(), dest, strip);
    char after[4096];
    check(::getcwd(after, sizeof after) != nullptr);
    check(std::string(before) == after);

    // Nothing beside the destination, and nothing inside it that the CLI must never make.
    for (const auto& entry : fs::directory_iterator(root)) check(entry.path().filename() == "dest");
    for (auto it = fs::recursive_directory_iterator(dest, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
        struct stat st;
        check(::lstat(it->path().c_str(), &st) == 0);
        check(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode));
        check((st.st_mode & 07000) == 0);
        check(S_ISDIR(st.st_mode) || st.st_nlink == 1);
        if (S_ISDIR(st.st_mode)) ::chmod(it->path().c_str(), 0700);  // a 0000 folder must still be walked and removed
    }
    check(!ec);
    return 0;
}
