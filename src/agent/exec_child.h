// ExecPlan: everything an exec child needs, prepared beforehand, and its vfork-style spawn.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "proto/messages.h"

namespace kiln::agent {

// The PATH (and HOME, TERM) every exec starts from; the request's env overrides them.
inline constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The directories of a PATH value in search order, as execvp reads it: an empty entry (leading,
// trailing or doubled colon) is the current directory and comes back as "".
std::vector<std::string> split_search_path(const std::string& path);

// The signals whose disposition is not SIG_DFL in this process right now (ignored or caught): an
// exec child resets exactly these. Taken once by the server, not per exec (one syscall per signal).
sigset_t signals_not_at_default();

// The agent's own credentials, read once: an exec child changes only what differs from them.
struct Credentials {
    uid_t ruid = 0, euid = 0, suid = 0;
    gid_t rgid = 0, egid = 0, sgid = 0;
    bool supplementary_groups = false;

    static Credentials of_this_process();
};

struct Spawned {
    pid_t pid = -1;
    UniqueFd pidfd;  // invalid when the kernel has neither CLONE_PIDFD nor pidfd_open
};

class ExecPlan {
public:
    // Builds argv (argv, or /bin/sh -c shell), the environment, the execvp search list, and which
    // credentials to change from the agent's. `groups`: the supplementary groups of the request's
    // user (ExecRequest::user); empty: none.
    ExecPlan(const proto::ExecRequest& request, const Credentials& agent, std::vector<gid_t> groups = {});
    ExecPlan(const ExecPlan&) = delete;  // the char* arrays point into this object's strings
    ExecPlan& operator=(const ExecPlan&) = delete;

    // The child's standard streams and, when >= 0, an open cgroup.procs to join before exec.
    int stdin_fd = -1;
    int stdout_fd = -1;
    int stderr_fd = -1;
    int cgroup_procs_fd = -1;
    // Signals the child sets back to SIG_DFL (see signals_not_at_default()).
    sigset_t reset_signals{};
    // The child returns to SCHED_OTHER (the agent's own thread runs SCHED_BATCH in a guest).
    bool reset_scheduler = false;

    // Starts the child with vfork semantics (clone with CLONE_VM | CLONE_VFORK): no page tables are
    // copied, and this thread is suspended until the child has exec'd or exited. Blocks every
    // signal in this thread meanwhile, so no handler of ours ever runs on the child's stack.
    // Fails only when clone() does; a failed exec is the child's exit status 127 and a message
    // on its stderr.
    Result<Spawned> spawn();

    const std::string& program() const { return m_argv_storage.front(); }

private:
    void skip_missing_candidates(const Credentials& agent);
    void finalise();

    std::vector<std::string> m_argv_storage;
    std::vector<std::string> m_env_storage;
    std::vector<std::string> m_candidates;  // the files execve tries, in execvp's order
    std::vector<const char*> m_candidate_ptrs;
    std::vector<char*> m_argv;
    std::vector<char*> m_envp;
    std::vector<char*> m_sh_argv;  // {"/bin/sh", <candidate>, argv[1..]} for scripts without #! (ENOEXEC)
    std::string m_cwd;
    uid_t m_uid = 0;
    gid_t m_gid = 0;
    std::vector<gid_t> m_groups;  // set by setgroups in the child when m_set_groups
    bool m_set_groups = false;  // a root agent with supplementary groups, or a user's groups to take
    bool m_set_gid = true;
    bool m_set_uid = true;
};

}  // namespace kiln::agent
