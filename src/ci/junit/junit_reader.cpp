// read_junit_summary: expat with no DTD (so no entities), counting <testcase> outcomes or suite attributes.
#include <expat.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ci/junit/junit_summary.h"

namespace kiln::ci {
namespace {

constexpr std::uint64_t kMaxCount = 1'000'000'000'000ULL;  // more tests than anyone runs; bounds sums too

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) {
    return a > std::numeric_limits<std::uint64_t>::max() - b ? std::numeric_limits<std::uint64_t>::max() : a + b;
}

enum class Outcome { Passed, Failure, Error, Skipped };

struct OpenTestcase {
    int depth;
    Outcome outcome;
};

class Reader {
public:
    Reader(XML_Parser parser, const JunitLimits& limits) : m_parser(parser), m_limits(limits) {}

    static void XMLCALL on_start(void* self, const XML_Char* name, const XML_Char** attributes) {
        static_cast<Reader*>(self)->start(name, attributes);
    }
    static void XMLCALL on_end(void* self, const XML_Char*) { static_cast<Reader*>(self)->end(); }
    // A DOCTYPE is where entities are declared; JUnit reports never need one, so none is read.
    static void XMLCALL on_doctype(void* self, const XML_Char*, const XML_Char*, const XML_Char*, int) {
        static_cast<Reader*>(self)->fail("a DOCTYPE is not allowed in a JUnit report");
    }

    Result<JunitSummary> finish() const {
        if (!m_saw_root) return make_error(ErrorCode::InvalidJunit, "the report has no root element");
        if (m_counted_testcases) return m_counted;
        // A summary-only report: the root's own counts, or else its direct <testsuite> children's.
        const std::optional<Error>& error = m_root_has_tests ? m_root_error : m_children_error;
        if (error) return *error;
        return m_root_has_tests ? m_root_counts : m_children_counts;
    }

    const std::optional<Error>& stop_error() const { return m_stop_error; }

private:
    void fail(std::string message) {
        if (!m_stop_error) m_stop_error = make_error(ErrorCode::InvalidJunit, position() + message);
        XML_StopParser(m_parser, XML_FALSE);
    }

    std::string position() const {
        return "line " + std::to_string(XML_GetCurrentLineNumber(m_parser)) + ", column " +
               std::to_string(XML_GetCurrentColumnNumber(m_parser) + 1) + ": ";
    }

    static const XML_Char* attribute(const XML_Char** attributes, const char* name) {
        for (const XML_Char** a = attributes; a[0] && a[1]; a += 2)
            if (std::strcmp(a[0], name) == 0) return a[1];
        return nullptr;
    }

    // The suite counts of one element, or an Error naming the attribute that is not a count.
    Result<JunitSummary> suite_counts(const XML_Char** attributes) const {
        JunitSummary counts;
        struct Field {
            const char* name;
            std::uint64_t* out;
        };
        const char* skipped_name = attribute(attributes, "skipped") ? "skipped" : "disabled";
        for (Field field : {Field{"tests", &counts.tests}, Field{"failures", &counts.failures},
                            Field{"errors", &counts.errors}, Field{skipped_name, &counts.skipped}}) {
            const XML_Char* text = attribute(attributes, field.name);
            if (!text) continue;
            std::size_t length = std::strlen(text);
            bool digits = length > 0 && length <= 13 && std::all_of(text, text + length, [](char c) { return c >= '0' && c <= '9'; });
            std::uint64_t value = digits ? std::stoull(text) : 0;
            if (!digits || value > kMaxCount) {
                std::string shown(text, std::min<std::size_t>(length, 32));
                return make_error(ErrorCode::InvalidJunit, position() + "attribute " + field.name + "=\"" + shown +
                                                       "\" is not a whole number of tests");
            }
            *field.out = value;
        }
        return counts;
    }

    void start(const XML_Char* name, const XML_Char** attributes) {
        if (++m_depth > m_limits.max_depth) return fail("elements nested deeper than " + std::to_string(m_limits.max_depth));
        bool is_suites = std::strcmp(name, "testsuites") == 0;
        bool is_suite = std::strcmp(name, "testsuite") == 0;
        if (m_depth == 1) {
            m_saw_root = true;
            m_root_is_suites = is_suites;
            if (!is_suites && !is_suite)
                return fail(std::string("the root element is <") + name + ">, not <testsuites> or <testsuite>");
            m_root_has_tests = is_suite || attribute(attributes, "tests");
            if (m_root_has_tests) {
                auto counts = suite_counts(attributes);
                if (counts) m_root_counts = *counts;
                else m_root_error = counts.error();
            }
        } else if (m_depth == 2 && m_root_is_suites && is_suite && !m_children_error) {
            auto counts = suite_counts(attributes);
            if (!counts) {
                m_children_error = counts.error();
            } else {
                m_children_counts += *counts;
            }
        }
        if (std::strcmp(name, "testcase") == 0) {
            m_open.push_back(OpenTestcase{m_depth, Outcome::Passed});
            m_counted_testcases = true;
            return;
        }
        // The first <failure>, <error> or <skipped> directly inside a testcase decides its outcome.
        if (!m_open.empty() && m_open.back().depth == m_depth - 1 && m_open.back().outcome == Outcome::Passed) {
            if (std::strcmp(name, "error") == 0) m_open.back().outcome = Outcome::Error;
            else if (std::strcmp(name, "failure") == 0) m_open.back().outcome = Outcome::Failure;
            else if (std::strcmp(name, "skipped") == 0) m_open.back().outcome = Outcome::Skipped;
        }
    }

    void end() {
        if (!m_open.empty() && m_open.back().depth == m_depth) {
            JunitSummary one;
            one.tests = 1;
            switch (m_open.back().outcome) {
                case Outcome::Passed: break;
                case Outcome::Failure: one.failures = 1; break;
                case Outcome::Error: one.errors = 1; break;
                case Outcome::Skipped: one.skipped = 1; break;
            }
            m_counted += one;
            m_open.pop_back();
        }
        --m_depth;
    }

    XML_Parser m_parser;
    const JunitLimits& m_limits;
    int m_depth = 0;
    bool m_saw_root = false;
    bool m_root_is_suites = false;
    bool m_root_has_tests = false;
    bool m_counted_testcases = false;
    std::vector<OpenTestcase> m_open;
    JunitSummary m_counted;
    JunitSummary m_root_counts;
    JunitSummary m_children_counts;
    std::optional<Error> m_root_error;
    std::optional<Error> m_children_error;
    std::optional<Error> m_stop_error;
};

// Owns an expat parser.
struct ParserDeleter {
    void operator()(XML_ParserStruct* parser) const { XML_ParserFree(parser); }
};

}  // namespace

JunitSummary& JunitSummary::operator+=(const JunitSummary& other) {
    tests = saturating_add(tests, other.tests);
    failures = saturating_add(failures, other.failures);
    errors = saturating_add(errors, other.errors);
    skipped = saturating_add(skipped, other.skipped);
    return *this;
}

Result<JunitSummary> read_junit_summary(std::string_view xml, const JunitLimits& limits) {
    if (xml.size() > limits.max_bytes || xml.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
        return make_error(ErrorCode::InvalidJunit, "the report is " + std::to_string(xml.size()) + " bytes; the limit is " +
                                               std::to_string(limits.max_bytes));
    std::unique_ptr<XML_ParserStruct, ParserDeleter> parser(XML_ParserCreate(nullptr));
    if (!parser) return make_error(ErrorCode::OutOfMemory, "cannot create an XML parser");
    Reader reader(parser.get(), limits);
    XML_SetUserData(parser.get(), &reader);
    XML_SetElementHandler(parser.get(), &Reader::on_start, &Reader::on_end);
    XML_SetStartDoctypeDeclHandler(parser.get(), &Reader::on_doctype);
    XML_SetParamEntityParsing(parser.get(), XML_PARAM_ENTITY_PARSING_NEVER);
    if (XML_Parse(parser.get(), xml.data(), static_cast<int>(xml.size()), XML_TRUE) != XML_STATUS_OK) {
        if (reader.stop_error()) return *reader.stop_error();
        return make_error(ErrorCode::InvalidJunit,
                          "line " + std::to_string(XML_GetCurrentLineNumber(parser.get())) + ", column " +
                              std::to_string(XML_GetCurrentColumnNumber(parser.get()) + 1) + ": not well-formed XML (" +
                              XML_ErrorString(XML_GetErrorCode(parser.get())) + ")");
    }
    return reader.finish();
}

}  // namespace kiln::ci
