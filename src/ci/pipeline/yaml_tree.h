// A bounded YAML loader for hostile files: a small tree with positions, no aliases, anchors or tags.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ci/pipeline/source_issue.h"

namespace kiln::ci {

struct YamlEntry;

struct YamlNode {
    enum class Kind { Null, Scalar, Sequence, Map };
    Kind kind = Kind::Null;
    int line = 0;    // 1-based
    int column = 0;  // 1-based
    std::string scalar;  // Kind::Scalar: the text (an empty string for `""`)
    bool plain = false;  // Kind::Scalar: written without quotes, so `10` may be read as a number
    std::vector<YamlNode> items;                         // Kind::Sequence
    std::vector<YamlEntry> entries;  // Kind::Map, in file order
};

struct YamlEntry {
    YamlNode key;
    YamlNode value;
};

struct YamlLimits {
    std::size_t max_bytes = 256 * 1024;
    int max_depth = 16;             // nested sequences and maps
    std::size_t max_nodes = 20000;  // every scalar, key, sequence and map counts
};

// The tree of a single-document YAML file, or the first problem with its position. Refused, as a
// pipeline file never needs them and they are how YAML files attack parsers: anchors and aliases
// (the "billion laughs" expansion), explicit tags, more than one document, nesting deeper than
// `max_depth`, more nodes than `max_nodes`, bigger than `max_bytes`, NUL bytes. An empty file or
// one holding only comments is a Null node. Never throws.
struct YamlLoadResult {
    std::unique_ptr<YamlNode> root;  // null on failure
    SourceIssue issue;               // set on failure
};
YamlLoadResult load_yaml(std::string_view text, const YamlLimits& limits = {});

}  // namespace kiln::ci
