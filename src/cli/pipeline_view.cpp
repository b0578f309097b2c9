// The job lines of `kiln ci run` and `kiln ci pipeline` (see pipeline_view.h).
#include "cli/pipeline_view.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "cli/output.h"

namespace kiln::cli {

using nlohmann::json;

namespace {

std::string text_of(const json& object, const char* key) {
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t int_of(const json& object, const char* key) {
    auto it = object.find(key);
    return it != object.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

std::string seconds_text(int64_t ms) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms) / 1000.0);
    return buf;
}

// A job not yet named by the planner is the pipeline's first job while .kiln.yml is being read.
std::string display_name(const json& job) {
    std::string name = text_of(job, "name");
    return name.empty() ? "(planning)" : name;
}

bool is_final_state(const std::string& state) {
    return state != "queued" && state != "running" && state != "waiting";
}

// The planned names of the jobs `job` needs (the API gives their ids).
std::string needed_names(const json& job, const json& pipeline) {
    std::string out;
    auto needs = job.find("needs");
    if (needs == job.end() || !needs->is_array()) return out;
    for (const auto& id : *needs) {
        if (!id.is_string()) continue;
        json needed = find_job(pipeline, id.get<std::string>());
        out += (out.empty() ? "" : ", ") + (needed.is_object() ? display_name(needed) : id.get<std::string>());
    }
    return out;
}

// The step running now, or the first that failed or timed out.
std::string step_in(const json& job, bool failed) {
    auto steps = job.find("steps");
    if (steps == job.end() || !steps->is_array()) return "";
    for (const auto& s : *steps) {
        if (!s.is_object()) continue;
        std::string state = text_of(s, "state");
        if (!failed && state == "running") return text_of(s, "name");
        if (failed && (state == "failed" || state == "timed_out")) {
            std::string detail = state == "timed_out" ? "timed out" : "exit " + std::to_string(int_of(s, "exit_code"));
            return text_of(s, "name") + " (" + detail + ")";
        }
    }
    return "";
}

// What the line ends with: the JUnit counts once there are some, else what the job is at.
std::string detail(const json& job, const json& pipeline) {
    std::string state = text_of(job, "state");
    auto junit = job.find("junit");
    if (junit != job.end() && junit->is_object())
        return std::to_string(int_of(*junit, "tests")) + " tests, " + std::to_string(int_of(*junit, "failures")) +
               " failures, " + std::to_string(int_of(*junit, "errors")) + " errors, " +
               std::to_string(int_of(*junit, "skipped")) + " skipped";
    if (state == "waiting") return "needs " + needed_names(job, pipeline);
    if (state == "running") {
        std::string step = step_in(job, false);
        return step.empty() ? "" : "step " + step;
    }
    if (state == "failed") {
        std::string step = step_in(job, true);
        return step.empty() ? text_of(job, "error") : "step " + step;
    }
    std::string error = text_of(job, "error");  // skipped: why; error: what went wrong
    const std::string kSkipped = "skipped: ";    // the state is in the line already
    if (state == "skipped" && error.rfind(kSkipped, 0) == 0) error.erase(0, kSkipped.size());
    return error;
}

// Cut to the terminal's width, so that a line never wraps (the redraw counts lines), and never
// inside a UTF-8 sequence.
std::string fit(std::string line, size_t width) {
    if (width == 0 || line.size() < width) return line;
    size_t cut = width - 1;
    while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
    line.resize(cut);
    return line;
}

size_t terminal_width(int fd) {
    struct winsize ws {};
    return ::ioctl(fd, TIOCGWINSZ, &ws) == 0 ? ws.ws_col : 0;
}

int64_t now_ms() {
    struct timespec ts {};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

const json& jobs_of(const json& pipeline) {
    static const json kNone = json::array();
    auto jobs = pipeline.find("jobs");
    return jobs != pipeline.end() && jobs->is_array() ? *jobs : kNone;
}

}  // namespace

json find_job(const json& pipeline, const std::string& name_or_id) {
    for (const auto& job : jobs_of(pipeline))
        if (job.is_object() && (text_of(job, "id") == name_or_id || text_of(job, "name") == name_or_id)) return job;
    return nullptr;
}

std::string job_counts(const json& pipeline) {
    std::vector<std::pair<std::string, int>> counts;  // in the order first seen
    for (const auto& job : jobs_of(pipeline)) {
        std::string state = job.is_object() ? text_of(job, "state") : "";
        bool found = false;
        for (auto& [name, n] : counts)
            if (name == state) {
                ++n;
                found = true;
            }
        if (!found) counts.emplace_back(state, 1);
    }
    std::string out;
    for (const auto& [name, n] : counts) out += (out.empty() ? "" : ", ") + std::to_string(n) + " " + name;
    return out;
}

std::string job_line(const json& job, const json& pipeline, size_t name_width, int64_t now_unix_ms) {
    std::string name = display_name(job);
    std::string state = text_of(job, "state");
    std::string duration;
    if (is_final_state(state)) {
        if (!text_of(job, "started_at").empty()) duration = seconds_text(int_of(job, "duration_ms"));
    } else if (time_t started = 0; state == "running" && parse_rfc3339(text_of(job, "started_at"), started)) {
        duration = seconds_text(std::max<int64_t>(0, now_unix_ms - static_cast<int64_t>(started) * 1000));
    }
    char head[64];
    std::snprintf(head, sizeof head, "  %-9s  %8s", state.c_str(), duration.c_str());
    std::string line = name + std::string(name_width > name.size() ? name_width - name.size() : 0, ' ') + head;
    std::string more = detail(job, pipeline);
    if (!more.empty()) line += "  " + more;
    line.erase(line.find_last_not_of(' ') + 1);
    return line;
}

PipelineView::PipelineView(int fd, bool live) : m_fd(fd), m_live(live) {}

void PipelineView::update(const json& pipeline) {
    const json& jobs = jobs_of(pipeline);
    size_t width = 0;
    for (const auto& job : jobs)
        if (job.is_object()) width = std::max(width, display_name(job).size());
    int64_t now = now_ms();
    std::string out;
    if (m_live) {
        size_t columns = terminal_width(m_fd);
        // Up to the first line drawn last time, then each line over the old one.
        if (m_drawn) out += "\x1b[" + std::to_string(m_drawn) + "A";
        m_drawn = 0;
        for (const auto& job : jobs) {
            if (!job.is_object()) continue;
            out += "\r" + fit(job_line(job, pipeline, width, now), columns) + "\x1b[K\n";
            ++m_drawn;
        }
        out += "\x1b[J";  // fewer lines than before: clear the rest
    } else {
        for (const auto& job : jobs) {
            if (!job.is_object() || text_of(job, "name").empty()) continue;
            std::string id = text_of(job, "id"), state = text_of(job, "state");
            auto shown = m_shown.find(id);
            if (shown != m_shown.end() && shown->second == state) continue;
            m_shown[id] = state;
            out += job_line(job, pipeline, width, now) + "\n";
        }
    }
    if (!out.empty()) write_all(m_fd, out);
}

}  // namespace kiln::cli
