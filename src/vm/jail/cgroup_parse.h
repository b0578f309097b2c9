// Parsers for the kernel's cgroup text: /proc/self/mountinfo, /proc/self/cgroup, space-separated
// lists (cgroup.controllers, cgroup.procs) and flat keyed files (memory.events, memory.oom_control).
// Pure functions of their text, so the decisions built on them are tested with fixtures.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::vm::jail {

// One cgroup or cgroup2 line of /proc/self/mountinfo.
struct CgroupMount {
    bool v2 = false;                    // fs type cgroup2
    std::string root;                   // the cgroup the mount shows at its top ("/" unless a bind or namespace)
    std::string mount_point;            // "/sys/fs/cgroup/memory"
    std::vector<std::string> options;   // super options: v1 lists its controllers here ("rw,cpu,cpuacct")
    bool has_option(std::string_view option) const;
};

// The cgroup and cgroup2 mounts, in mountinfo order; other lines and malformed ones are skipped.
// Octal escapes (\040 for a space) in paths are decoded.
std::vector<CgroupMount> parse_cgroup_mounts(std::string_view mountinfo);

// One line of /proc/self/cgroup: "4:memory:/a/b" (v1), "0::/a/b" (v2).
struct ProcCgroup {
    std::string hierarchy_id;
    std::vector<std::string> controllers;  // empty for v2; "name=systemd" kept as is
    std::string path;
};
std::vector<ProcCgroup> parse_proc_cgroup(std::string_view text);

// Whitespace-separated words: cgroup.controllers, cgroup.subtree_control.
std::vector<std::string> split_words(std::string_view text);

// The pids of cgroup.procs; a line that is not a positive number is skipped.
std::vector<int> parse_pids(std::string_view text);

// The value of `key` in a flat keyed file ("oom_kill 3" lines), if present and numeric.
std::optional<uint64_t> keyed_value(std::string_view text, std::string_view key);

// Whether cgroup path `path` is `root` or below it, component-wise ("/a" holds "/a/b", not "/ab").
bool cgroup_path_within(std::string_view root, std::string_view path);

// `dir` + the part of cgroup path `path` below the mount's root `root`, e.g. ("/sys/fs/cgroup/memory",
// "/", "/system.slice/x") -> "/sys/fs/cgroup/memory/system.slice/x". The caller checks within first.
std::string cgroup_dir(std::string_view mount_point, std::string_view root, std::string_view path);

// A name kiln gives a cgroup: [A-Za-z0-9_-], 1..128 characters, not "tasks". Such a name cannot
// climb out of its parent nor collide with an interface file (all of those hold a '.', except
// v1's "tasks").
bool valid_cgroup_name(std::string_view name);

}  // namespace kiln::vm::jail
