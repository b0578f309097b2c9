// What the agent does first as PID 1: the mounts, hostname, environment and signal dispositions of an init.
#pragma once

#include <cstddef>
#include <string>

namespace kiln::agent {

inline constexpr const char* kCgroupMount = "/sys/fs/cgroup";
inline constexpr const char* kExecCgroupRoot = "/sys/fs/cgroup/kiln";

// Sets up the guest: stdio, /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /tmp, /run, cgroup2,
// /dev/fd links, hostname "kiln", PATH/HOME, umask, and signals. Failures are logged and skipped:
// PID 1 must keep going. Returns the cgroup folder for execs, or "" without cgroup2.
std::string setup_pid1();

// The rest of the setup only execs need; under emulation both are slow, so they stay off the
// path to the agent's first answer (main() runs them through ServerConfig::before_first_exec):
//
// Switches cgroup2 to favordynmods (Linux 6.0+): afterwards joining a cgroup, which every exec
// does, never waits for an RCU grace period (up to ~10 ms). Switching waits for one grace period
// itself, mostly idle time, so main() runs this on a thread from the start.
void enable_cgroup_favordynmods();
// Brings up lo: ~10-15 ms of kernel CPU that cannot be preempted, so it is not overlapped with
// serving but done right before the first exec.
void bring_up_loopback();
// Puts the calling thread (the server's) under SCHED_BATCH, whose wakeups do not preempt the
// running task. An exiting command closes its stdout, then its stderr, then signals its exit:
// under SCHED_OTHER each of those woke the agent in the middle of the command's exit, three
// context switches each way, and under TCG every switch flushes the emulated TLB. With BATCH the
// agent runs once the command is gone and sees all three at once: `true`'s round trip measured
// 6.0 -> 4.7 ms p50 (A/B, alternating VMs). The cost is that while a command keeps the CPU busy,
// the agent answers the host at the scheduler's next tick rather than at once. Exec children go
// back to SCHED_OTHER before they exec (ExecPlan::reset_scheduler).
void schedule_agent_as_batch();
// Reads `path` (up to `max_bytes`) so that its pages are in the page cache: before a snapshot, the
// shell every `shell` exec starts, so that no clone reads it from its disk (under emulation the
// block I/O path and the page faults of a cold binary cost a clone's first exec ~40 ms).
void preload_file(const char* path, size_t max_bytes);
// Looks up every entry of the directories in `search_path` (colon-separated, as PATH) and what its
// symlinks point to, so that their dentries and inodes are cached: before a snapshot, so that a
// clone's first command finds its binary (and the misses in the directories before it) without
// reading directory blocks and inodes from its disk. Measured under TCG, first `exec true` after a
// restore: 171.9 -> 137.2 ms p50, 17,500 -> 15,300 translated blocks (A/B of two snapshots).
void cache_path_lookups(const char* search_path);

}  // namespace kiln::agent
