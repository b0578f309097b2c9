// CheckoutTar: a job's checkout tar, made beside the VM's start (see checkout_tar.h).
#include "ci/jobs/checkout_tar.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/clock.h"
#include "ci/jobs/git_source.h"

namespace kiln::ci {

CheckoutTar::CheckoutTar(GitCache& git, std::string cache_repo, std::string sha, std::string dir)
    : m_future(std::async(std::launch::async, [&git, repo = std::move(cache_repo), sha = std::move(sha),
                                               dir = std::move(dir), this] {
          int64_t start = monotonic_ms();
          auto r = git.checkout_tar(repo, sha, dir);
          m_made_ms = monotonic_ms() - start;
          return r;
      })) {}

CheckoutTar::~CheckoutTar() { remove(); }

void CheckoutTar::remove() {
    if (const auto& made = wait(); made.ok()) ::unlink(made->c_str());
}

const Result<std::string>& CheckoutTar::wait() {
    std::call_once(m_once, [this] { m_result.emplace(m_future.get()); });
    return *m_result;
}

vm::ByteSource CheckoutTar::source() {
    auto fd = std::make_shared<UniqueFd>();
    return [this, fd](char* buf, size_t cap) -> Result<size_t> {
        if (!*fd) {
            int64_t start = monotonic_ms();
            const auto& path = wait();
            m_waited_ms = monotonic_ms() - start;
            if (!path.ok()) return path.error();
            *fd = UniqueFd(::open(path->c_str(), O_RDONLY | O_CLOEXEC));
            if (!*fd)
                return make_error(ErrorCode::IoError, "opening the checkout's tar: " + std::string(std::strerror(errno)));
        }
        ssize_t n = ::read(fd->get(), buf, cap);
        if (n < 0) return make_error(ErrorCode::IoError, "reading the checkout's tar: " + std::string(std::strerror(errno)));
        return static_cast<size_t>(n);
    };
}

}  // namespace kiln::ci
