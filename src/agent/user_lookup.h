// UserLookup: a user name resolved the way login does, from the guest's own /etc/passwd and
// /etc/group (read per call: no NSS in the static agent, and a command may add users).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.h"

namespace kiln::agent {

struct UserAccount {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // the primary group, then every group listing the user as a member
    std::string home;
    std::string shell;
};

struct AccountFiles {
    std::string passwd = "/etc/passwd";
    std::string group = "/etc/group";
};

// NotFound "no such user 'NAME'" when passwd has no such line; IoError when it cannot be read.
// A missing or unreadable group file only leaves the supplementary groups out.
Result<UserAccount> lookup_user(const std::string& name, const AccountFiles& files = {});

}  // namespace kiln::agent
