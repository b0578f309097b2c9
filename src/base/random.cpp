// getrandom(2)-backed randomness; blocks only until the host CRNG is initialised.
#include "base/random.h"

#include <sys/random.h>

#include <cerrno>

#include "base/errno_error.h"

namespace kiln {

Result<std::string> random_bytes(size_t count) {
    std::string out(count, '\0');
    size_t done = 0;
    while (done < count) {
        ssize_t n = ::getrandom(out.data() + done, count - done, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error("getrandom");
        }
        done += static_cast<size_t>(n);
    }
    return out;
}

std::string to_hex(const std::string& bytes) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char c : bytes) {
        out.push_back(digits[c >> 4]);
        out.push_back(digits[c & 0xf]);
    }
    return out;
}

Result<std::string> random_hex(size_t count) {
    auto bytes = TRY(random_bytes(count));
    return to_hex(bytes);
}

}  // namespace kiln
