// libFuzzer target: the QMP client's reader (src/vm/qmp_client.cpp) against a hostile QEMU (a
// QEMU runs guest code under TCG). Over a socketpair, the input plays QEMU: the bytes before the
// first "\n\n" are the greeting and the capabilities reply, the rest is what QEMU sends after the
// client's first command (replies by id, events, junk). Checks: no crash and no exception on any
// thread, every call ends (the peer closes), and the typed results are sane.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <tuple>

#include "fuzz_support.h"
#include "vm/qmp_client.h"

using namespace kiln;
using namespace kiln::vm;
using kiln::fuzz::check;

namespace {

void write_all(int fd, const std::string& bytes) {
    size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
        if (n <= 0) return;  // the client closed: it refused what it read
        done += static_cast<size_t>(n);
    }
}

// Waits (briefly) for the client's next command line, so the replies in the input answer it.
void read_command(int fd) {
    std::string line;
    char c;
    while (line.size() < 4096) {
        struct pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0 || ::read(fd, &c, 1) != 1 || c == '\n') return;
        line += c;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string handshake, later;  // (not a structured binding: the peer's lambda captures them)
    std::tie(handshake, later) = kiln::fuzz::split_once(kiln::fuzz::as_string(data, size), "\n\n");
    handshake += '\n';  // the blank line's first '\n' ends the handshake's last line

    int sv[2];
    check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    UniqueFd qemu(sv[1]);
    write_all(qemu.get(), handshake);
    // QEMU's side: the rest of the input goes out once the client sent qmp_capabilities and its
    // first command, so the replies in it can answer that command by id. A handshake the client
    // refuses closes its end, which ends these waits at once; one it waits on ends with adopt's
    // short timeout.
    std::thread peer([&] {
        read_command(qemu.get());
        read_command(qemu.get());
        write_all(qemu.get(), later);
        ::shutdown(qemu.get(), SHUT_WR);
    });
    struct Join {
        std::thread& t;
        ~Join() { t.join(); }
    } join{peer};
    auto client = QmpClient::adopt(UniqueFd(sv[0]), Millis(100));
    if (!client.ok()) {
        check(client.error().code == ErrorCode::ProtocolError || client.error().code == ErrorCode::QmpError ||
              client.error().code == ErrorCode::VmGone || client.error().code == ErrorCode::Timeout);
        return 0;
    }
    QmpClient& qmp = **client;
    (void)qmp.qemu_version();
    auto status = qmp.query_status(Millis(5000));
    if (status.ok()) check(status->status.size() <= size);  // from the input, wherever in it
    (void)qmp.query_migrate(Millis(200));
    (void)qmp.query_version(Millis(200));
    auto event = qmp.wait_event("MIGRATION", Millis(0));
    if (event.ok()) {
        check(qmp_string(*event, "event") == "MIGRATION");
        (void)qmp_string(event->value("data", json::object()), "status");
    }
    check(qmp.events().size() <= QmpClient::kMaxEvents);
    return 0;
}
