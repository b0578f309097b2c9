// cgroupfs chores shared by the detection, the per-VM cgroup and the sweep: reading and writing
// interface files the way the kernel expects, and emptying then removing a cgroup.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace kiln::vm::jail {

// Reads an interface file whole (cgroupfs reports size 0, so this reads to EOF; at most 64 KiB).
Result<std::string> read_cgroup_file(const std::string& path);

// Writes `value` in one write(2): the kernel parses each write on its own, so a short or split
// write would be a different command. The error names the file and the value.
Status write_cgroup_file(const std::string& path, std::string_view value);

bool cgroup_file_exists(const std::string& path);

// Makes the cgroup folder `dir`; one that exists already is fine when `exist_ok`.
Status make_cgroup_dir(const std::string& dir, bool exist_ok);

// The names of the cgroups directly below `dir` (its subfolders); none when `dir` is missing.
Result<std::vector<std::string>> list_child_cgroups(const std::string& dir);

// SIGKILLs every process in cgroup `dir` and in the cgroups below it (v2: through cgroup.kill when
// the kernel has it), again until none is left, then removes them deepest first. A missing `dir`
// is fine. Fails with `timeout` when the cgroup is still busy after `budget`.
Status kill_and_remove_cgroup(const std::string& dir, std::chrono::milliseconds budget);

// How long remove() and the sweep wait for a cgroup's processes to die: a SIGKILLed QEMU with a few
// GiB of guest RAM takes a few hundred ms to tear its memory down.
inline constexpr std::chrono::milliseconds kCgroupEmptyBudget{5000};

}  // namespace kiln::vm::jail
