// The privileged half of `init`: entropy, clock, hostname and ARP flush.
#include "agent/identity.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/random.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#include "base/errno_error.h"
#include "base/unique_fd.h"

namespace kiln::agent {
namespace {

Status add_entropy(const std::string& bytes) {
    // Opened once and kept: a clone of a snapshot then finds it open (after a restore, under TCG,
    // the path walk and the device open are freshly translated code in every clone).
    static UniqueFd fd;
    if (!fd) fd.reset(open("/dev/urandom", O_WRONLY | O_CLOEXEC));
    if (!fd) return errno_error("open /dev/urandom");
    if (!bytes.empty()) {
        std::vector<char> storage(sizeof(struct rand_pool_info) + bytes.size());
        auto* info = reinterpret_cast<struct rand_pool_info*>(storage.data());
        info->entropy_count = static_cast<int>(bytes.size() * 8);
        info->buf_size = static_cast<int>(bytes.size());
        std::memcpy(info->buf, bytes.data(), bytes.size());
        if (ioctl(fd.get(), RNDADDENTROPY, info) != 0) return errno_error("add entropy (RNDADDENTROPY)");
    }
    if (ioctl(fd.get(), RNDRESEEDCRNG) != 0) return errno_error("reseed the CRNG (RNDRESEEDCRNG)");
    return ok_status();
}

Status set_wall_clock(int64_t unix_ns) {
    struct timespec ts;
    ts.tv_sec = static_cast<time_t>(unix_ns / 1000000000);
    ts.tv_nsec = static_cast<long>(unix_ns % 1000000000);
    if (ts.tv_nsec < 0) {
        ts.tv_sec -= 1;
        ts.tv_nsec += 1000000000;
    }
    if (clock_settime(CLOCK_REALTIME, &ts) != 0) return errno_error("set the wall clock");
    return ok_status();
}

Status flush_arp_cache() {
    // Plain reads: iostreams would set up C++ locales first, ~20 ms of emulated CPU.
    UniqueFd table(open("/proc/net/arp", O_RDONLY | O_CLOEXEC));
    if (!table) return ok_status();  // no table, nothing cached
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(table.get(), buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    UniqueFd sock;
    for (const ArpEntry& entry : parse_arp_table(text)) {
        struct arpreq request;
        std::memset(&request, 0, sizeof request);
        auto* addr = reinterpret_cast<struct sockaddr_in*>(&request.arp_pa);
        addr->sin_family = AF_INET;
        if (inet_pton(AF_INET, entry.ip.c_str(), &addr->sin_addr) != 1) continue;
        std::strncpy(request.arp_dev, entry.device.c_str(), sizeof request.arp_dev - 1);
        if (!sock) {
            sock.reset(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
            if (!sock) return errno_error("open a socket to flush the ARP cache");
        }
        if (ioctl(sock.get(), SIOCDARP, &request) != 0 && errno != ENXIO)
            return errno_error("delete the ARP entry for " + entry.ip);
    }
    return ok_status();
}

}  // namespace

std::vector<ArpEntry> parse_arp_table(std::string_view text) {
    // IP address  HW type  Flags  HW address  Mask  Device, after one header line.
    std::vector<ArpEntry> entries;
    size_t pos = text.find('\n');
    while (pos != std::string_view::npos && pos + 1 < text.size()) {
        size_t end = text.find('\n', pos + 1);
        std::string_view line = text.substr(pos + 1, (end == std::string_view::npos ? text.size() : end) - pos - 1);
        pos = end;
        std::vector<std::string_view> fields;
        for (size_t i = 0; i < line.size();) {
            while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
            size_t j = i;
            while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
            if (j > i) fields.push_back(line.substr(i, j - i));
            i = j;
        }
        if (fields.size() >= 6) entries.push_back(ArpEntry{std::string(fields[0]), std::string(fields[5])});
    }
    return entries;
}

std::string decode_hex(const std::string& hex) {
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return 0;
    };
    std::string out;
    out.reserve(hex.size() / 2);
    for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(nibble(hex[i]) << 4 | nibble(hex[i + 1])));
    return out;
}

Status renew_identity(const proto::InitRequest& request) {
    TRY(add_entropy(decode_hex(request.entropy_hex)));
    if (request.time_unix_ns != 0) TRY(set_wall_clock(request.time_unix_ns));
    if (!request.hostname.empty() && sethostname(request.hostname.data(), request.hostname.size()) != 0)
        return errno_error("set the hostname to '" + request.hostname + "'");
    if (request.flush_arp) TRY(flush_arp_cache());
    return ok_status();
}

}  // namespace kiln::agent
