// libFuzzer target: what an E2B client sends kilnd's envd (src/kilnd/e2b): Connect envelopes and
// JSON request bodies, every envd request message parsed from them, the Basic-auth user and
// multipart uploads. Every input is accepted or refused with a Connect error, never a crash, and
// what is accepted is within the limits the parsers promise.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "kilnd/e2b/connect_codec.h"
#include "kilnd/e2b/envd_messages.h"
#include "kilnd/e2b/envd_multipart.h"
#include "kilnd/e2b/envd_user.h"

using namespace kiln::daemon::e2b;
using kiln::fuzz::check;

namespace {

template <typename T>
void check_parsed(const Parsed<T>& p) {
    check(p.ok() != p.error.has_value());
    if (p.error) check(!p.error->message.empty());
}

bool path_ok(const std::string& p) { return !p.empty() && p[0] == '/' && p.find('\0') == std::string::npos; }

void check_messages(const json& message) {
    check(message.is_object());
    // An accepted message encodes back to an envelope that parses to the same message.
    auto again = parse_stream_request(kConnectStreamType, encode_stream_message(message), SIZE_MAX);
    check(again.ok() && *again.message == message);

    auto start = parse_start_request(message);
    check_parsed(start);
    if (start.ok()) {
        const auto& p = start.value->process;
        check(!p.cmd.empty() && p.cmd.find('\0') == std::string::npos);
        check(p.args.size() <= kMaxProcessArgs && p.envs.size() <= kMaxProcessEnvs);
        for (const auto& [k, v] : p.envs) check(!k.empty() && k.find('=') == std::string::npos);
    }
    auto selector = parse_selector(message);
    check_parsed(selector);
    if (selector.ok()) check(selector.value->pid.has_value() != selector.value->tag.has_value());
    check_parsed(parse_send_input(message));
    auto signal = parse_signal(message);
    check_parsed(signal);
    if (signal.ok()) check(*signal.value == 9 || *signal.value == 15);
    for (const char* field : {"path", "source", "destination"}) {
        auto path = parse_path_field(message, field, "/home/user");
        check_parsed(path);
        if (path.ok()) check(path_ok(*path.value));
    }
    auto depth = parse_depth(message);
    check_parsed(depth);
    if (depth.ok()) check(*depth.value >= 1 && *depth.value <= kMaxListDepth);
    check_parsed(parse_bool_field(message, "recursive"));
    check_parsed(parse_string_field(message, "watcherId"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size > 64 * 1024) return 0;
    std::string input = kiln::fuzz::as_string(data, size);

    for (auto parsed : {parse_stream_request(kConnectStreamType, input), parse_unary_request(kConnectUnaryType, input)}) {
        check(parsed.ok() != parsed.error.has_value());
        if (parsed.error) {
            check(!parsed.error->message.empty());
            // The refusal itself encodes as an end-of-stream envelope that parses.
            std::string end = encode_end_stream(parsed.error);
            check(json::accept(end.substr(kEnvelopeHeaderSize)));
        } else {
            check_messages(*parsed.message);
        }
    }

    auto user = user_from_authorization(input);
    if (user.ok()) check(plausible_user_name(*user));

    // "<content type>\n<body>": a multipart upload.
    auto [content_type, body] = kiln::fuzz::split_once(input, "\n");
    if (auto boundary = multipart_boundary(content_type); boundary.ok()) {
        auto parts = parse_multipart(body, *boundary);
        if (parts.ok()) {
            check(parts->size() <= kMaxMultipartParts);
            for (const auto& p : *parts)
                check(p.data.data() >= body.data() && p.data.data() + p.data.size() <= body.data() + body.size());
        }
    }
    return 0;
}
