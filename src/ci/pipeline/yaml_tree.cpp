// load_yaml: yaml-cpp's event parser feeding a bounded tree; every refusal is thrown at its event.
#include "ci/pipeline/yaml_tree.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <exception>
#include <new>
#include <optional>
#include <sstream>

namespace kiln::ci {
namespace {

// Thrown from inside the event handler: unwinding out of yaml-cpp's recursive descent is the only
// way to stop it early, which is the point (a deep or huge file is refused at the event that
// crosses the limit, long before yaml-cpp's own 2000-level recursion guard).
struct Refusal {
    SourceIssue issue;
};

[[noreturn]] void refuse(const YAML::Mark& mark, std::string message) {
    throw Refusal{SourceIssue{mark.line + 1, mark.column + 1, std::move(message)}};
}

class TreeBuilder final : public YAML::EventHandler {
public:
    explicit TreeBuilder(const YamlLimits& limits) : m_limits(limits) {}

    std::unique_ptr<YamlNode> take_root() { return std::move(m_root); }
    bool has_root() const { return m_root != nullptr; }

    void OnDocumentStart(const YAML::Mark&) override {}
    void OnDocumentEnd() override {}

    void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
        check_common(mark, anchor, "?");
        add(make_node(YamlNode::Kind::Null, mark));
    }

    void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
        refuse(mark, "YAML aliases (*name) are not allowed in a pipeline file");
    }

    void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  const std::string& value) override {
        check_common(mark, anchor, tag);
        YamlNode node = make_node(YamlNode::Kind::Scalar, mark);
        node.scalar = value;
        node.plain = tag == "?";  // yaml-cpp tags plain scalars "?" and quoted or block ones "!"
        add(std::move(node));
    }

    void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                         YAML::EmitterStyle::value) override {
        open(mark, tag, anchor, YamlNode::Kind::Sequence);
    }
    void OnSequenceEnd() override { close(); }

    void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                    YAML::EmitterStyle::value) override {
        open(mark, tag, anchor, YamlNode::Kind::Map);
    }
    void OnMapEnd() override { close(); }

    void OnAnchor(const YAML::Mark& mark, const std::string&) override { refuse_anchor(mark); }

private:
    struct Frame {
        YamlNode node;
        std::optional<YamlNode> pending_key;  // a map's key, waiting for its value
    };

    [[noreturn]] static void refuse_anchor(const YAML::Mark& mark) {
        refuse(mark, "YAML anchors (&name) are not allowed in a pipeline file");
    }

    void check_common(const YAML::Mark& mark, YAML::anchor_t anchor, const std::string& tag) {
        if (anchor != YAML::NullAnchor) refuse_anchor(mark);
        if (!tag.empty() && tag != "?" && tag != "!")
            refuse(mark, "YAML tags (" + tag + ") are not allowed in a pipeline file");
        if (++m_nodes > m_limits.max_nodes)
            refuse(mark, "the file has more than " + std::to_string(m_limits.max_nodes) + " YAML nodes");
    }

    YamlNode make_node(YamlNode::Kind kind, const YAML::Mark& mark) const {
        YamlNode node;
        node.kind = kind;
        node.line = mark.line + 1;
        node.column = mark.column + 1;
        return node;
    }

    void open(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor, YamlNode::Kind kind) {
        check_common(mark, anchor, tag);
        if (!m_stack.empty() && m_stack.back().node.kind == YamlNode::Kind::Map && !m_stack.back().pending_key)
            refuse(mark, "a key must be a plain string, not a list or a map");
        if (static_cast<int>(m_stack.size()) + 1 > m_limits.max_depth)
            refuse(mark, "nesting deeper than " + std::to_string(m_limits.max_depth) + " levels");
        m_stack.push_back(Frame{make_node(kind, mark), std::nullopt});
    }

    void close() {
        Frame frame = std::move(m_stack.back());
        m_stack.pop_back();
        add(std::move(frame.node));
    }

    void add(YamlNode node) {
        if (m_stack.empty()) {
            if (m_root)
                throw Refusal{SourceIssue{node.line, node.column,
                                          "more than one YAML document (`---`); a pipeline file has one"}};
            m_root = std::make_unique<YamlNode>(std::move(node));
            return;
        }
        Frame& top = m_stack.back();
        if (top.node.kind == YamlNode::Kind::Sequence) {
            top.node.items.push_back(std::move(node));
        } else if (!top.pending_key) {
            top.pending_key = std::move(node);
        } else {
            // yaml-cpp places an empty value (`key:` and nothing) where the next token starts,
            // often the next line; the key's own place is where a reader looks.
            if (node.kind == YamlNode::Kind::Null && top.pending_key->line > 0) {
                node.line = top.pending_key->line;
                node.column = top.pending_key->column;
            }
            top.node.entries.push_back(YamlEntry{std::move(*top.pending_key), std::move(node)});
            top.pending_key.reset();
        }
    }

    const YamlLimits& m_limits;
    std::vector<Frame> m_stack;
    std::unique_ptr<YamlNode> m_root;
    std::size_t m_nodes = 0;
};

SourceIssue whole_file_issue(std::string message) { return SourceIssue{0, 0, std::move(message)}; }

}  // namespace

YamlLoadResult load_yaml(std::string_view text, const YamlLimits& limits) {
    YamlLoadResult result;
    if (text.size() > limits.max_bytes) {
        result.issue = whole_file_issue("the file is " + std::to_string(text.size()) + " bytes; the limit is " +
                                        std::to_string(limits.max_bytes));
        return result;
    }
    if (auto nul = text.find('\0'); nul != std::string_view::npos) {
        int line = 1;
        for (std::size_t i = 0; i < nul; ++i) line += text[i] == '\n';
        result.issue = SourceIssue{line, 0, "the file contains a NUL byte"};
        return result;
    }
    try {
        std::istringstream in{std::string(text)};
        YAML::Parser parser(in);
        TreeBuilder builder(limits);
        if (parser.HandleNextDocument(builder) && parser.HandleNextDocument(builder))
            throw Refusal{whole_file_issue("more than one YAML document (`---`); a pipeline file has one")};
        result.root = builder.has_root() ? builder.take_root() : std::make_unique<YamlNode>();
        if (result.root->line == 0) result.root->line = result.root->column = 1;
    } catch (const Refusal& refusal) {
        result.root.reset();
        result.issue = refusal.issue;
    } catch (const YAML::Exception& e) {
        result.root.reset();
        int line = e.mark.is_null() ? 0 : e.mark.line + 1;
        int column = e.mark.is_null() ? 0 : e.mark.column + 1;
        result.issue = SourceIssue{line, column, "invalid YAML: " + e.msg};
    } catch (const std::bad_alloc&) {
        result.root.reset();
        result.issue = whole_file_issue("out of memory while reading the YAML");
    } catch (const std::exception& e) {
        result.root.reset();
        result.issue = whole_file_issue(std::string("invalid YAML: ") + e.what());
    }
    return result;
}

}  // namespace kiln::ci
