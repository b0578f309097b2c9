// UserDb: the guest's users and groups, read from /etc/passwd and /etc/group by hand (the agent
// is static, without NSS): names for FileInfo's owner and group, and a `user` field resolved to ids.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>

#include "base/result.h"

namespace kiln::agent {

struct UserEntry {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
    std::string home;
    std::string shell;
};

class UserDb {
public:
    // Reads both files; a missing or unreadable file is an empty table (the names then fall back
    // to numbers). Malformed lines are skipped.
    static UserDb load(const std::string& passwd_path = "/etc/passwd", const std::string& group_path = "/etc/group");
    // The same from the files' text (tests, fuzzing).
    static UserDb parse(const std::string& passwd_text, const std::string& group_text);

    // The user called `name`, or not_found "no such user 'NAME'".
    Result<UserEntry> find_user(const std::string& name) const;
    // The names of a uid and a gid, or the number as text.
    std::string user_name(uid_t uid) const;
    std::string group_name(gid_t gid) const;

private:
    std::map<std::string, UserEntry> m_users;     // by name
    std::map<uid_t, std::string> m_user_names;    // the first name of each uid
    std::map<gid_t, std::string> m_group_names;   // the first name of each gid
};

// Owner and group that new files and folders get (chown), or none (the agent's own, root).
struct FileOwner {
    uid_t uid = 0;
    gid_t gid = 0;
};

}  // namespace kiln::agent
