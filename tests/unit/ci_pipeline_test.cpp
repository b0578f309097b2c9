// Unit tests for the `.kiln.yml` parser: the documented example, every field's checks, and hostile YAML.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "ci/pipeline/pipeline_parser.h"
#include "ci/pipeline/yaml_tree.h"
#include "pipeline_test_support.h"

using namespace kiln;
using namespace kiln::ci;
using namespace kiln::ci::pipeline_test;

namespace {

// The ```yaml blocks of docs/pipeline.md, in order: the doc's examples are what these tests parse.
std::vector<std::string> doc_yaml_blocks() {
    std::ifstream in(std::string(KILN_SOURCE_DIR) + "/docs/pipeline.md");
    std::stringstream all;
    all << in.rdbuf();
    std::string doc = all.str();
    std::vector<std::string> blocks;
    for (auto start = doc.find("```yaml\n"); start != std::string::npos; start = doc.find("```yaml\n", start)) {
        start += 8;
        auto end = doc.find("```", start);
        if (end == std::string::npos) break;
        blocks.push_back(doc.substr(start, end - start));
        start = end + 3;
    }
    return blocks;
}

// The first block: the one-job example.
std::string doc_example() {
    auto blocks = doc_yaml_blocks();
    return blocks.empty() ? "" : blocks[0];
}

const char* kMinimal = "steps:\n  - name: test\n    run: make test\n";

}  // namespace

TEST(Pipeline, ParsesTheDocumentedExample) {
    std::string text = doc_example();
    ASSERT_FALSE(text.empty()) << "no ```yaml block in docs/pipeline.md";
    auto pipeline = parse_pipeline(text);
    ASSERT_TRUE(pipeline.ok()) << pipeline.error().to_string();
    EXPECT_EQ(pipeline->jobs[0].template_name, "base");
    EXPECT_EQ(pipeline->jobs[0].timeout_seconds, 1800u);
    ASSERT_TRUE(pipeline->jobs[0].bake.has_value());
    EXPECT_EQ(pipeline->jobs[0].bake->key_files, std::vector<std::string>{"package-lock.json"});
    EXPECT_EQ(pipeline->jobs[0].bake->run, "npm ci");
    EXPECT_EQ(pipeline->jobs[0].env.at("NODE_ENV"), "test");
    EXPECT_EQ(pipeline->jobs[0].env.at("CI"), "true");
    EXPECT_EQ(pipeline->jobs[0].secrets, std::vector<std::string>{"NPM_TOKEN"});
    ASSERT_EQ(pipeline->jobs[0].steps.size(), 2u);
    EXPECT_EQ(pipeline->jobs[0].steps[0].name, "lint");
    EXPECT_EQ(pipeline->jobs[0].steps[0].run, "npm run lint");
    EXPECT_EQ(pipeline->jobs[0].steps[0].timeout_seconds, 120u);
    EXPECT_TRUE(pipeline->jobs[0].steps[0].env.empty());
    EXPECT_EQ(pipeline->jobs[0].steps[1].name, "test");
    EXPECT_EQ(pipeline->jobs[0].steps[1].run, "npm test -- --reporters=default --reporters=jest-junit\n");
    EXPECT_EQ(pipeline->jobs[0].steps[1].timeout_seconds, 900u);
    EXPECT_EQ(pipeline->jobs[0].steps[1].env.at("JEST_JUNIT_OUTPUT_DIR"), "reports");
    EXPECT_EQ(pipeline->jobs[0].junit, std::vector<std::string>{"reports/*.xml"});
    EXPECT_EQ(pipeline->jobs[0].artifacts, (std::vector<std::string>{"coverage/lcov.info", "dist/**"}));
}

TEST(Pipeline, ParsesEveryYamlBlockOfTheDoc) {
    auto blocks = doc_yaml_blocks();
    ASSERT_GE(blocks.size(), 2u) << "docs/pipeline.md shows a one-job file and a pipeline of several jobs";
    for (const std::string& block : blocks) {
        auto pipeline = parse_pipeline(block);
        EXPECT_TRUE(pipeline.ok()) << (pipeline.ok() ? "" : pipeline.error().to_string()) << "\n" << block;
    }
}

// The doc's pipeline: lint, a matrix, a job that needs them, and a sharded suite forked after its install.
TEST(Pipeline, TheDocumentedPipelinePlansAsTheDocSays) {
    auto blocks = doc_yaml_blocks();
    ASSERT_GE(blocks.size(), 2u);
    auto pipeline = parse_pipeline(blocks[1]);
    ASSERT_TRUE(pipeline.ok()) << pipeline.error().to_string();
    ASSERT_EQ(pipeline->jobs.size(), 4u);
    const JobDefinition& e2e = pipeline->jobs[3];
    EXPECT_EQ(e2e.name, "e2e");
    EXPECT_EQ(e2e.parallel, 4u);
    EXPECT_EQ(e2e.fork_after, "install");
    EXPECT_EQ(e2e.env.at("CI"), "true");  // the top-level env, under each job's
    EXPECT_EQ(pipeline->jobs[0].env.at("CI"), "true");

    std::vector<PlannedJob> plan = plan_pipeline(*pipeline);
    std::vector<std::string> names;
    for (const auto& planned : plan) names.push_back(planned.name);
    const std::vector<std::string> tests = {"test (18, sqlite)", "test (18, postgres)", "test (20, sqlite)",
                                            "test (20, postgres)"};
    EXPECT_EQ(names, (std::vector<std::string>{"lint", tests[0], tests[1], tests[2], tests[3], "build", "e2e"}));
    ASSERT_EQ(plan.size(), 7u);
    EXPECT_TRUE(plan[0].needs.empty());
    EXPECT_EQ(plan[1].definition, 1u);
    EXPECT_EQ(plan[1].matrix, (std::map<std::string, std::string>{{"node", "18"}, {"db", "sqlite"}}));
    EXPECT_EQ(plan[4].matrix, (std::map<std::string, std::string>{{"node", "20"}, {"db", "postgres"}}));
    EXPECT_TRUE(plan[4].needs.empty());
    EXPECT_EQ(plan[5].needs, (std::vector<std::string>{"lint", tests[0], tests[1], tests[2], tests[3]}));
    EXPECT_EQ(plan[6].needs, std::vector<std::string>{"build"});
    EXPECT_EQ(plan[6].definition, 3u);
}

TEST(Pipeline, MinimalFileGetsTheDefaults) {
    auto pipeline = parse_pipeline(kMinimal);
    ASSERT_TRUE(pipeline.ok()) << pipeline.error().to_string();
    EXPECT_EQ(pipeline->jobs[0].template_name, "base");
    EXPECT_EQ(pipeline->jobs[0].timeout_seconds, PipelineLimits::kDefaultTimeoutSeconds);
    EXPECT_FALSE(pipeline->jobs[0].bake.has_value());
    EXPECT_FALSE(pipeline->jobs[0].steps[0].timeout_seconds.has_value());
    EXPECT_TRUE(pipeline->jobs[0].env.empty() && pipeline->jobs[0].secrets.empty() && pipeline->jobs[0].junit.empty() &&
                pipeline->jobs[0].artifacts.empty());
}

TEST(Pipeline, EnvValuesAreTheTextAsWritten) {
    auto pipeline = parse_pipeline(std::string(kMinimal) + "env: {A: 1, B: true, C: \"\", D: '007', E: 1.50}\n");
    ASSERT_TRUE(pipeline.ok()) << pipeline.error().to_string();
    EXPECT_EQ(pipeline->jobs[0].env, (std::map<std::string, std::string>{
                                 {"A", "1"}, {"B", "true"}, {"C", ""}, {"D", "007"}, {"E", "1.50"}}));
}

TEST(Pipeline, BadTimeoutNamesItsLineColumnAndPath) {
    const std::string text =
        "steps:\n"
        "  - name: a\n"
        "    run: x\n"
        "  - name: b\n"
        "    run: y\n"
        "    env: {}\n"
        "    timeout_seconds: -5\n";
    EXPECT_EQ(only_issue(text), "line 7, column 22: steps[1].timeout_seconds must be a positive integer (seconds)");
    auto result = parse_pipeline(text);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().code, ErrorCode::InvalidPipeline);
    EXPECT_EQ(result.error().message, "line 7, column 22: steps[1].timeout_seconds must be a positive integer (seconds)");
}

TEST(Pipeline, SecondsMustBePlainDigitsInRange) {
    for (const char* bad : {"0", "\"60\"", "60.0", "1e3", "0x3c", "+5", "abc", "[]", "", "99999999999"}) {
        std::string text = std::string(kMinimal) + "timeout_seconds: " + bad + "\n";
        std::string issue = only_issue(text);
        EXPECT_NE(issue.find("line 4, column "), std::string::npos) << bad << ": " << issue;
        EXPECT_NE(issue.find("timeout_seconds must be"), std::string::npos) << bad << ": " << issue;
    }
    EXPECT_EQ(only_issue(std::string(kMinimal) + "timeout_seconds: 86401\n"),
              "line 4, column 18: timeout_seconds must be at most 86400 (24 hours)");
    EXPECT_TRUE(parse_pipeline(std::string(kMinimal) + "timeout_seconds: 86400\n").ok());
}

TEST(Pipeline, StepTimeoutCannotExceedTheJobs) {
    // The job's cap comes after the steps in the file: the check still sees it.
    EXPECT_EQ(only_issue("steps:\n  - {name: a, run: x, timeout_seconds: 120}\ntimeout_seconds: 60\n"),
              "line 2, column 40: steps[0].timeout_seconds (120) is longer than the job's timeout_seconds (60, line 3)");
    EXPECT_NE(only_issue("steps:\n  - {name: a, run: x, timeout_seconds: 7200}\n").find("(3600, the default)"),
              std::string::npos);
}

TEST(Pipeline, UnknownAndDuplicateKeysAreErrorsWithTheirLine) {
    EXPECT_EQ(only_issue(std::string(kMinimal) + "timeout_secnods: 5\n"),
              "line 4, column 1: unknown key `timeout_secnods`; expected one of: template, bake, env, secrets, "
              "steps, junit, artifacts, timeout_seconds, jobs");
    EXPECT_EQ(only_issue("steps:\n  - name: a\n    run: x\n    tiemout_seconds: 5\n"),
              "line 4, column 5: unknown key `steps[0].tiemout_seconds`; expected one of: name, run, timeout_seconds, env");
    EXPECT_EQ(only_issue("bake: {run: x, key_file: [a]}\n" + std::string(kMinimal)),
              "line 1, column 16: unknown key `bake.key_file`; expected one of: key_files, run");
    EXPECT_EQ(only_issue(std::string(kMinimal) + "steps: []\n"), "line 4, column 1: duplicate key `steps` (first on line 1)");
    EXPECT_EQ(only_issue(std::string(kMinimal) + "env:\n  A: 1\n  A: 2\n"),
              "line 6, column 3: duplicate key `env.A` (first on line 5)");
}

TEST(Pipeline, MissingPartsAreNamed) {
    EXPECT_EQ(only_issue(""), "line 1, column 1: the file is empty; a pipeline needs `steps` (a single job) or `jobs`");
    EXPECT_EQ(only_issue("# only a comment\n"),
              "line 1, column 1: the file is empty; a pipeline needs `steps` (a single job) or `jobs`");
    EXPECT_EQ(only_issue("template: base\n"),
              "line 1, column 1: `steps` is missing; a pipeline needs `steps` (a single job) or `jobs`");
    EXPECT_EQ(only_issue("steps: []\n"), "line 1, column 8: steps must have at least one step");
    EXPECT_EQ(only_issue("- a\n- b\n"), "line 1, column 1: the top level must be a map (jobs, or template, steps, …), not a list");
    auto issues = issues_of("steps:\n  - timeout_seconds: 5\n");
    EXPECT_EQ(issues, (std::vector<std::string>{"line 2, column 5: steps[0] needs a `name`",
                                                "line 2, column 5: steps[0] needs a `run` (the commands of the step)"}));
    EXPECT_EQ(only_issue("bake: {key_files: [a.lock]}\n" + std::string(kMinimal)),
              "line 1, column 7: bake.run is missing; it holds the commands whose result is snapshotted");
    EXPECT_EQ(only_issue("steps:\n  - name: a\n    run:\n"),
              "line 3, column 5: steps[0].run must be a string, not empty (write \"\" for an empty string)");
    EXPECT_EQ(only_issue("steps:\n  - name: a\n    run: \"  \"\n"), "line 3, column 10: steps[0].run must not be empty");
}

TEST(Pipeline, ReportsEveryProblemInLineOrder) {
    auto issues = issues_of(
        "steps:\n"
        "  - name: a\n"
        "    run: x\n"
        "  - name: a\n"
        "    run: y\n"
        "secrets: [1BAD]\n"
        "junit: [/etc/passwd, ../x, ok/*.xml, ok/*.xml]\n"
        "template: Not_A_Name\n");
    EXPECT_EQ(issues, (std::vector<std::string>{
                          "line 4, column 11: steps[1].name `a` is already the name of steps[0]",
                          "line 6, column 11: secrets[0] must be a variable name (letters, digits and _)",
                          "line 7, column 9: junit[0] must be relative to the repository, not absolute",
                          "line 7, column 22: junit[1] must not contain `..`",
                          "line 7, column 38: junit[3] `ok/*.xml` is listed twice",
                          "line 8, column 11: template must be a template name (lowercase letters, digits, ., _ and -)",
                      }));
}

TEST(Pipeline, NamesAndPathsAreChecked) {
    EXPECT_NE(only_issue(std::string(kMinimal) + "env: {\"A-B\": x}\n").find("a name in env must be letters"),
              std::string::npos);
    EXPECT_NE(only_issue(std::string(kMinimal) + "env: {A: x}\nsecrets: [A]\n").find("env.A is also listed in secrets"),
              std::string::npos);
    EXPECT_EQ(only_issue("bake: {run: x, key_files: [\"*.lock\"]}\n" + std::string(kMinimal)),
              "line 1, column 28: bake.key_files[0] must be a file's path, not a glob");
    EXPECT_EQ(only_issue("steps:\n  - name: \"a\\nb\"\n    run: x\n"),
              "line 2, column 11: steps[0].name must be one line without control characters");
    EXPECT_EQ(only_issue("steps:\n  - {name: a, run: x, env: [A]}\n"),
              "line 2, column 28: steps[0].env must be a map of NAME: value, not a list");
    EXPECT_EQ(only_issue(std::string(kMinimal) + "artifacts: out/*\n"),
              "line 4, column 12: artifacts must be a list, not a single value");
}

TEST(Pipeline, SizeAndCountLimits) {
    std::string many_steps = "steps:\n";
    for (std::size_t i = 0; i <= PipelineLimits::kMaxSteps; ++i)
        many_steps += "  - {name: s" + std::to_string(i) + ", run: x}\n";
    EXPECT_EQ(only_issue(many_steps), "line 2, column 3: steps has 65 steps; the limit is 64");

    std::string long_run = "steps:\n  - name: a\n    run: " + std::string(PipelineLimits::kMaxRunBytes + 1, 'x') + "\n";
    EXPECT_EQ(only_issue(long_run), "line 3, column 10: steps[0].run is 65537 bytes; the limit is 65536");

    std::string huge(300 * 1024, '#');
    EXPECT_EQ(only_issue(huge), "the file is 307200 bytes; the limit is 262144");

    std::string wide = std::string(kMinimal) + "env:\n";
    for (int i = 0; i < 129; ++i) wide += "  V" + std::to_string(i) + ": x\n";
    EXPECT_EQ(only_issue(wide), "line 5, column 3: env has 129 variables; the limit is 128");
}

TEST(PipelineHostileYaml, AnchorsAndAliasesAreRefused) {
    EXPECT_EQ(only_issue("env: &e {A: x}\nsteps:\n  - {name: a, run: x, env: *e}\n"),
              "line 1, column 6: YAML anchors (&name) are not allowed in a pipeline file");
    // The classic expansion bomb: refused at its first anchor, before anything grows.
    std::string bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n";
    for (char c = 'b'; c <= 'i'; ++c) {
        std::string prev(1, static_cast<char>(c - 1));
        bomb += std::string(1, c) + ": &" + c + " [*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev +
                ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + "]\n";
    }
    EXPECT_EQ(only_issue(bomb), "line 1, column 4: YAML anchors (&name) are not allowed in a pipeline file");
    // An alias without its anchor is a YAML error of its own; either way, refused with a line.
    EXPECT_NE(only_issue("steps: *x\n").find("line 1"), std::string::npos);
}

TEST(PipelineHostileYaml, DeepNestingIsRefusedEarly) {
    std::string deep = std::string(100000, '[') + std::string(100000, ']');
    std::string issue = only_issue(deep);
    EXPECT_EQ(issue, "line 1, column 17: nesting deeper than 16 levels");
    // Unclosed, yaml-cpp reads it otherwise; refused all the same, and as fast.
    EXPECT_EQ(only_issue(std::string(100000, '[')).rfind("line 1, column ", 0), 0u);
    std::string deep_maps;
    for (int i = 0; i < 40; ++i) deep_maps += std::string(static_cast<std::size_t>(i) * 2, ' ') + "k:\n";
    EXPECT_NE(only_issue(deep_maps).find("nesting deeper than 16 levels"), std::string::npos);
}

TEST(PipelineHostileYaml, TagsDocumentsNulsAndSyntaxErrors) {
    EXPECT_EQ(only_issue(std::string(kMinimal) + "template: !!str base\n"),
              "line 4, column 11: YAML tags (tag:yaml.org,2002:str) are not allowed in a pipeline file");
    EXPECT_EQ(only_issue(std::string(kMinimal) + "---\n" + kMinimal),
              "line 5, column 1: more than one YAML document (`---`); a pipeline file has one");
    const char nul_env[] = "env: {A: \"x\0y\"}\n";
    EXPECT_EQ(only_issue(std::string(kMinimal) + std::string(nul_env, sizeof nul_env - 1)),
              "line 4: the file contains a NUL byte");
    std::string syntax = only_issue("steps:\n  - name: a\n   run: [unclosed\n");
    EXPECT_EQ(syntax.rfind("line 3, column ", 0), 0u) << syntax;
    EXPECT_NE(syntax.find("invalid YAML"), std::string::npos) << syntax;
    EXPECT_EQ(only_issue("{[a]: b}\n"), "line 1, column 2: a key must be a plain string, not a list or a map");
}

TEST(PipelineHostileYaml, NodeCountIsBounded) {
    YamlLimits limits;
    limits.max_nodes = 100;
    std::string many = "[";
    for (int i = 0; i < 200; ++i) many += "1,";
    many += "1]";
    YamlLoadResult loaded = load_yaml(many, limits);
    EXPECT_EQ(loaded.root, nullptr);
    EXPECT_EQ(loaded.issue.to_string(), "line 1, column 200: the file has more than 100 YAML nodes");
}
