// The start-up sweep of what interrupted CI work leaves on disk: a kill -9 while a job's checkout
// is made leaves the checkout (staged in ci/git/<area>/work/<job>; jobs/<id>/checkout before the
// areas) and jobs/<id>/code.tar (up to 4 GiB each) that no attempt removes, and a
// git process killed in a mirror under ci/git leaves lock files that make every later fetch of
// that repository fail. Run by LocalJobService::start before any worker, when nothing is in use.
#pragma once

#include <cstdint>
#include <string>

namespace kiln::ci {

struct SweepReport {
    int checkouts = 0;   // jobs/<id>/checkout trees, checkouts staged in ci/git's areas (work/<job>)
    int tars = 0;        // jobs/<id>/code.tar
    int partials = 0;    // jobs/<id>/**.partial (files written whole, then renamed)
    int git_leftovers = 0;  // lock files, temporary packs, quarantines, mirrors half pruned
    uint64_t bytes = 0;  // allocated bytes freed
    int total() const { return checkouts + tars + partials + git_leftovers; }
};

// jobs_dir: $DATA/jobs; git_dir: $DATA/ci/git. Failures to remove are logged and skipped.
SweepReport sweep_interrupted_work(const std::string& jobs_dir, const std::string& git_dir);

}  // namespace kiln::ci
