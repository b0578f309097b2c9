// UserLookup: a user name resolved the way login does, from the guest's own /etc/passwd and
// /etc/group (read per call: no NSS in the static agent, and a command may add users).
#pragma once

#include <sys/types.h>

#include <map>
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

// The names of uids and gids, for FileInfo's owner and group: read once, asked per file.
class AccountNames {
public:
    // Missing or unreadable files leave every id unnamed.
    static AccountNames load(const AccountFiles& files = {});
    // The first passwd (group) line's name for the id, as getpwuid (getgrgid) gives; else the number as text.
    std::string user_name(uid_t uid) const;
    std::string group_name(gid_t gid) const;

private:
    std::map<uid_t, std::string> m_users;
    std::map<gid_t, std::string> m_groups;
};

}  // namespace kiln::agent
