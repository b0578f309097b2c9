// JobLog: a job's log as NDJSON events appended to $DATA/jobs/<id>/log.ndjson, which
// GET /v1/jobs/{id}/logs tails. Output is capped (a job printing 1 GB does not fill the host's
// disk) and the values of the job's secrets are masked before anything is written.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"
#include "base/unique_fd.h"

namespace kiln::ci {

class JobLog {
public:
    static constexpr uint64_t kDefaultMaxBytes = 32ull << 20;

    static Result<std::unique_ptr<JobLog>> open(const std::string& path, uint64_t max_bytes = kDefaultMaxBytes);
    ~JobLog();  // writes the output it still held

    // Values replaced by "***" in output and messages (empty and very short ones are ignored).
    void set_masked(std::vector<std::string> values);
    // {"type": "output", "step": ..., "stream": "stdout"|"stderr", "data": ...}, and "shard": i when
    // a shard's VM printed it (shard >= 0; -1: the job's own VM). An end of `data` that may be the
    // start of a secret is held back until the same shard's stream's next output shows (so a secret
    // split between two chunks is masked), or until the next event, which comes after it.
    // Thread-safe: a sharded job's shards write at once.
    void output(std::string_view step, std::string_view stream, std::string_view data, int shard = -1);
    // Any other event; `event` must be an object with "type". A "ts" (unix ms) is added.
    void event(nlohmann::json event);

private:
    JobLog(UniqueFd fd, uint64_t size, uint64_t max_bytes) : m_fd(std::move(fd)), m_size(size), m_max(max_bytes) {}
    // Both with m_mutex held.
    void write_line(const nlohmann::json& event, bool is_output);
    void write_held_output();

    std::mutex m_mutex;
    UniqueFd m_fd;
    uint64_t m_size;
    const uint64_t m_max;
    bool m_truncated = false;
    std::vector<std::string> m_masked;
    // (shard, step, stream): masked, not yet written.
    std::map<std::tuple<int, std::string, std::string>, std::string> m_held;
};

}  // namespace kiln::ci
