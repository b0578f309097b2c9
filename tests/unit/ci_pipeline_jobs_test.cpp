// Unit tests for `.kiln.yml` pipelines of several jobs (`jobs:`): needs, matrix, parallel and
// fork_after, the shared env, each bad file's error text, and plan_pipeline's expansion.
#include <gtest/gtest.h>

#include "ci/pipeline/pipeline_parser.h"
#include "pipeline_test_support.h"

using namespace kiln;
using namespace kiln::ci;
using namespace kiln::ci::pipeline_test;

namespace {

Pipeline parsed(const std::string& text) {
    auto result = parse_pipeline(text);
    EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().to_string()) << "\n" << text;
    return result.ok() ? std::move(*result) : Pipeline{};
}

// A job of one step named `run`, with `extra` lines (indented under the job) after it.
std::string job(const std::string& name, const std::string& extra = "") {
    return "  " + name + ":\n    steps:\n      - {name: run, run: make " + name + "}\n" + extra;
}

std::vector<std::string> planned_names(const std::vector<PlannedJob>& plan) {
    std::vector<std::string> out;
    for (const auto& planned : plan) out.push_back(planned.name);
    return out;
}

using Names = std::vector<std::string>;

}  // namespace

TEST(PipelineJobs, OneJobFormIsAPipelineOfOneJobNamedJob) {
    Pipeline pipeline = parsed("steps:\n  - {name: test, run: make test}\n");
    ASSERT_EQ(pipeline.jobs.size(), 1u);
    EXPECT_EQ(pipeline.jobs[0].name, kSingleJobName);
    EXPECT_TRUE(pipeline.jobs[0].needs.empty() && pipeline.jobs[0].matrix.empty());
    EXPECT_EQ(pipeline.jobs[0].parallel, 1u);
    EXPECT_FALSE(pipeline.jobs[0].fork_after.has_value());
    auto plan = plan_pipeline(pipeline);
    ASSERT_EQ(plan.size(), 1u);
    EXPECT_EQ(plan[0].name, "job");
    EXPECT_EQ(plan[0].definition, 0u);
    EXPECT_TRUE(plan[0].matrix.empty() && plan[0].needs.empty());
}

TEST(PipelineJobs, OneJobFormRefusesTheKeysOfJobs) {
    EXPECT_EQ(only_issue("steps:\n  - {name: a, run: x}\nparallel: 4\n"),
              "line 3, column 1: `parallel` belongs to a job under `jobs:`; a file with a top-level `steps` is a "
              "single job");
    EXPECT_EQ(only_issue("needs: [a]\nsteps:\n  - {name: a, run: x}\n"),
              "line 1, column 1: `needs` belongs to a job under `jobs:`; a file with a top-level `steps` is a single job");
}

TEST(PipelineJobs, ReadsEveryKeyOfAJob) {
    Pipeline pipeline = parsed(
        "jobs:\n"
        "  build:\n"
        "    template: base\n"
        "    timeout_seconds: 600\n"
        "    bake: {key_files: [go.sum], run: go mod download}\n"
        "    env: {GOFLAGS: -mod=mod}\n"
        "    secrets: [TOKEN]\n"
        "    steps:\n"
        "      - {name: build, run: go build ./..., timeout_seconds: 300}\n"
        "    artifacts: [bin/app]\n"
        "  test:\n"
        "    needs: build\n"
        "    matrix:\n"
        "      go: [\"1.21\", \"1.22\"]\n"
        "      os: [debian]\n"
        "    parallel: 4\n"
        "    fork_after: install\n"
        "    steps:\n"
        "      - {name: install, run: go mod download}\n"
        "      - {name: test, run: go test ./...}\n"
        "    junit: [report.xml]\n");
    ASSERT_EQ(pipeline.jobs.size(), 2u);
    const JobDefinition& build = pipeline.jobs[0];
    EXPECT_EQ(build.name, "build");
    EXPECT_EQ(build.timeout_seconds, 600u);
    ASSERT_TRUE(build.bake.has_value());
    EXPECT_EQ(build.bake->run, "go mod download");
    EXPECT_EQ(build.env.at("GOFLAGS"), "-mod=mod");
    EXPECT_EQ(build.secrets, Names{"TOKEN"});
    EXPECT_EQ(build.steps.at(0).timeout_seconds, 300u);
    EXPECT_EQ(build.artifacts, Names{"bin/app"});
    EXPECT_EQ(build.parallel, 1u);
    const JobDefinition& test = pipeline.jobs[1];
    EXPECT_EQ(test.name, "test");
    EXPECT_EQ(test.needs, Names{"build"});
    ASSERT_EQ(test.matrix.size(), 2u);
    EXPECT_EQ(test.matrix[0].name, "go");
    EXPECT_EQ(test.matrix[0].values, (Names{"1.21", "1.22"}));
    EXPECT_EQ(test.matrix[1].name, "os");
    EXPECT_EQ(test.matrix[1].values, Names{"debian"});
    EXPECT_EQ(test.parallel, 4u);
    EXPECT_EQ(test.fork_after, "install");
    EXPECT_EQ(test.junit, Names{"report.xml"});
    EXPECT_EQ(test.timeout_seconds, PipelineLimits::kDefaultTimeoutSeconds);
    EXPECT_EQ(test.template_name, "base");
}

TEST(PipelineJobs, TopLevelEnvIsUnderEachJobsOwn) {
    Pipeline pipeline = parsed("env: {A: shared, B: shared}\njobs:\n" + job("x", "    env: {B: mine, C: mine}\n") +
                               job("y"));
    EXPECT_EQ(pipeline.jobs[0].env,
              (std::map<std::string, std::string>{{"A", "shared"}, {"B", "mine"}, {"C", "mine"}}));
    EXPECT_EQ(pipeline.jobs[1].env, (std::map<std::string, std::string>{{"A", "shared"}, {"B", "shared"}}));
    // The env may come after `jobs:` in the file all the same.
    EXPECT_EQ(parsed("jobs:\n" + job("x") + "env: {A: 1}\n").jobs[0].env.at("A"), "1");
    EXPECT_EQ(only_issue("env: {TOKEN: x}\njobs:\n" + job("x", "    secrets: [TOKEN]\n")),
              "line 1, column 6: env.TOKEN is also listed in jobs.x.secrets; a secret's value comes from the server");
    std::string wide = "env:\n";
    for (int i = 0; i < 100; ++i) wide += "  S" + std::to_string(i) + ": x\n";
    std::string own = "    env:\n";
    for (int i = 0; i < 29; ++i) own += "      J" + std::to_string(i) + ": x\n";
    EXPECT_EQ(only_issue(wide + "jobs:\n" + job("x", own)),
              "line 103, column 3: jobs.x.env with the top-level env has 129 variables; the limit is 128");
}

TEST(PipelineJobs, TopLevelHoldsOnlyJobsAndEnv) {
    EXPECT_EQ(only_issue("steps:\n  - {name: a, run: x}\njobs:\n" + job("x")),
              "line 1, column 1: `steps` and `jobs` cannot both be at the top level: with `jobs`, each job has its "
              "own `steps`");
    EXPECT_EQ(only_issue("jobs:\n" + job("x") + "timeout_seconds: 60\n"),
              "line 5, column 1: `timeout_seconds` belongs inside a job: with `jobs`, the top level holds only "
              "`jobs` and `env`");
    EXPECT_EQ(only_issue("template: base\njobs:\n" + job("x")),
              "line 1, column 1: `template` belongs inside a job: with `jobs`, the top level holds only `jobs` and "
              "`env`");
    EXPECT_EQ(only_issue("jobs:\n" + job("x") + "stages: [a]\n"),
              "line 5, column 1: unknown key `stages`; with `jobs`, the top level holds only `jobs` and `env`");
}

TEST(PipelineJobs, JobNamesAndTheJobsMap) {
    EXPECT_EQ(only_issue("jobs:\n" + job("a") + job("a")),
              "line 5, column 3: jobs: a second job named `a` (the first is on line 2)");
    EXPECT_EQ(only_issue("jobs:\n" + job("a.b")),
              "line 2, column 3: jobs: `a.b` is not a job name (letters, digits, _ and -, starting with a letter or "
              "digit, at most 64 bytes)");
    EXPECT_NE(only_issue("jobs:\n" + job("-a")).find("`-a` is not a job name"), std::string::npos);
    EXPECT_NE(only_issue("jobs:\n" + job(std::string(65, 'a'))).find("is not a job name"), std::string::npos);
    EXPECT_TRUE(parse_pipeline("jobs:\n" + job(std::string(64, 'a')) + job("Build_2-x")).ok());
    EXPECT_EQ(only_issue("jobs: {}\n"), "line 1, column 7: jobs must have at least one job");
    EXPECT_EQ(only_issue("jobs: [a]\n"), "line 1, column 7: jobs must be a map of job name: job, not a list");
    // Still a job: the one that needs it has no error of its own.
    EXPECT_EQ(only_issue("jobs:\n  a: make\n" + job("b", "    needs: a\n")),
              "line 2, column 6: jobs.a must be a map (steps, needs, matrix, …), not a single value");
    std::string many = "jobs:\n";
    for (std::size_t i = 0; i <= PipelineLimits::kMaxJobs; ++i) many += job("j" + std::to_string(i));
    EXPECT_EQ(only_issue(many), "line 2, column 3: jobs has 65 jobs; the limit is 64");
}

TEST(PipelineJobs, ProblemsInsideAJobNameTheirPath) {
    auto issues = issues_of(
        "jobs:\n"
        "  e2e:\n"
        "    timeout_seconds: 60\n"
        "    steps:\n"
        "      - {name: a, run: x, timeout_seconds: 120}\n"
        "      - {name: a, run: y, tiemout: 1}\n"
        "    junit: [/abs]\n"
        "  lint:\n"
        "    template: Bad\n");
    EXPECT_EQ(issues, (Names{
                          "line 5, column 44: jobs.e2e.steps[0].timeout_seconds (120) is longer than the job's "
                          "timeout_seconds (60, line 3)",
                          "line 6, column 16: jobs.e2e.steps[1].name `a` is already the name of jobs.e2e.steps[0]",
                          "line 6, column 27: unknown key `jobs.e2e.steps[1].tiemout`; expected one of: name, run, "
                          "timeout_seconds, env",
                          "line 7, column 13: jobs.e2e.junit[0] must be relative to the repository, not absolute",
                          "line 9, column 5: `jobs.lint.steps` is missing; a job needs at least one step",
                          "line 9, column 15: jobs.lint.template must be a template name (lowercase letters, digits, ., "
                          "_ and -)",
                      }));
    EXPECT_EQ(only_issue("jobs:\n" + job("x", "    timeout: 5\n")),
              "line 5, column 5: unknown key `jobs.x.timeout`; expected one of: template, bake, env, secrets, steps, "
              "junit, artifacts, timeout_seconds, needs, matrix, parallel, fork_after");
}

TEST(PipelineJobs, NeedsNameOtherJobsOfTheFile) {
    Pipeline pipeline = parsed("jobs:\n" + job("lint") + job("test") + job("e2e", "    needs: [lint, test]\n") +
                               job("deploy", "    needs: e2e\n"));
    EXPECT_EQ(pipeline.jobs[2].needs, (Names{"lint", "test"}));
    EXPECT_EQ(pipeline.jobs[3].needs, Names{"e2e"});
    // A job may need one written after it: the order in the file is not an order of running.
    EXPECT_TRUE(parse_pipeline("jobs:\n" + job("e2e", "    needs: [lint]\n") + job("lint")).ok());

    EXPECT_EQ(only_issue("jobs:\n" + job("lint") + job("e2e", "    needs: [lint, buld]\n")),
              "line 8, column 19: jobs.e2e.needs[1] `buld` is not a job of this file; its jobs are: lint, e2e");
    EXPECT_EQ(only_issue("jobs:\n" + job("e2e", "    needs: e2e\n")),
              "line 5, column 12: jobs.e2e.needs `e2e` is the job itself; a job cannot need itself");
    EXPECT_EQ(only_issue("jobs:\n" + job("lint") + job("e2e", "    needs: [lint, lint]\n")),
              "line 8, column 19: jobs.e2e.needs[1] `lint` is listed twice");
    EXPECT_EQ(only_issue("jobs:\n" + job("e2e", "    needs: {a: b}\n")),
              "line 5, column 12: jobs.e2e.needs must be a job's name or a list of them, not a map");
    EXPECT_EQ(only_issue("jobs:\n" + job("e2e", "    needs: [[a]]\n")),
              "line 5, column 13: jobs.e2e.needs[0] must be a string, not a list");
    // The list of known jobs stays short in a big file.
    std::string many = "jobs:\n";
    for (int i = 0; i < 20; ++i) many += job("j" + std::to_string(i));
    many += job("e2e", "    needs: [nope]\n");
    EXPECT_EQ(only_issue(many),
              "line 65, column 13: jobs.e2e.needs[0] `nope` is not a job of this file; its jobs are: j0, j1, j2, j3, "
              "j4, j5, j6, j7, j8, j9, j10, j11, j12, j13, j14, j15, … (5 more)");
}

TEST(PipelineJobs, NeedsCyclesAreNamedOnce) {
    EXPECT_EQ(only_issue("jobs:\n" + job("a", "    needs: [b]\n") + job("b", "    needs: [a]\n")),
              "line 5, column 13: jobs: a cycle in needs: a -> b -> a");
    // A longer one, reached from a job outside it (which is not part of the message), and told
    // from the first job of the cycle in the file, at its need that starts the shortest way round.
    EXPECT_EQ(only_issue("jobs:\n" + job("outside", "    needs: [c]\n") + job("c", "    needs: [lint, d]\n") +
                         job("d", "    needs: e\n") + job("e", "    needs: [c]\n") + job("lint")),
              "line 9, column 19: jobs: a cycle in needs: c -> d -> e -> c");
    // Two separate cycles: two errors.
    auto issues = issues_of("jobs:\n" + job("a", "    needs: [b]\n") + job("b", "    needs: [a]\n") +
                            job("c", "    needs: [d]\n") + job("d", "    needs: [c]\n"));
    EXPECT_EQ(issues, (Names{"line 5, column 13: jobs: a cycle in needs: a -> b -> a",
                             "line 13, column 13: jobs: a cycle in needs: c -> d -> c"}));
}

TEST(PipelineJobs, MatrixValuesAndAxes) {
    Pipeline pipeline = parsed("jobs:\n" + job("t", "    matrix: {node: [18, 20, \"22\"], flag: [true, off]}\n"));
    ASSERT_EQ(pipeline.jobs[0].matrix.size(), 2u);
    EXPECT_EQ(pipeline.jobs[0].matrix[0].values, (Names{"18", "20", "22"}));  // scalars as written
    EXPECT_EQ(pipeline.jobs[0].matrix[1].values, (Names{"true", "off"}));

    // Each bad matrix of job `t` (written on line 5) and its one error.
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"{}", "line 5, column 13: jobs.t.matrix must have at least one axis"},
        {"[a]", "line 5, column 13: jobs.t.matrix must be a map of axis: [values], not a list"},
        {"{node: []}", "line 5, column 20: jobs.t.matrix.node must have at least one value"},
        {"{node: 18}", "line 5, column 20: jobs.t.matrix.node must be a list of values, not a single value"},
        {"{node-version: [18]}",
         "line 5, column 14: an axis of jobs.t.matrix must be a name of letters, digits and _, not starting with a digit"},
        {"{node: [18], NODE: [20]}",
         "line 5, column 26: jobs.t.matrix.NODE sets the same variable (KILN_MATRIX_NODE) as jobs.t.matrix.node"},
        {"{node: [18, 18]}", "line 5, column 25: jobs.t.matrix.node[1] `18` is listed twice"},
        {"{os: [debian/12]}", "line 5, column 19: jobs.t.matrix.os[0] must not contain `/`"},
        {"{os: [\"a\\tb\"]}", "line 5, column 19: jobs.t.matrix.os[0] must not contain control characters"},
        {"{os: [\"\"]}", "line 5, column 19: jobs.t.matrix.os[0] must not be empty"},
        {"{os: [[a]]}", "line 5, column 19: jobs.t.matrix.os[0] must be a string, not a list"},
        {"{os: [" + std::string(129, 'x') + "]}", "line 5, column 19: jobs.t.matrix.os[0] is 129 bytes; the limit is 128"},
    };
    for (const auto& [matrix, expected] : bad)
        EXPECT_EQ(only_issue("jobs:\n" + job("t", "    matrix: " + matrix + "\n")), expected) << matrix;
    EXPECT_TRUE(parse_pipeline("jobs:\n" + job("t", "    matrix: {os: [" + std::string(128, 'x') + "]}\n")).ok());
}

TEST(PipelineJobs, MatrixSizeLimits) {
    EXPECT_EQ(only_issue("jobs:\n" + job("test", "    matrix:\n      a: [1, 2, 3, 4, 5]\n      b: [1, 2, 3, 4, 5, 6, 7, 8]\n")),
              "line 6, column 7: jobs.test.matrix makes 40 combinations; at most 32");
    EXPECT_TRUE(parse_pipeline("jobs:\n" + job("test", "    matrix: {a: [1, 2, 3, 4], b: [1, 2, 3, 4, 5, 6, 7, 8]}\n")).ok());
    std::string axes = "    matrix:\n";
    for (int i = 0; i < 9; ++i) axes += "      a" + std::to_string(i) + ": [x]\n";
    EXPECT_EQ(only_issue("jobs:\n" + job("t", axes)), "line 6, column 7: jobs.t.matrix has 9 axes; the limit is 8");
    // A count too big for 64 bits is still told, not wrapped round.
    std::string huge = "    matrix:\n";
    for (int a = 0; a < 8; ++a) {
        huge += "      a" + std::to_string(a) + ": [";
        for (int v = 0; v < 300; ++v) huge += std::string(v ? "," : "") + std::to_string(v);
        huge += "]\n";
    }
    EXPECT_EQ(only_issue("jobs:\n" + job("t", huge)),
              "line 6, column 7: jobs.t.matrix makes over a billion combinations; at most 32");
}

TEST(PipelineJobs, PlanSizeIsBounded) {
    // 3 jobs of 32 combinations: each fine alone, 96 planned jobs in all.
    std::string text = "jobs:\n";
    std::string matrix = "    matrix: {a: [1, 2, 3, 4], b: [1, 2, 3, 4, 5, 6, 7, 8]}\n";
    for (const char* name : {"x", "y", "z"}) text += job(name, matrix);
    EXPECT_EQ(only_issue(text), "line 2, column 3: jobs: the plan has 96 jobs once each matrix is expanded; at most 64");
    // Exactly 64 is fine.
    std::string full = "jobs:\n" + job("x", matrix) + job("y", matrix);
    EXPECT_EQ(plan_pipeline(parsed(full)).size(), 64u);
}

TEST(PipelineJobs, PlannedNamesMustBeUniqueAndFitAFolderName) {
    EXPECT_EQ(only_issue("jobs:\n" + job("t", "    matrix: {a: [\"x, y\", x], b: [z, \"y, z\"]}\n")),
              "line 2, column 3: jobs.t plans two jobs named `t (x, y, z)`; planned names must be unique (a matrix "
              "value holding \", \" can do this)");
    std::string long_value(100, 'v');
    EXPECT_EQ(only_issue("jobs:\n" + job("t", "    matrix: {a: [" + long_value + "], b: [" + long_value + "], c: [" +
                                                  long_value + "]}\n")),
              "line 2, column 3: jobs.t plans a job whose name is 308 bytes; at most 255 (it names a folder under "
              "/work/needs): shorten the matrix values");
}

TEST(PipelineJobs, ParallelAndForkAfter) {
    Pipeline pipeline = parsed("jobs:\n  suite:\n    parallel: 16\n    steps:\n      - {name: install, run: a}\n"
                               "      - {name: test, run: b}\n    fork_after: install\n");
    EXPECT_EQ(pipeline.jobs[0].parallel, 16u);
    EXPECT_EQ(pipeline.jobs[0].fork_after, "install");
    // Without fork_after: N fresh VMs each run every step.
    EXPECT_EQ(parsed("jobs:\n" + job("s", "    parallel: 3\n")).jobs[0].parallel, 3u);

    for (const char* bad : {"0", "17", "\"4\"", "4.0", "0x4", "-1", "[4]", "four"}) {
        std::string issue = only_issue("jobs:\n" + job("s", std::string("    parallel: ") + bad + "\n"));
        EXPECT_EQ(issue.rfind("line 5, column 15: jobs.s.parallel must be a whole number from 1 to 16", 0), 0u)
            << bad << ": " << issue;
    }
    const std::string two_steps = "    steps:\n      - {name: install, run: a}\n      - {name: test, run: b}\n";
    EXPECT_EQ(only_issue("jobs:\n  s:\n    parallel: 4\n    fork_after: instal\n" + two_steps),
              "line 4, column 17: jobs.s.fork_after `instal` is not a step of jobs.s; its steps are: install, test");
    EXPECT_EQ(only_issue("jobs:\n  s:\n    parallel: 4\n    fork_after: test\n" + two_steps),
              "line 4, column 17: jobs.s.fork_after names the last step (`test`): the shards would have no step to run");
    EXPECT_EQ(only_issue("jobs:\n  s:\n    fork_after: install\n" + two_steps),
              "line 3, column 17: jobs.s.fork_after needs `parallel` of 2 or more: the number of shards forked after "
              "`install`");
    EXPECT_EQ(only_issue("jobs:\n  s:\n    parallel: 1\n    fork_after: install\n" + two_steps),
              "line 4, column 17: jobs.s.fork_after needs `parallel` of 2 or more: the number of shards forked after "
              "`install`");
    // A bad `parallel` is one error, not two.
    EXPECT_EQ(only_issue("jobs:\n  s:\n    parallel: 40\n    fork_after: install\n" + two_steps),
              "line 3, column 15: jobs.s.parallel must be a whole number from 1 to 16");
    EXPECT_EQ(only_issue("jobs:\n  s:\n    parallel: 2\n    fork_after: [install]\n" + two_steps),
              "line 4, column 17: jobs.s.fork_after must be a string, not a list");
}

TEST(PipelineJobs, EveryProblemIsCollected) {
    auto issues = issues_of(
        "env: {A: 1}\n"
        "template: base\n"
        "jobs:\n"
        "  a:\n"
        "    needs: [ghost]\n"
        "    matrix: {v: [1, 1]}\n"
        "    steps:\n"
        "      - {name: s, run: x}\n"
        "  b:\n"
        "    parallel: 99\n");
    EXPECT_EQ(issues, (Names{
                          "line 2, column 1: `template` belongs inside a job: with `jobs`, the top level holds only "
                          "`jobs` and `env`",
                          "line 5, column 13: jobs.a.needs[0] `ghost` is not a job of this file; its jobs are: a, b",
                          "line 6, column 21: jobs.a.matrix.v[1] `1` is listed twice",
                          "line 10, column 5: `jobs.b.steps` is missing; a job needs at least one step",
                          "line 10, column 15: jobs.b.parallel must be a whole number from 1 to 16",
                      }));
}

TEST(PipelinePlan, MatrixCombinationsFirstAxisSlowest) {
    Pipeline pipeline = parsed("jobs:\n" + job("lint") +
                               job("test", "    matrix:\n      node: [18, 20]\n      os: [debian, alpine, arch]\n"));
    auto plan = plan_pipeline(pipeline);
    EXPECT_EQ(planned_names(plan),
              (Names{"lint", "test (18, debian)", "test (18, alpine)", "test (18, arch)", "test (20, debian)",
                     "test (20, alpine)", "test (20, arch)"}));
    EXPECT_EQ(plan[0].definition, 0u);
    EXPECT_TRUE(plan[0].matrix.empty());
    EXPECT_EQ(plan[4].definition, 1u);
    EXPECT_EQ(plan[4].matrix, (std::map<std::string, std::string>{{"node", "20"}, {"os", "debian"}}));
}

TEST(PipelinePlan, NeedsExpandToPlannedNamesInPlanOrder) {
    Pipeline pipeline = parsed("jobs:\n" + job("report", "    needs: [test, lint]\n") +
                               job("test", "    matrix: {v: [1, 2]}\n    needs: [lint]\n") + job("lint") +
                               job("deploy", "    needs: [report]\n"));
    auto plan = plan_pipeline(pipeline);
    EXPECT_EQ(planned_names(plan), (Names{"report", "test (1)", "test (2)", "lint", "deploy"}));
    // Written `test, lint`: planned in plan order, a matrix need standing for each combination.
    EXPECT_EQ(plan[0].needs, (Names{"test (1)", "test (2)", "lint"}));
    EXPECT_EQ(plan[1].needs, Names{"lint"});
    EXPECT_EQ(plan[2].needs, Names{"lint"});
    EXPECT_TRUE(plan[3].needs.empty());
    EXPECT_EQ(plan[4].needs, Names{"report"});
}

TEST(PipelinePlan, IsTheSameForTheSameFile) {
    const std::string text = "jobs:\n" + job("a", "    matrix: {x: [1, 2], y: [3, 4]}\n") + job("b", "    needs: a\n");
    auto first = plan_pipeline(parsed(text));
    auto second = plan_pipeline(parsed(text));
    ASSERT_EQ(first.size(), second.size());
    for (std::size_t i = 0; i < first.size(); ++i) {
        EXPECT_EQ(first[i].name, second[i].name);
        EXPECT_EQ(first[i].needs, second[i].needs);
        EXPECT_EQ(first[i].matrix, second[i].matrix);
    }
    EXPECT_EQ(first.back().needs, (Names{"a (1, 3)", "a (1, 4)", "a (2, 3)", "a (2, 4)"}));
}

TEST(PipelinePlan, MatrixEnvNames) {
    EXPECT_EQ(matrix_env_name("node"), "KILN_MATRIX_NODE");
    EXPECT_EQ(matrix_env_name("Node_Version2"), "KILN_MATRIX_NODE_VERSION2");
}
