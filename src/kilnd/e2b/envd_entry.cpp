#include "kilnd/e2b/envd_entry.h"

#include "base/json_log.h"

namespace kiln::daemon::e2b {

std::string base_name(const std::string& path) {
    if (path == "/") return path;
    size_t slash = path.find_last_of('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string permissions_text(const std::string& type, uint32_t mode) {
    std::string text;
    text += type == "dir" ? 'd' : type == "symlink" ? 'L' : '-';
    const char* letters = "rwxrwxrwx";
    for (int bit = 8; bit >= 0; --bit) text += (mode >> bit) & 1 ? letters[8 - bit] : '-';
    return text;
}

json entry_info_json(const proto::FileInfo& info, const std::string& path) {
    const char* type = info.type == "dir" ? "FILE_TYPE_DIRECTORY"
                       : info.type == "symlink" ? "FILE_TYPE_SYMLINK"
                       : info.type == "file" ? "FILE_TYPE_FILE"
                                             : "FILE_TYPE_UNSPECIFIED";
    // The agent names owner and group from the guest's /etc/passwd and /etc/group (the number
    // as text when it has no name).
    json entry{{"name", base_name(path)},
                {"type", type},
                {"path", path},
                {"size", std::to_string(info.size)},  // int64: a string in proto3 JSON
                {"mode", info.mode & 07777},
                {"permissions", permissions_text(info.type, info.mode)},
                {"owner", info.owner.empty() ? std::to_string(info.uid) : info.owner},
                {"group", info.group.empty() ? std::to_string(info.gid) : info.group},
                {"modifiedTime", log::rfc3339_ms(info.mtime_unix_ns / 1000000)}};
    if (!info.symlink_target.empty()) entry["symlinkTarget"] = info.symlink_target;
    return entry;
}

std::string join_path(const std::string& dir, const std::string& name) {
    return !dir.empty() && dir.back() == '/' ? dir + name : dir + "/" + name;
}

json upload_entry_json(const std::string& path, bool is_dir) {
    return json{{"name", base_name(path)}, {"type", is_dir ? "directory" : "file"}, {"path", path}};
}

}  // namespace kiln::daemon::e2b
