// Parsing git's output on the host (see git_output.h).
#include "ci/jobs/git_output.h"

#include <limits>
#include <map>


namespace kiln::ci {

bool is_full_sha(const std::string& t) {
    if (t.size() != 40) return false;
    for (char c : t)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

std::optional<std::string> ref_sha_in_ls_remote(std::string_view output, const std::string& ref) {
    std::map<std::string, std::string, std::less<>> refs;
    size_t pos = 0;
    while (pos < output.size()) {
        size_t nl = output.find('\n', pos);
        std::string_view line = output.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? output.size() : nl + 1;
        auto tab = line.find('\t');
        if (tab == std::string_view::npos) continue;
        refs[std::string(line.substr(tab + 1))] = std::string(line.substr(0, tab));
    }
    for (const std::string& name : {ref, "refs/heads/" + ref, "refs/tags/" + ref + "^{}", "refs/tags/" + ref})
        if (auto it = refs.find(name); it != refs.end() && is_full_sha(it->second)) return it->second;
    return std::nullopt;
}

std::string blob_id_in_ls_tree(std::string_view output, const std::string& path) {
    std::string_view line = output;
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    auto tab = line.find('\t');
    if (tab == std::string_view::npos || line.substr(tab + 1) != path) return std::string();
    std::string_view head = line.substr(0, tab);  // mode type id
    auto sp1 = head.find(' '), sp2 = head.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 == sp1 || head.substr(sp1 + 1, sp2 - sp1 - 1) != "blob") return std::string();
    std::string id(head.substr(sp2 + 1));
    return is_full_sha(id) ? id : std::string();
}

uint64_t total_size_in_ls_tree(std::string_view output) {
    uint64_t total = 0;
    for (size_t pos = 0; pos < output.size();) {
        size_t end = output.find('\0', pos);
        if (end == std::string_view::npos) end = output.size();
        std::string_view entry = output.substr(pos, end - pos);
        pos = end + 1;
        // The size is the last field before the tab (the path may hold spaces and tabs of its own).
        std::string_view head = entry.substr(0, entry.find('\t'));
        auto sp = head.rfind(' ');
        if (sp == std::string_view::npos) continue;
        uint64_t size = 0;
        for (char c : head.substr(sp + 1)) {
            if (c < '0' || c > '9') break;
            uint64_t digit = static_cast<uint64_t>(c - '0');
            if (size > (std::numeric_limits<uint64_t>::max() - digit) / 10) return std::numeric_limits<uint64_t>::max();
            size = size * 10 + digit;
        }
        if (size > std::numeric_limits<uint64_t>::max() - total) return std::numeric_limits<uint64_t>::max();
        total += size;
    }
    return total;
}

}  // namespace kiln::ci
