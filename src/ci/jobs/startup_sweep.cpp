// The start-up sweep of interrupted CI work (see startup_sweep.h).
#include "ci/jobs/startup_sweep.h"

#include <sys/stat.h>

#include <filesystem>
#include <system_error>

#include "base/file_util.h"
#include "base/json_log.h"
#include "ci/jobs/job_retention.h"

namespace kiln::ci {
namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& tail) { return s.size() >= tail.size() && s.ends_with(tail); }

// Removes `path` (a file or a tree), counting what it freed; false if it could not.
bool sweep(const fs::path& path, SweepReport& report) {
    uint64_t bytes = allocated_bytes(path.string());
    if (auto st = remove_tree(path.string()); !st.ok()) {
        log::warn("ci: start-up sweep could not remove a leftover", {{"path", path.string()}, {"error", st.error().message}});
        return false;
    }
    report.bytes += bytes;
    return true;
}

void sweep_job_dir(const fs::path& dir, SweepReport& report) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string name = e.path().filename().string();
        if (name == "checkout") {
            if (sweep(e.path(), report)) ++report.checkouts;
        } else if (name == "code.tar" || name == "needs.tar") {
            if (sweep(e.path(), report)) ++report.tars;
        } else if (ends_with(name, ".partial")) {
            if (sweep(e.path(), report)) ++report.partials;
        }
    }
}

// A mirror's leftovers from a git killed mid-way: *.lock at its top and under refs/ (a fetch
// that finds one refuses to update the ref), packs still being written, and push/fetch
// quarantine dirs. The objects already in place stay: they are whole.
void sweep_mirror(const fs::path& mirror, SweepReport& report) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(mirror, ec))
        if (ends_with(e.path().filename().string(), ".lock") && sweep(e.path(), report)) ++report.git_leftovers;
    for (auto it = fs::recursive_directory_iterator(mirror / "refs", ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
        if (it->is_regular_file(ec) && ends_with(it->path().filename().string(), ".lock") && sweep(it->path(), report))
            ++report.git_leftovers;
    }
    ec.clear();
    for (const auto& e : fs::directory_iterator(mirror / "objects" / "pack", ec))
        if (e.path().filename().string().rfind("tmp_", 0) == 0 && sweep(e.path(), report)) ++report.git_leftovers;
    ec.clear();
    for (const auto& e : fs::directory_iterator(mirror / "objects", ec))
        if (e.path().filename().string().rfind("incoming-", 0) == 0 && sweep(e.path(), report)) ++report.git_leftovers;
}

}  // namespace

SweepReport sweep_interrupted_work(const std::string& jobs_dir, const std::string& git_dir) {
    SweepReport report;
    std::error_code ec;
    // Every job's dir, finished or not: at start-up no attempt runs, so a checkout or tar anywhere
    // is a leftover (a finished attempt removed its own).
    for (const auto& e : fs::directory_iterator(jobs_dir, ec))
        if (e.is_directory(ec) && !e.is_symlink(ec)) sweep_job_dir(e.path(), report);
    // The checkouts being staged in the git areas (git_source.h): every one is a leftover now.
    for (const auto& staging : checkout_staging_folders(git_dir)) {
        ec.clear();
        for (const auto& e : fs::directory_iterator(staging, ec))
            if (sweep(e.path(), report)) ++report.checkouts;
    }
    for (const auto& folder : mirror_folders(git_dir)) {
        ec.clear();
        for (const auto& e : fs::directory_iterator(folder, ec)) {
            const std::string name = e.path().filename().string();
            if (ends_with(name, kPruningSuffix)) {  // the pruner renamed it, then kilnd stopped
                if (sweep(e.path(), report)) ++report.git_leftovers;
            } else if (ends_with(name, ".git") && e.is_directory(ec) && !e.is_symlink(ec)) {
                sweep_mirror(e.path(), report);
            }
        }
    }
    if (report.total() > 0)
        log::info("ci: start-up sweep removed what interrupted jobs left",
                  {{"checkouts", report.checkouts}, {"tars", report.tars}, {"partials", report.partials},
                   {"git_leftovers", report.git_leftovers}, {"bytes", report.bytes}});
    return report;
}

}  // namespace kiln::ci
