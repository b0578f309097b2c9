// JobLog: append-only NDJSON with a size cap and secret masking (see job_log.h).
#include "ci/jobs/job_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include "base/errno_error.h"
#include "ci/jobs/secret_mask.h"

namespace kiln::ci {

Result<std::unique_ptr<JobLog>> JobLog::open(const std::string& path, uint64_t max_bytes) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return make_error(ErrorCode::IoError, "opening " + path + ": " + std::strerror(errno));
    struct stat st {};
    ::fstat(fd, &st);
    return std::unique_ptr<JobLog>(new JobLog(UniqueFd(fd), static_cast<uint64_t>(st.st_size), max_bytes));
}

void JobLog::set_masked(std::vector<std::string> values) {
    std::lock_guard lock(m_mutex);
    m_masked.clear();
    for (auto& v : values)
        if (v.size() >= kMinMaskedBytes) m_masked.push_back(std::move(v));
}

JobLog::~JobLog() {
    std::lock_guard lock(m_mutex);
    write_held_output();
}

namespace {

nlohmann::json output_event(int shard, std::string_view step, std::string_view stream, const std::string& data) {
    nlohmann::json e{{"type", "output"}, {"step", step}, {"stream", stream}, {"data", data}};
    if (shard >= 0) e["shard"] = shard;
    return e;
}

}  // namespace

void JobLog::output(std::string_view step, std::string_view stream, std::string_view data, int shard) {
    std::lock_guard lock(m_mutex);
    std::string& held = m_held[{shard, std::string(step), std::string(stream)}];
    std::string now = mask_chunk(held, data, m_masked);
    if (!now.empty()) write_line(output_event(shard, step, stream, now), true);
}

void JobLog::event(nlohmann::json e) {
    std::lock_guard lock(m_mutex);
    write_held_output();  // a step's output comes before its step_finished
    write_line(e, false);
}

void JobLog::write_held_output() {
    for (auto& [key, held] : m_held) {
        if (held.empty()) continue;
        const auto& [shard, step, stream] = key;
        write_line(output_event(shard, step, stream, held), true);
        held.clear();
    }
}

void JobLog::write_line(const nlohmann::json& e_in, bool is_output) {
    nlohmann::json e = e_in;  // output's "data" comes masked (mask_chunk)
    e["ts"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch()).count();
    if (e.contains("message") && e["message"].is_string())
        e["message"] = mask_secrets(e["message"].get<std::string>(), m_masked);
    std::string line = e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (is_output && m_size + line.size() > m_max) {
        if (m_truncated) return;
        m_truncated = true;
        line = nlohmann::json{{"type", "truncated"}, {"ts", e["ts"]},
                              {"message", "the job's log reached " + std::to_string(m_max) +
                                              " bytes; further output is dropped (the job keeps running)"}}
                   .dump() + "\n";
    }
    ssize_t n = ::write(m_fd.get(), line.data(), line.size());
    if (n > 0) m_size += static_cast<uint64_t>(n);
}

}  // namespace kiln::ci
