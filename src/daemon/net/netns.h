// Named network namespaces (/run/netns/<name>, as `ip netns` makes them), and running work inside one.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kiln::daemon::net {

// Creates a fresh namespace bound at /run/netns/<name> (so `ip netns`, `ip -n` and `nft` via
// `ip netns exec` see it), then runs `inside` in it (on the creating thread, before it returns),
// and returns an fd to it. Fails with `conflict` if the name exists.
Result<UniqueFd> create_named_netns(const std::string& name, const std::function<Status()>& inside);
// Opens an existing named namespace.
Result<UniqueFd> open_named_netns(const std::string& name);
// Binds the namespace named `name` under `new_name` too, then removes the old name: a process
// inside or an fd held keeps working throughout. `conflict` if `new_name` exists.
Status rename_named_netns(const std::string& name, const std::string& new_name);
// Unbinds and removes /run/netns/<name>; the namespace itself goes when its last user (a tap fd
// held by QEMU, an open fd) does. Nothing to remove is success.
Status remove_named_netns(const std::string& name);
// The names under /run/netns starting with `prefix`.
std::vector<std::string> list_named_netns(const std::string& prefix);

// Runs `fn` on a short-lived thread that has joined `netns_fd`: setns() changes only the calling
// thread's namespace, so the caller's thread never leaves the host namespace. Anything `fn`
// spawns, and any socket or tap it opens, lives in that namespace.
Status run_in_netns(int netns_fd, const std::function<Status()>& fn);

// Writes `value` to a /proc/sys file (resolved in the calling thread's network namespace).
Status write_sysctl(const std::string& path, const std::string& value);

}  // namespace kiln::daemon::net
