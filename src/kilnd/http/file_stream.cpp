// See file_stream.h.
#include "kilnd/http/file_stream.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "base/unique_fd.h"

namespace kiln::daemon::http {

Status stream_file(Response& res, const std::string& path, const std::string& content_type) {
    int f = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (f < 0) return make_error(ErrorCode::NotFound, "the file is gone");
    auto fd = std::make_shared<UniqueFd>(f);
    struct stat st {};
    if (::fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) return make_error(ErrorCode::NotFound, "not a file");
    res.status = 200;
    res.set_content_provider(static_cast<size_t>(st.st_size), content_type, [fd](size_t offset, size_t length, DataSink& sink) {
        char buf[64 * 1024];
        ssize_t n = ::pread(fd->get(), buf, std::min(length, sizeof buf), static_cast<off_t>(offset));
        if (n <= 0) return false;
        return sink.write(buf, static_cast<size_t>(n));
    });
    return ok_status();
}

}  // namespace kiln::daemon::http
