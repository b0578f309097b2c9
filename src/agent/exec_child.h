// ExecPlan: everything a forked exec child needs, prepared before fork() so that the child only makes syscalls.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "proto/messages.h"

namespace kiln::agent {

// The PATH (and HOME, TERM) every exec starts from; the request's env overrides them.
inline constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

class ExecPlan {
public:
    // Builds argv (argv, or /bin/sh -c shell), the environment, and the execvp search list.
    explicit ExecPlan(const proto::ExecRequest& request);
    ExecPlan(const ExecPlan&) = delete;  // the char* arrays point into this object's strings
    ExecPlan& operator=(const ExecPlan&) = delete;

    // The child's standard streams and, when >= 0, an open cgroup.procs to join before exec.
    int stdin_fd = -1;
    int stdout_fd = -1;
    int stderr_fd = -1;
    int cgroup_procs_fd = -1;

    // Runs in the child after fork(): new session, cgroup, stdio, credentials, cwd, signals, exec.
    // Never returns; on failure writes "kiln-agent: ..." to the child's stderr and exits 127.
    [[noreturn]] void run_in_child();

    const std::string& program() const { return m_argv_storage.front(); }

private:
    void finalise();

    std::vector<std::string> m_argv_storage;
    std::vector<std::string> m_env_storage;
    std::vector<std::string> m_candidates;  // the files execve tries, in execvp's order
    std::vector<char*> m_argv;
    std::vector<char*> m_envp;
    std::vector<char*> m_sh_argv;  // {"/bin/sh", <candidate>, argv[1..]} for scripts without #! (ENOEXEC)
    std::string m_cwd;
    uid_t m_uid = 0;
    gid_t m_gid = 0;
    bool m_drop_groups = false;
};

}  // namespace kiln::agent
