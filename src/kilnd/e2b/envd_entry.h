// A guest file's EntryInfo as envd's protocols show it: filesystem.proto's EntryInfo in proto3
// JSON for the Connect calls, and envd.yaml's smaller EntryInfo for /files uploads.
#pragma once

#include <string>

#include "kilnd/e2b/connect_codec.h"
#include "proto/messages.h"

namespace kiln::daemon::e2b {

// "/home/user/a.txt" -> "a.txt"; "/" -> "/".
std::string base_name(const std::string& path);
// Go's os.FileMode.String() form, which envd reports: "-rw-r--r--", "drwxr-xr-x", "Lrwxrwxrwx".
std::string permissions_text(const std::string& type, uint32_t mode);
// "dir" + "name", with one slash between.
std::string join_path(const std::string& dir, const std::string& name);
// filesystem.EntryInfo of the file at `path`.
json entry_info_json(const proto::FileInfo& info, const std::string& path);
// envd.yaml's EntryInfo: {name, type: "file" | "directory", path}.
json upload_entry_json(const std::string& path, bool is_dir);

}  // namespace kiln::daemon::e2b
