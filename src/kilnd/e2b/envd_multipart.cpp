#include "kilnd/e2b/envd_multipart.h"

#include <cctype>

namespace kiln::daemon::e2b {

namespace {

Error malformed(const std::string& why) { return make_error(ErrorCode::InvalidArgument, "malformed multipart body: " + why); }

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// The value of `key` among a header's "; key=value" parameters (quoted or not), "" when absent.
// One pass, quote-aware, so a ';' inside a quoted filename does not split it.
std::string header_param(std::string_view header, std::string_view key) {
    size_t i = header.find(';');
    while (i != std::string_view::npos && i < header.size()) {
        ++i;  // past ';'
        size_t eq = header.find('=', i);
        if (eq == std::string_view::npos) return "";
        std::string name = lower(trim(header.substr(i, eq - i)));
        i = eq + 1;
        while (i < header.size() && header[i] == ' ') ++i;
        std::string value;
        if (i < header.size() && header[i] == '"') {
            for (++i; i < header.size() && header[i] != '"'; ++i) {
                if (header[i] == '\\' && i + 1 < header.size()) ++i;
                value += header[i];
            }
            i = header.find(';', i);
        } else {
            size_t end = header.find(';', i);
            value = std::string(trim(header.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i)));
            i = end;
        }
        if (name == key) return value;
    }
    return "";
}

}  // namespace

Result<std::string> multipart_boundary(std::string_view content_type) {
    std::string_view type = trim(content_type.substr(0, content_type.find(';')));
    if (lower(type) != "multipart/form-data") return make_error(ErrorCode::InvalidArgument, "not multipart/form-data");
    std::string boundary = header_param(content_type, "boundary");
    if (boundary.empty() || boundary.size() > 200) return malformed("the Content-Type has no usable boundary");
    return boundary;
}

Result<std::vector<FormPart>> parse_multipart(std::string_view body, const std::string& boundary) {
    const std::string delimiter = "--" + boundary;
    const std::string separator = "\r\n" + delimiter;
    std::vector<FormPart> parts;
    // The preamble ends at the first delimiter (at the start, or after a CRLF).
    size_t pos;
    if (body.substr(0, delimiter.size()) == delimiter) pos = delimiter.size();
    else {
        size_t at = body.find(separator);
        if (at == std::string_view::npos) return malformed("no boundary line");
        pos = at + separator.size();
    }
    for (;;) {
        std::string_view rest = body.substr(pos);
        if (rest.substr(0, 2) == "--") return parts;  // the close delimiter
        if (rest.substr(0, 2) != "\r\n") return malformed("a boundary line is not followed by CRLF");
        pos += 2;
        size_t headers_end = body.find("\r\n\r\n", pos);
        if (headers_end == std::string_view::npos) return malformed("a part's headers do not end");
        FormPart part;
        bool form_data = false;
        std::string_view headers = body.substr(pos, headers_end - pos);
        while (!headers.empty()) {
            size_t eol = headers.find("\r\n");
            std::string_view line = headers.substr(0, eol);
            headers = eol == std::string_view::npos ? std::string_view() : headers.substr(eol + 2);
            size_t colon = line.find(':');
            if (colon == std::string_view::npos) return malformed("a part header without ':'");
            if (lower(trim(line.substr(0, colon))) != "content-disposition") continue;
            std::string_view value = trim(line.substr(colon + 1));
            form_data = lower(trim(value.substr(0, value.find(';')))) == "form-data";
            part.name = header_param(value, "name");
            part.filename = header_param(value, "filename");
        }
        if (!form_data) return malformed("a part without Content-Disposition: form-data");
        size_t data_start = headers_end + 4;
        size_t data_end = body.find(separator, data_start);
        if (data_end == std::string_view::npos) return malformed("a part does not end with the boundary");
        part.data = body.substr(data_start, data_end - data_start);
        if (parts.size() >= kMaxMultipartParts)
            return malformed("more than " + std::to_string(kMaxMultipartParts) + " parts");
        parts.push_back(std::move(part));
        pos = data_end + separator.size();
    }
}

}  // namespace kiln::daemon::e2b
