// check_needs and check_plan: the graph of `needs` between jobs, and the jobs it plans.
#include "ci/pipeline/pipeline_graph.h"

#include <algorithm>
#include <deque>
#include <map>
#include <set>

namespace kiln::ci {
namespace {

struct NeedEdge {
    std::size_t to = 0;
    const NeedSource* source = nullptr;
};

// The shortest cycle through `start` (which is on one): the jobs in order, from `start`, and the
// need of `start` that begins it. Breadth-first over at most kMaxJobs jobs.
std::pair<std::vector<std::size_t>, const NeedSource*> cycle_through(
    std::size_t start, const std::vector<std::vector<NeedEdge>>& edges) {
    std::vector<std::size_t> previous(edges.size(), edges.size());
    std::vector<const NeedSource*> first_need(edges.size(), nullptr);  // the need of `start` each was reached by
    std::deque<std::size_t> queue{start};
    while (!queue.empty()) {
        std::size_t at = queue.front();
        queue.pop_front();
        for (const NeedEdge& edge : edges[at]) {
            const NeedSource* first = at == start ? edge.source : first_need[at];
            if (edge.to == start) {
                std::vector<std::size_t> path{start};
                for (std::size_t j = at; j != start; j = previous[j]) path.insert(path.begin() + 1, j);
                return {path, first};
            }
            if (previous[edge.to] != edges.size()) continue;  // seen
            previous[edge.to] = at;
            first_need[edge.to] = first;
            queue.push_back(edge.to);
        }
    }
    return {{}, nullptr};
}

}  // namespace

void check_needs(SchemaReader& reader, const std::vector<JobDefinition>& jobs, const std::vector<JobSource>& sources) {
    std::map<std::string, std::size_t> index_of;
    std::vector<std::string> names;
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        index_of.emplace(jobs[i].name, i);
        names.push_back(jobs[i].name);
    }
    std::vector<std::vector<NeedEdge>> edges(jobs.size());
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        for (const NeedSource& need : sources[i].needs) {
            auto found = index_of.find(need.name);
            if (found == index_of.end()) {
                reader.issue(*need.node, need.path + " `" + need.name + "` is not a job of this file; its jobs are: " +
                                             join_names(names));
            } else if (found->second == i) {
                reader.issue(*need.node, need.path + " `" + need.name + "` is the job itself; a job cannot need itself");
            } else {
                edges[i].push_back(NeedEdge{found->second, &need});
            }
        }
    }
    // Which job reaches which (64 jobs at most: a closure is cheaper to read than Tarjan's).
    std::size_t n = jobs.size();
    std::vector<std::vector<bool>> reaches(n, std::vector<bool>(n, false));
    for (std::size_t i = 0; i < n; ++i)
        for (const NeedEdge& edge : edges[i]) reaches[i][edge.to] = true;
    for (std::size_t k = 0; k < n; ++k)
        for (std::size_t i = 0; i < n; ++i)
            if (reaches[i][k])
                for (std::size_t j = 0; j < n; ++j)
                    if (reaches[k][j]) reaches[i][j] = true;
    // One error per set of jobs caught in cycles, told from its first job in the file.
    std::vector<bool> reported(n, false);
    for (std::size_t i = 0; i < n; ++i) {
        if (!reaches[i][i] || reported[i]) continue;
        for (std::size_t j = 0; j < n; ++j)
            if (reaches[i][j] && reaches[j][i]) reported[j] = true;
        auto [cycle, first_need] = cycle_through(i, edges);
        std::string text;
        for (std::size_t j : cycle) text += jobs[j].name + " -> ";
        reader.issue(*first_need->node, "jobs: a cycle in needs: " + text + jobs[i].name);
    }
}

void check_plan(SchemaReader& reader, const Pipeline& pipeline, const std::vector<JobSource>& sources,
                const YamlNode& jobs_node) {
    std::size_t planned_count = 0;
    for (const JobDefinition& job : pipeline.jobs) {
        std::size_t combinations = 1;
        for (const MatrixAxis& axis : job.matrix) combinations *= axis.values.size();  // at most kMaxMatrixCombinations
        planned_count += combinations;
    }
    if (planned_count > PipelineLimits::kMaxPlannedJobs) {
        reader.issue(jobs_node, "jobs: the plan has " + std::to_string(planned_count) +
                                    " jobs once each matrix is expanded; at most " +
                                    std::to_string(PipelineLimits::kMaxPlannedJobs));
        return;
    }
    if (reader.has_issues()) return;  // a plan of a broken file would only repeat its problems
    std::set<std::string> planned_names;
    std::set<std::size_t> told;  // jobs already named in an error: one error per job, not per combination
    for (const PlannedJob& planned : plan_pipeline(pipeline)) {
        const JobSource& source = sources[planned.definition];
        if (told.count(planned.definition)) continue;
        // Matrix values may hold ", ": (a, b) + (c) and (a) + (b, c) would both be `t (a, b, c)`.
        if (!planned_names.insert(planned.name).second) {
            reader.issue(*source.at, source.path + " plans two jobs named `" + planned.name +
                                         "`; planned names must be unique (a matrix value holding \", \" can do this)");
            told.insert(planned.definition);
        } else if (planned.name.size() > PipelineLimits::kMaxPlannedNameBytes) {
            reader.issue(*source.at, source.path + " plans a job whose name is " + std::to_string(planned.name.size()) +
                                         " bytes; at most " + std::to_string(PipelineLimits::kMaxPlannedNameBytes) +
                                         " (it names a folder under /work/needs): shorten the matrix values");
            told.insert(planned.definition);
        }
    }
}

}  // namespace kiln::ci
