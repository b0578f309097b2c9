// Request and Response helpers; see http_message.h.
#include "kilnd/http/http_message.h"

#include <strings.h>

#include <charconv>

namespace kiln::daemon::http {

bool CaseInsensitiveLess::operator()(const std::string& a, const std::string& b) const {
    return ::strcasecmp(a.c_str(), b.c_str()) < 0;
}

std::string Request::get_header_value(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
}

std::string Request::get_param_value(const std::string& name) const {
    auto it = params.find(name);
    return it == params.end() ? std::string() : it->second;
}

void Response::set_chunked_content_provider(const std::string& type, ChunkedProvider provider) {
    content_type = type;
    stream = Stream::Chunked;
    chunked_provider = std::move(provider);
}

void Response::set_content_provider(size_t length, const std::string& type, SizedProvider provider) {
    content_type = type;
    stream = Stream::Sized;
    sized_length = length;
    sized_provider = std::move(provider);
}

void Response::set_tail_content_provider(const std::string& type, TailProvider provider) {
    content_type = type;
    stream = Stream::Tail;
    tail_provider = std::move(provider);
}

std::string percent_decode(std::string_view text, bool plus_is_space) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '%' && i + 2 < text.size()) {
            unsigned value = 0;
            const char* first = text.data() + i + 1;
            auto [end, ec] = std::from_chars(first, first + 2, value, 16);
            if (ec == std::errc() && end == first + 2) {
                out += static_cast<char>(value);
                i += 2;
                continue;
            }
        }
        out += plus_is_space && c == '+' ? ' ' : c;
    }
    return out;
}

Params parse_query(std::string_view query) {
    Params params;
    while (!query.empty()) {
        size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        if (pair.empty()) continue;
        size_t eq = pair.find('=');
        std::string key = percent_decode(pair.substr(0, eq), true);
        std::string value = eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1), true);
        params.emplace(std::move(key), std::move(value));
    }
    return params;
}

}  // namespace kiln::daemon::http
