// A forwarded request over Beast, synchronously on the request pool's thread (the head) and the
// stream's own thread (the body); see forward_client.h.
#include "kilnd/http/forward_client.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <limits>
#include <memory>

#include "base/clock.h"
#include "base/errno_error.h"
#include "base/unique_fd.h"
#include "base/json_log.h"
#include "base/sha256.h"
#include "kilnd/http/beast_names.h"
#include "daemon/fleet/fleet_signature.h"
#include "kilnd/http/route_context.h"

namespace kiln::daemon::http {

namespace {

constexpr std::chrono::seconds kConnectTimeout{5};
// An answer with a length up to this is read whole and answered as the owner's; longer ones and
// chunked ones stream through.
constexpr uint64_t kWholeAnswerBytes = 1 << 20;
constexpr size_t kChunkBytes = 64 * 1024;

// Headers that describe one hop, or that the forwarding host replaces.
bool hop_header(const std::string& name) {
    static const char* kNames[] = {"Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length", "Host",
                                   "Expect", "TE", "Upgrade", "Proxy-Connection", "Trailer",
                                   // The user's credentials stay on the first host: the owner
                                   // learns the caller from the signed token id.
                                   "Authorization", "Cookie", "X-Request-Id"};
    for (const char* n : kNames)
        if (beast::iequals(name, n)) return true;
    for (const char* n : fleet::kFleetHeaders)
        if (beast::iequals(name, n)) return true;
    return false;
}

// The upstream connection, shared by the head's read and the stream's thread.
struct Upstream {
    // No limit in the parser (a forwarded answer is as large as the owner's; fetch_file checks its
    // own): the largest value, not boost::none, which Beast 1.74 compares as below any length.
    Upstream() { parser.body_limit(std::numeric_limits<std::uint64_t>::max()); }
    net::io_context ioc;
    tcp::socket socket{ioc};
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::buffer_body> parser;
};

Error unreachable(const ForwardTarget& to, const std::string& what) {
    return make_error(ErrorCode::Unavailable, "host " + to.host + " (" + to.url + ") " + what);
}

// "http://host:port[/]" -> host, port.
bool split_url(const std::string& url, std::string& host, std::string& port) {
    static const std::string kScheme = "http://";
    if (url.compare(0, kScheme.size(), kScheme) != 0) return false;
    std::string rest = url.substr(kScheme.size());
    if (auto slash = rest.find('/'); slash != std::string::npos) rest.resize(slash);
    auto colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()) return false;
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    return true;
}

// Connects within kConnectTimeout; a dead peer machine then shows up on a silent connection
// within about a minute (TCP keepalive), not never.
Status connect(Upstream& up, const ForwardTarget& to) {
    std::string host, port;
    if (!split_url(to.url, host, port)) return unreachable(to, "has an advertise_url that is not http://host:port");
    beast::error_code ec;
    tcp::resolver resolver(up.ioc);
    auto endpoints = resolver.resolve(host, port, ec);
    if (ec) return unreachable(to, "cannot be resolved: " + ec.message());
    beast::error_code connected = net::error::would_block;
    net::async_connect(up.socket, endpoints, [&](const beast::error_code& e, const tcp::endpoint&) { connected = e; });
    up.ioc.run_for(kConnectTimeout);
    if (connected == net::error::would_block) {
        up.socket.close(ec);
        return unreachable(to, "did not accept a connection within " + std::to_string(kConnectTimeout.count()) + " s");
    }
    up.ioc.restart();
    if (connected) return unreachable(to, "is unreachable: " + connected.message());
    up.socket.set_option(net::socket_base::keep_alive(true), ec);
    int fd = up.socket.native_handle();
    int idle = 30, interval = 10, count = 3;
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
    up.socket.set_option(tcp::no_delay(true), ec);
    return ok_status();
}

// Reads the next piece of the answer's body into `out` (appending); false on an error. `done`
// says whether the body is complete.
bool read_some_body(Upstream& up, std::string& out, bool& done) {
    char chunk[kChunkBytes];
    auto& body = up.parser.get().body();
    body.data = chunk;
    body.size = sizeof chunk;
    beast::error_code ec;
    bhttp::read_some(up.socket, up.buffer, up.parser, ec);
    if (ec == bhttp::error::need_buffer) ec = {};
    if (ec) return false;
    out.append(chunk, sizeof chunk - body.size);
    done = up.parser.is_done();
    return true;
}

// The fleet headers of a request from this host acting for token `token_id`.
void sign(bhttp::request<bhttp::string_body>& out, const std::string& self_host, const std::string& fleet_secret,
          int64_t token_id) {
    fleet::FleetClaim claim{self_host, now_unix_ms(), token_id, sha256_hex(out.body())};
    out.set(fleet::kFleetBodyHeader, claim.body_sha256);
    out.set(fleet::kFleetHostHeader, claim.host);
    out.set(fleet::kFleetTimeHeader, std::to_string(claim.time_ms));
    out.set(fleet::kFleetTokenHeader, std::to_string(claim.token_id));
    out.set(fleet::kFleetSignatureHeader,
            fleet::fleet_signature(fleet_secret, claim, std::string(out.method_string()), std::string(out.target())));
}

bool all_zero(const char* data, size_t size) {
    for (size_t i = 0; i < size; ++i)
        if (data[i]) return false;
    return true;
}

}  // namespace

Result<FetchedFile> fetch_file(const ForwardTarget& to, const std::string& self_host, const std::string& fleet_secret,
                               int64_t token_id, const std::string& target, const std::string& path, uint64_t max_bytes) {
    auto up = std::make_shared<Upstream>();
    TRY(connect(*up, to));
    bhttp::request<bhttp::string_body> out;
    out.version(11);
    out.method(bhttp::verb::get);
    out.target(target);
    out.set(bhttp::field::host, to.url.substr(std::string("http://").size()));
    sign(out, self_host, fleet_secret, token_id);
    out.keep_alive(false);
    out.prepare_payload();
    beast::error_code ec;
    bhttp::write(up->socket, out, ec);
    if (!ec) bhttp::read_header(up->socket, up->buffer, up->parser, ec);
    if (ec) return unreachable(to, "failed before answering: " + ec.message());
    if (up->parser.get().result_int() != 200)
        return unreachable(to, "answered " + std::to_string(up->parser.get().result_int()) + " for " + target);
    if (auto length = up->parser.content_length(); length && *length > max_bytes)
        return make_error(ErrorCode::Unavailable, "host " + to.host + " sends " + std::to_string(*length) + " bytes for " +
                                                      target + ", more than the " + std::to_string(max_bytes) + " expected");

    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return errno_error("create " + path);
    std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> digest(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (!digest || EVP_DigestInit_ex(digest.get(), EVP_sha256(), nullptr) != 1)
        return make_error(ErrorCode::Internal, "SHA-256 context");
    FetchedFile got;
    got.announced_sha256 = std::string(up->parser.get()[kSha256Header]);
    bool done = up->parser.is_done();
    std::string piece;
    while (!done) {
        piece.clear();
        if (!read_some_body(*up, piece, done)) return unreachable(to, "ended " + target + " short");
        if (got.size + piece.size() > max_bytes)
            return make_error(ErrorCode::Unavailable, "host " + to.host + " sent more than " + std::to_string(max_bytes) +
                                                          " bytes for " + target);
        EVP_DigestUpdate(digest.get(), piece.data(), piece.size());
        // Zeros become holes: the copy is as sparse as the original (ftruncate below sets the size).
        if (all_zero(piece.data(), piece.size())) {
            if (::lseek(fd.get(), static_cast<off_t>(piece.size()), SEEK_CUR) < 0) return errno_error("seek " + path);
        } else {
            for (size_t off = 0; off < piece.size();) {
                ssize_t n = ::write(fd.get(), piece.data() + off, piece.size() - off);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) return errno_error("write " + path);
                off += static_cast<size_t>(n);
            }
        }
        got.size += piece.size();
    }
    if (::ftruncate(fd.get(), static_cast<off_t>(got.size)) != 0 || ::fsync(fd.get()) != 0) return errno_error("finish " + path);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(digest.get(), mac, &len);
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < len; ++i) {
        got.sha256 += kHex[mac[i] >> 4];
        got.sha256 += kHex[mac[i] & 15];
    }
    return got;
}

void forward_request(const ForwardTarget& to, const std::string& self_host, const std::string& fleet_secret,
                     const Request& req, Response& res) {
    auto up = std::make_shared<Upstream>();
    if (auto st = connect(*up, to); !st.ok()) {
        log::warn("forward failed", {{"request_id", req.request_id}, {"to", to.host}, {"error", st.error().message}});
        return send_error(res, st.error());
    }

    bhttp::request<bhttp::string_body> out;
    out.version(11);
    out.method_string(req.method);
    out.target(req.target);
    for (const auto& [name, value] : req.headers)
        if (!hop_header(name)) out.insert(name, value);
    out.set(bhttp::field::host, to.url.substr(std::string("http://").size()));
    out.set("X-Kiln-Forwarded-Request-Id", req.request_id);  // the owner's log can name the first host's id
    out.keep_alive(false);
    out.body() = req.body;
    out.prepare_payload();
    sign(out, self_host, fleet_secret, req.caller->token_id);

    beast::error_code ec;
    bhttp::write(up->socket, out, ec);
    // A write error may be the owner answering early (a refusal before reading the body) and
    // closing: its answer is still worth reading.
    bhttp::read_header(up->socket, up->buffer, up->parser, ec);
    if (ec) {
        auto error = unreachable(to, "failed before answering: " + ec.message());
        log::warn("forward failed", {{"request_id", req.request_id}, {"to", to.host}, {"error", error.message}});
        return send_error(res, error);
    }

    auto& head = up->parser.get();
    res.status = static_cast<int>(head.result_int());
    for (const auto& field : head) {
        std::string name(field.name_string());
        if (hop_header(name)) continue;
        if (beast::iequals(name, "Content-Type")) res.content_type = std::string(field.value());
        else res.set_header(name, std::string(field.value()));
    }
    res.set_header("X-Kiln-Host", to.host);

    const bool chunked = head.chunked();
    const auto length = up->parser.content_length();
    if (up->parser.is_done() || (!chunked && length && *length <= kWholeAnswerBytes)) {
        bool done = up->parser.is_done();
        while (!done)
            if (!read_some_body(*up, res.body, done)) {
                auto error = unreachable(to, "failed while answering");
                log::warn("forward failed", {{"request_id", req.request_id}, {"to", to.host}, {"error", error.message}});
                res.headers.clear();
                res.body.clear();
                return send_error(res, error);
            }
        return;
    }
    // Streams: read on the stream's thread as the client takes them (the channel's back-pressure
    // reaches the owner through TCP).
    auto pump = [up](DataSink& sink) {
        std::string piece;
        bool done = false;
        if (!read_some_body(*up, piece, done)) return false;
        if (!piece.empty() && !sink.write(piece.data(), piece.size())) return false;
        if (done) sink.done();
        return true;
    };
    if (!chunked && length) {
        res.set_content_provider(*length, res.content_type, [pump](size_t, size_t, DataSink& sink) { return pump(sink); });
    } else {
        res.set_chunked_content_provider(res.content_type, [pump](size_t, DataSink& sink) { return pump(sink); });
    }
}

}  // namespace kiln::daemon::http
