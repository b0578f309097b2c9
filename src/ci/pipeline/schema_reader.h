// SchemaReader: typed values read out of a YamlNode tree, every problem collected with its position
// and the path of the field ("jobs.e2e.steps[1].timeout_seconds"). The `.kiln.yml` readers share it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ci/pipeline/source_issue.h"
#include "ci/pipeline/yaml_tree.h"

namespace kiln::ci {

// Letters, digits and _, not starting with a digit (env names, secret names, matrix axes).
bool is_env_name(const std::string& s);
bool has_control_char(const std::string& s, bool allow_newlines);
// Why `path` is not a safe relative path inside the checkout, or "" when it is.
std::string relative_path_problem(const std::string& path);
// "a, b, c"; past `max` names, "a, b, … (7 more)": an error message stays readable.
std::string join_names(const std::vector<std::string>& names, std::size_t max = 16);
// `path.key`, or `key` at the top level (path "").
std::string field_path(const std::string& path, const std::string& key);

class SchemaReader {
public:
    static constexpr std::size_t kMaxIssues = 50;  // past this the file is not worth reading further

    void issue(const YamlNode& at, std::string message);
    std::vector<SourceIssue>& issues() { return m_issues; }
    bool has_issues() const { return !m_issues.empty(); }

    static const char* kind_name(const YamlNode& node);

    // A map's entries by key, checking each key is a known, unique string. Unknown keys are
    // errors: a misspelt `timeout_secnods` silently ignored would be a job without its cap.
    // `explain_unknown`, when set, may give the message for an unknown key (else "" and the expected
    // keys are listed): a key that belongs elsewhere is told where.
    using UnknownKeyMessage = std::function<std::string(const std::string& where, const std::string& key)>;
    std::vector<std::pair<std::string, const YamlNode*>> keyed(const YamlNode& map, const std::string& path,
                                                               const std::vector<std::string>& known,
                                                               const UnknownKeyMessage& explain_unknown = {});

    bool expect_kind(const YamlNode& node, YamlNode::Kind kind, const std::string& path, const char* what);

    std::optional<std::string> string_value(const YamlNode& node, const std::string& path, std::size_t max_bytes,
                                            bool allow_empty = false);

    // A whole number of seconds in [1, kMaxTimeoutSeconds], written as plain digits (not "10",
    // 1e3, 0x10 or 10.5).
    std::optional<std::uint32_t> seconds_value(const YamlNode& node, const std::string& path);

    // A whole number written as plain digits (not "4", 4.0 or 0x4), in [min, max].
    std::optional<std::uint32_t> count_value(const YamlNode& node, const std::string& path, std::uint32_t min,
                                             std::uint32_t max);

    // A list or map of `count` entries has 1 to `max` of them: "steps must have at least one step",
    // "steps has 65 steps; the limit is 64" (`one` and `many` name an entry).
    bool count_within(const YamlNode& node, const std::string& path, std::size_t count, std::size_t max,
                      const char* one, const char* many);

    std::map<std::string, std::string> env_value(const YamlNode& node, const std::string& path);

    // A list of strings, each checked by `check` (which returns why it is wrong, or "").
    template <typename Check>
    std::vector<std::string> string_list(const YamlNode& node, const std::string& path, std::size_t max_count,
                                         std::size_t max_bytes, Check check) {
        std::vector<std::string> out;
        if (!expect_kind(node, YamlNode::Kind::Sequence, path, "a list")) return out;
        if (node.items.size() > max_count) {
            issue(node, path + " has " + std::to_string(node.items.size()) + " entries; the limit is " +
                            std::to_string(max_count));
            return out;
        }
        for (std::size_t i = 0; i < node.items.size(); ++i) {
            std::string where = path + "[" + std::to_string(i) + "]";
            auto text = string_value(node.items[i], where, max_bytes);
            if (!text) continue;
            if (std::string problem = check(*text); !problem.empty()) {
                issue(node.items[i], where + " " + problem);
                continue;
            }
            if (std::find(out.begin(), out.end(), *text) != out.end()) {
                issue(node.items[i], where + " `" + *text + "` is listed twice");
                continue;
            }
            out.push_back(std::move(*text));
        }
        return out;
    }

private:
    std::vector<SourceIssue> m_issues;
};

}  // namespace kiln::ci
