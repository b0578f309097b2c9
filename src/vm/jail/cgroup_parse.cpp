// The kernel's cgroup text formats, parsed without touching the filesystem.
#include "vm/jail/cgroup_parse.h"

#include <algorithm>
#include <charconv>

namespace kiln::vm::jail {
namespace {

std::vector<std::string_view> split(std::string_view text, char separator) {
    std::vector<std::string_view> parts;
    size_t start = 0;
    while (true) {
        size_t at = text.find(separator, start);
        if (at == std::string_view::npos) {
            parts.push_back(text.substr(start));
            return parts;
        }
        parts.push_back(text.substr(start, at - start));
        start = at + 1;
    }
}

// mountinfo escapes space, tab, newline and backslash in paths as \ooo.
std::string unescape_octal(std::string_view text) {
    auto is_octal = [](char c) { return c >= '0' && c <= '7'; };
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\\' && i + 3 < text.size() && is_octal(text[i + 1]) && is_octal(text[i + 2]) &&
            is_octal(text[i + 3])) {
            out.push_back(static_cast<char>((text[i + 1] - '0') * 64 + (text[i + 2] - '0') * 8 + (text[i + 3] - '0')));
            i += 3;
            continue;
        }
        out.push_back(text[i]);
    }
    return out;
}

std::vector<std::string_view> lines_of(std::string_view text) {
    std::vector<std::string_view> lines;
    for (std::string_view line : split(text, '\n')) {
        if (!line.empty()) lines.push_back(line);
    }
    return lines;
}

std::optional<uint64_t> parse_u64(std::string_view text) {
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
    return value;
}

std::vector<std::string_view> split_words_view(std::string_view text);

}  // namespace

bool CgroupMount::has_option(std::string_view option) const {
    return std::find(options.begin(), options.end(), option) != options.end();
}

std::vector<CgroupMount> parse_cgroup_mounts(std::string_view mountinfo) {
    std::vector<CgroupMount> mounts;
    for (std::string_view line : lines_of(mountinfo)) {
        // id parent major:minor root mount-point options [optional fields...] - fstype source super-options
        std::vector<std::string_view> fields = split_words_view(line);
        auto dash = std::find(fields.begin(), fields.end(), std::string_view("-"));
        if (dash == fields.end() || dash - fields.begin() < 6 || fields.end() - dash < 4) continue;
        std::string_view fs_type = *(dash + 1);
        if (fs_type != "cgroup" && fs_type != "cgroup2") continue;
        CgroupMount mount;
        mount.v2 = fs_type == "cgroup2";
        mount.root = unescape_octal(fields[3]);
        mount.mount_point = unescape_octal(fields[4]);
        for (std::string_view option : split(*(dash + 3), ',')) mount.options.emplace_back(option);
        mounts.push_back(std::move(mount));
    }
    return mounts;
}

std::vector<ProcCgroup> parse_proc_cgroup(std::string_view text) {
    std::vector<ProcCgroup> entries;
    for (std::string_view line : lines_of(text)) {
        // The path may itself hold ':' so only the first two separate fields.
        size_t first = line.find(':');
        if (first == std::string_view::npos) continue;
        size_t second = line.find(':', first + 1);
        if (second == std::string_view::npos) continue;
        ProcCgroup entry;
        entry.hierarchy_id = std::string(line.substr(0, first));
        std::string_view controllers = line.substr(first + 1, second - first - 1);
        if (!controllers.empty()) {
            for (std::string_view controller : split(controllers, ',')) entry.controllers.emplace_back(controller);
        }
        entry.path = std::string(line.substr(second + 1));
        if (entry.path.empty() || entry.path[0] != '/') continue;
        entries.push_back(std::move(entry));
    }
    return entries;
}

namespace {
std::vector<std::string_view> split_words_view(std::string_view text) {
    std::vector<std::string_view> words;
    size_t i = 0;
    auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    while (i < text.size()) {
        while (i < text.size() && is_space(text[i])) ++i;
        size_t start = i;
        while (i < text.size() && !is_space(text[i])) ++i;
        if (i > start) words.push_back(text.substr(start, i - start));
    }
    return words;
}
}  // namespace

std::vector<std::string> split_words(std::string_view text) {
    std::vector<std::string> words;
    for (std::string_view word : split_words_view(text)) words.emplace_back(word);
    return words;
}

std::vector<int> parse_pids(std::string_view text) {
    std::vector<int> pids;
    for (std::string_view word : split_words_view(text)) {
        std::optional<uint64_t> pid = parse_u64(word);
        if (pid && *pid > 0 && *pid <= 0x7fffffff) pids.push_back(static_cast<int>(*pid));
    }
    return pids;
}

std::optional<uint64_t> keyed_value(std::string_view text, std::string_view key) {
    for (std::string_view line : lines_of(text)) {
        std::vector<std::string_view> words = split_words_view(line);
        if (words.size() == 2 && words[0] == key) return parse_u64(words[1]);
    }
    return std::nullopt;
}

bool cgroup_path_within(std::string_view root, std::string_view path) {
    if (root == "/") return !path.empty() && path[0] == '/';
    if (path.substr(0, root.size()) != root) return false;
    return path.size() == root.size() || path[root.size()] == '/';
}

std::string cgroup_dir(std::string_view mount_point, std::string_view root, std::string_view path) {
    std::string_view below = root == "/" ? path : path.substr(root.size());
    std::string dir(mount_point);
    if (below != "/" && !below.empty()) dir += below;
    return dir;
}

bool valid_cgroup_name(std::string_view name) {
    if (name.empty() || name.size() > 128 || name == "tasks") return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
}

}  // namespace kiln::vm::jail
