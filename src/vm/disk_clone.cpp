// FICLONE, with a SEEK_DATA/SEEK_HOLE + copy_file_range fallback that keeps holes.
#include "vm/disk_clone.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/errno_error.h"
#include "base/random.h"
#include "base/unique_fd.h"

namespace kiln::vm {
namespace {

// Errors that mean "this file system (pair) cannot reflink", not "something is broken".
bool reflink_unsupported(int err) {
    return err == EOPNOTSUPP || err == ENOTTY || err == EXDEV || err == EINVAL || err == ENOSYS;
}

Status copy_range(int in, int out, off_t start, off_t end, const std::string& what) {
    off_t in_off = start, out_off = start;
    bool use_cfr = true;
    std::string buf;
    while (in_off < end) {
        size_t want = static_cast<size_t>(std::min<off_t>(end - in_off, 64 << 20));
        if (use_cfr) {
            ssize_t n = ::copy_file_range(in, &in_off, out, &out_off, want, 0);
            if (n > 0) continue;
            if (n == 0) return make_error(ErrorCode::IoError, what + ": source shrank during the copy");
            if (errno == EINTR) continue;
            if (errno != EXDEV && errno != ENOSYS && errno != EOPNOTSUPP && errno != EINVAL)
                return errno_error("copy " + what);
            use_cfr = false;  // fall back to read/write
            buf.resize(1 << 20);
        }
        ssize_t n = ::pread(in, buf.data(), std::min(want, buf.size()), in_off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("read " + what);
        }
        if (n == 0) return make_error(ErrorCode::IoError, what + ": source shrank during the copy");
        for (ssize_t done = 0; done < n;) {
            ssize_t w = ::pwrite(out, buf.data() + done, static_cast<size_t>(n - done), out_off + done);
            if (w < 0) {
                if (errno == EINTR) continue;
                return errno_error("write " + what);
            }
            done += w;
        }
        in_off += n;
        out_off += n;
    }
    return ok_status();
}

Status sparse_copy(int in, int out, off_t size, const std::string& what) {
    if (::ftruncate(out, size) != 0) return errno_error("truncate " + what);
    off_t pos = 0;
    while (pos < size) {
        off_t data = ::lseek(in, pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO) break;  // only a hole is left
            if (errno == EINVAL) return copy_range(in, out, pos, size, what);  // no SEEK_DATA support
            return errno_error("seek " + what);
        }
        off_t hole = ::lseek(in, data, SEEK_HOLE);
        if (hole < 0) return errno_error("seek " + what);
        TRY(copy_range(in, out, data, std::min(hole, size), what));
        pos = hole;
    }
    return ok_status();
}

}  // namespace

const char* clone_method_name(CloneMethod method) {
    return method == CloneMethod::Reflink ? "reflink" : "sparse copy";
}

Result<CloneMethod> clone_file(const std::string& src, const std::string& dst) {
    UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));  // a jailed QEMU may have swapped its disk for a link
    if (!in) return errno_error("open " + src);
    struct stat st;
    if (::fstat(in.get(), &st) != 0) return errno_error("stat " + src);
    if (!S_ISREG(st.st_mode)) return make_error(ErrorCode::InvalidArgument, src + " is not a regular file");
    UniqueFd out(::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!out) return errno_error("create " + dst);

    Result<CloneMethod> result = CloneMethod::Reflink;
    if (::ioctl(out.get(), FICLONE, in.get()) != 0) {
        int err = errno;
        if (!reflink_unsupported(err)) {
            result = errno_error("reflink " + src + " to " + dst, err);
        } else {
            Status st_copy = sparse_copy(in.get(), out.get(), st.st_size, src + " -> " + dst);
            if (st_copy.ok()) result = CloneMethod::SparseCopy;
            else result = st_copy.error();
        }
    }
    if (!result.ok()) {
        out.reset();
        ::unlink(dst.c_str());
    }
    return result;
}

Result<bool> can_reflink(const std::string& dir) {
    auto suffix = TRY(random_hex(6));
    std::string a = dir + "/.kiln-reflink-probe-" + suffix + "-a";
    std::string b = dir + "/.kiln-reflink-probe-" + suffix + "-b";
    UniqueFd fa(::open(a.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fa) return errno_error("create " + a);
    std::string block(4096, 'k');
    bool ok_write = ::write(fa.get(), block.data(), block.size()) == static_cast<ssize_t>(block.size());
    int saved = errno;
    UniqueFd fb(::open(b.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    Result<bool> result = false;
    if (!ok_write) result = errno_error("write " + a, saved);
    else if (!fb) result = errno_error("create " + b);
    else result = ::ioctl(fb.get(), FICLONE, fa.get()) == 0;
    ::unlink(a.c_str());
    if (fb) ::unlink(b.c_str());
    return result;
}

bool try_reflink(const std::string& src, const std::string& dst) {
    UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));  // a jailed QEMU may have swapped its disk for a link
    if (!in) return false;
    UniqueFd out(::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!out) return false;
    if (::ioctl(out.get(), FICLONE, in.get()) == 0) return true;
    out.reset();
    ::unlink(dst.c_str());
    return false;
}

Status reclone_file(const std::string& src, const std::string& dst) {
    UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));  // a jailed QEMU may have swapped its disk for a link
    if (!in) return errno_error("open " + src);
    UniqueFd out(::open(dst.c_str(), O_WRONLY | O_CLOEXEC));
    if (!out) return errno_error("open " + dst);
    if (::ioctl(out.get(), FICLONE, in.get()) != 0) return errno_error("reflink " + src + " onto " + dst);
    return ok_status();
}

}  // namespace kiln::vm
