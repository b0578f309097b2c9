#include "kilnd/e2b/connect_route.h"

#include "kilnd/e2b/envd_errors.h"
#include "kilnd/e2b/envd_user.h"

namespace kiln::daemon::e2b {

namespace {

std::string escape_dots(const std::string& procedure) {
    std::string pattern;
    for (char c : procedure) {
        if (c == '.') pattern += '\\';
        pattern += c;
    }
    return pattern;
}

// Connect lets a client compress a request; the SDK does not, and neither does this server.
std::optional<ConnectError> refuse_compression(const http::Request& req) {
    for (const char* header : {"Content-Encoding", "Connect-Content-Encoding"}) {
        std::string value = req.get_header_value(header);
        if (!value.empty() && value != "identity")
            return ConnectError{ConnectCode::Unimplemented,
                                std::string(header) + " '" + value.substr(0, 50) + "' is not supported (identity only)"};
    }
    return std::nullopt;
}

void send_unary_error(http::Response& res, const ConnectError& error) {
    res.status = connect_http_status(error.code);
    res.set_content(connect_error_json(error).dump(-1, ' ', false, json::error_handler_t::replace), kConnectUnaryType);
}

// A streaming call that fails before its stream starts: still 200, with the error in the
// end-of-stream envelope, as the protocol has it.
void send_stream_error(http::Response& res, const ConnectError& error) {
    res.status = 200;
    res.set_content(encode_end_stream(error), kConnectStreamType);
}

}  // namespace

Result<EnvdCall> open_envd_call(EnvdContext& ctx, const http::Request& req) {
    EnvdCall call;
    call.request_id = req.request_id;
    call.target = TRY(ctx.resolve(req));
    call.user = TRY(user_from_authorization(req.get_header_value("Authorization")));
    call.lease = TRY(ctx.service.lease(call.target.caller, call.target.sandbox_id));
    return call;
}

UnaryReply reply_error(const Error& error, const EnvdCall& call) {
    UnaryReply reply;
    reply.error = to_connect_error(error, call.request_id);
    return reply;
}

UnaryReply reply_error(ConnectCode code, std::string message) {
    UnaryReply reply;
    reply.error = ConnectError{code, std::move(message)};
    return reply;
}

bool ConnectStream::send(const json& message) {
    std::string bytes = encode_stream_message(message);
    std::lock_guard lock(m_mutex);
    if (m_gone) return false;
    if (!m_sink.write(bytes.data(), bytes.size())) m_gone = true;
    return !m_gone;
}

bool ConnectStream::client_gone() {
    std::lock_guard lock(m_mutex);
    if (!m_gone && m_sink.is_writable && !m_sink.is_writable()) m_gone = true;
    return m_gone;
}

void add_unary_call(http::Router& router, EnvdContext& ctx, const std::string& procedure, UnaryHandler handler) {
    router.Post(escape_dots(procedure), [&ctx, handler = std::move(handler)](const http::Request& req, http::Response& res) {
        if (auto refused = refuse_compression(req)) return send_unary_error(res, *refused);
        auto parsed = parse_unary_request(req.get_header_value("Content-Type"), req.body);
        if (!parsed.ok()) return send_unary_error(res, *parsed.error);
        auto call = open_envd_call(ctx, req);
        if (!call.ok()) return send_unary_error(res, to_connect_error(call.error(), req.request_id));
        call->message = std::move(*parsed.message);
        UnaryReply reply = handler(*call);
        if (reply.error) return send_unary_error(res, *reply.error);
        res.status = 200;
        res.set_content(reply.message.dump(-1, ' ', false, json::error_handler_t::replace), kConnectUnaryType);
    }, kConnectRouteMaxBody);
}

void add_stream_call(http::Router& router, EnvdContext& ctx, const std::string& procedure, StreamHandler handler) {
    router.Post(escape_dots(procedure), [&ctx, handler](const http::Request& req, http::Response& res) {
        if (auto refused = refuse_compression(req)) return send_stream_error(res, *refused);
        auto parsed = parse_stream_request(req.get_header_value("Content-Type"), req.body);
        if (!parsed.ok()) return send_stream_error(res, *parsed.error);
        auto call = open_envd_call(ctx, req);
        if (!call.ok()) return send_stream_error(res, to_connect_error(call.error(), req.request_id));
        call->message = std::move(*parsed.message);
        auto shared = std::make_shared<EnvdCall>(std::move(*call));
        res.status = 200;
        res.set_chunked_content_provider(kConnectStreamType, [handler, shared](size_t, http::DataSink& sink) {
            ConnectStream stream(sink);
            std::optional<ConnectError> end = handler(*shared, stream);
            std::string bytes = encode_end_stream(end);
            if (sink.write(bytes.data(), bytes.size())) sink.done();
            return true;
        });
    }, kConnectRouteMaxBody);
}

ClientWatch::ClientWatch(ConnectStream& stream, json keepalive, std::function<void()> leave)
    : m_thread([this, &stream, keepalive = std::move(keepalive), leave = std::move(leave)] {
          std::unique_lock lock(m_mutex);
          for (int tick = 1; !m_cv.wait_for(lock, std::chrono::seconds(1), [this] { return m_finished; }); ++tick) {
              if (stream.client_gone()) leave();
              else if (tick % kKeepAliveEverySeconds == 0 && !stream.send(keepalive)) leave();
          }
      }) {}

ClientWatch::~ClientWatch() {
    {
        std::lock_guard lock(m_mutex);
        m_finished = true;
    }
    m_cv.notify_all();
    m_thread.join();
}

}  // namespace kiln::daemon::e2b
