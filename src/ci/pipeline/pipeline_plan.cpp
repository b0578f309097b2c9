// plan_pipeline: the jobs as written expanded into the jobs that run (each matrix combination is one),
// with their needs as planned names.
#include <algorithm>

#include "ci/pipeline/pipeline.h"

namespace kiln::ci {
namespace {

// The combinations of a job's matrix, first axis varying slowest; one empty combination without one.
std::vector<std::vector<std::string>> combinations_of(const std::vector<MatrixAxis>& matrix) {
    std::vector<std::vector<std::string>> out;
    if (std::any_of(matrix.begin(), matrix.end(), [](const MatrixAxis& axis) { return axis.values.empty(); }))
        return out;
    std::vector<std::size_t> index(matrix.size(), 0);
    while (true) {
        std::vector<std::string> values;
        for (std::size_t a = 0; a < matrix.size(); ++a) values.push_back(matrix[a].values[index[a]]);
        out.push_back(std::move(values));
        // An odometer: the last axis turns fastest, and carries into the one before it.
        std::size_t a = matrix.size();
        while (a > 0 && ++index[a - 1] == matrix[a - 1].values.size()) index[--a] = 0;
        if (a == 0) return out;
    }
}

// "test (18, debian)": the job's name and the values in axis order; the name alone without a matrix.
std::string planned_name(const std::string& job, const std::vector<std::string>& values) {
    if (values.empty()) return job;
    std::string name = job + " (";
    for (std::size_t i = 0; i < values.size(); ++i) name += (i ? ", " : "") + values[i];
    return name + ")";
}

}  // namespace

std::string matrix_env_name(const std::string& axis) {
    std::string out = "KILN_MATRIX_";
    for (char c : axis) out += (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c;
    return out;
}

std::vector<PlannedJob> plan_pipeline(const Pipeline& pipeline) {
    std::vector<PlannedJob> out;
    for (std::size_t i = 0; i < pipeline.jobs.size(); ++i) {
        const JobDefinition& job = pipeline.jobs[i];
        for (const auto& values : combinations_of(job.matrix)) {
            PlannedJob planned;
            planned.name = planned_name(job.name, values);
            planned.definition = i;
            for (std::size_t a = 0; a < values.size(); ++a) planned.matrix[job.matrix[a].name] = values[a];
            out.push_back(std::move(planned));
        }
    }
    // A need names a job as written: it stands for every job planned from it, taken in plan order
    // (so a job's needs are in the order they run in the plan, each once, whatever order they were
    // written in).
    for (PlannedJob& planned : out) {
        const std::vector<std::string>& needs = pipeline.jobs[planned.definition].needs;
        for (const PlannedJob& other : out) {
            const std::string& other_job = pipeline.jobs[other.definition].name;
            if (std::find(needs.begin(), needs.end(), other_job) != needs.end()) planned.needs.push_back(other.name);
        }
    }
    return out;
}

}  // namespace kiln::ci
