// kilnd's data directory (see data_dir.h).
#include "daemon/data_dir.h"

#include <climits>
#include <cstdlib>

#include "base/errno_error.h"
#include "base/file_util.h"

namespace kiln::daemon {

Result<std::string> prepare_data_dir(const std::string& dir) {
    TRY(make_dirs(dir, 0700));
    char real[PATH_MAX];
    if (!::realpath(dir.c_str(), real)) return errno_error("realpath " + dir);
    std::string path = real;
    // QEMU option values escape commas; the reconcile matches paths in QEMU's command line as
    // written, so a data dir with one could hide a QEMU from it.
    if (path.find(',') != std::string::npos) return make_error(ErrorCode::InvalidArgument, "data_dir must not contain a comma: " + path);
    for (const char* sub : {"vms", "templates", "snapshots", "paused"}) TRY(make_dirs(path + "/" + sub, 0700));
    ::setenv("KILN_DATA_DIR", path.c_str(), 1);
    return path;
}

}  // namespace kiln::daemon
