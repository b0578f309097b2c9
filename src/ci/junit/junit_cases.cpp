// read_junit_cases (expat, no DTD) and the job's kept reports; see junit_cases.h.
#include "ci/junit/junit_cases.h"

#include <dirent.h>
#include <expat.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>

#include "base/file_util.h"
#include "base/sha256.h"

namespace kiln::ci {
namespace {

// Where in a <testcase> the text being read goes.
enum class TextSink { None, Outcome, SystemOut, SystemErr };

class CaseReader {
public:
    CaseReader(XML_Parser parser, const JunitCaseLimits& limits) : m_parser(parser), m_limits(limits) {}

    static void XMLCALL on_start(void* self, const XML_Char* name, const XML_Char** attributes) {
        static_cast<CaseReader*>(self)->start(name, attributes);
    }
    static void XMLCALL on_end(void* self, const XML_Char* name) { static_cast<CaseReader*>(self)->end(name); }
    static void XMLCALL on_text(void* self, const XML_Char* text, int length) {
        static_cast<CaseReader*>(self)->text(std::string_view(text, static_cast<size_t>(length)));
    }
    static void XMLCALL on_doctype(void* self, const XML_Char*, const XML_Char*, const XML_Char*, int) {
        static_cast<CaseReader*>(self)->stop("a DOCTYPE is not allowed in a JUnit report");
    }

    const std::optional<std::string>& stop_reason() const { return m_stop; }
    bool saw_root() const { return m_saw_root; }
    std::vector<JunitCase>& cases() { return m_cases; }

private:
    void stop(std::string why) {
        if (!m_stop) m_stop = std::move(why);
        XML_StopParser(m_parser, XML_FALSE);
    }

    static std::string attribute(const XML_Char** attributes, const char* name) {
        for (const XML_Char** a = attributes; a[0] && a[1]; a += 2)
            if (std::strcmp(a[0], name) == 0) return a[1];
        return "";
    }

    std::string cut(std::string s) const {
        if (s.size() > m_limits.max_text_bytes) s.resize(m_limits.max_text_bytes);
        return s;
    }

    void start(const XML_Char* name, const XML_Char** attributes) {
        if (++m_depth > m_limits.report.max_depth)
            return stop("elements nested deeper than " + std::to_string(m_limits.report.max_depth));
        if (m_depth == 1) {
            m_saw_root = true;
            if (std::strcmp(name, "testsuites") != 0 && std::strcmp(name, "testsuite") != 0)
                return stop(std::string("the root element is <") + name + ">, not <testsuites> or <testsuite>");
        }
        if (std::strcmp(name, "testsuite") == 0) {
            m_suites.push_back(attribute(attributes, "name"));
            return;
        }
        if (std::strcmp(name, "testcase") == 0) {
            if (m_case || m_cases.size() >= m_limits.max_cases) return;  // nested or past the cap: not read
            m_case.emplace();
            m_case_depth = m_depth;
            m_case->suite = m_suites.empty() ? "" : m_suites.back();
            m_case->classname = cut(attribute(attributes, "classname"));
            m_case->name = cut(attribute(attributes, "name"));
            try {
                std::string time = attribute(attributes, "time");
                double t = time.empty() ? 0 : std::stod(time);
                m_case->time_seconds = t >= 0 && t < 1e9 ? t : 0;
            } catch (const std::exception&) {
                m_case->time_seconds = 0;  // a time that is not a number is not worth refusing the report
            }
            return;
        }
        if (!m_case || m_depth != m_case_depth + 1) return;
        std::optional<JunitOutcome> outcome;
        if (std::strcmp(name, "failure") == 0) outcome = JunitOutcome::Failure;
        else if (std::strcmp(name, "error") == 0) outcome = JunitOutcome::Error;
        else if (std::strcmp(name, "skipped") == 0) outcome = JunitOutcome::Skipped;
        if (outcome) {
            // The first of them decides, as read_junit_summary counts it.
            if (m_case->outcome == JunitOutcome::Passed) {
                m_case->outcome = *outcome;
                m_case->message = cut(attribute(attributes, "message"));
                m_case->type = cut(attribute(attributes, "type"));
            }
            m_sink = TextSink::Outcome;
        } else if (std::strcmp(name, "system-out") == 0) {
            m_sink = TextSink::SystemOut;
        } else if (std::strcmp(name, "system-err") == 0) {
            m_sink = TextSink::SystemErr;
        }
    }

    void text(std::string_view t) {
        if (!m_case || m_sink == TextSink::None) return;
        std::string& into = m_sink == TextSink::Outcome ? m_failure_text : m_sink == TextSink::SystemOut ? m_out : m_err;
        size_t room = m_limits.max_text_bytes > into.size() ? m_limits.max_text_bytes - into.size() : 0;
        into.append(t.substr(0, room));
    }

    void end(const XML_Char* name) {
        if (std::strcmp(name, "testsuite") == 0 && !m_suites.empty()) m_suites.pop_back();
        if (m_case && m_depth == m_case_depth + 1) m_sink = TextSink::None;
        if (m_case && m_depth == m_case_depth) {
            std::string output = m_failure_text;
            if (!m_out.empty()) output += (output.empty() ? "" : "\n") + std::string("--- stdout ---\n") + m_out;
            if (!m_err.empty()) output += (output.empty() ? "" : "\n") + std::string("--- stderr ---\n") + m_err;
            m_case->output = std::move(output);
            m_cases.push_back(std::move(*m_case));
            m_case.reset();
            m_failure_text.clear();
            m_out.clear();
            m_err.clear();
        }
        --m_depth;
    }

    XML_Parser m_parser;
    const JunitCaseLimits& m_limits;
    int m_depth = 0;
    bool m_saw_root = false;
    std::vector<std::string> m_suites;
    std::optional<JunitCase> m_case;
    int m_case_depth = 0;
    TextSink m_sink = TextSink::None;
    std::string m_failure_text, m_out, m_err;
    std::vector<JunitCase> m_cases;
    std::optional<std::string> m_stop;
};

struct CaseParserDeleter {
    void operator()(XML_ParserStruct* parser) const { XML_ParserFree(parser); }
};

// A report's path in the checkout as one file name: anything but [A-Za-z0-9._-] becomes '_'.
std::string flat_name(const std::string& path) {
    std::string out;
    for (char c : path.substr(0, 100))
        out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '_';
    return out;
}

}  // namespace

const char* junit_outcome_name(JunitOutcome outcome) {
    switch (outcome) {
        case JunitOutcome::Passed: return "passed";
        case JunitOutcome::Failure: return "failure";
        case JunitOutcome::Error: return "error";
        case JunitOutcome::Skipped: return "skipped";
    }
    return "passed";
}

Result<std::vector<JunitCase>> read_junit_cases(std::string_view xml, const JunitCaseLimits& limits) {
    if (xml.size() > limits.report.max_bytes || xml.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
        return make_error(ErrorCode::InvalidJunit, "the report is " + std::to_string(xml.size()) + " bytes; the limit is " +
                                                       std::to_string(limits.report.max_bytes));
    std::unique_ptr<XML_ParserStruct, CaseParserDeleter> parser(XML_ParserCreate(nullptr));
    if (!parser) return make_error(ErrorCode::OutOfMemory, "cannot create an XML parser");
    CaseReader reader(parser.get(), limits);
    XML_SetUserData(parser.get(), &reader);
    XML_SetElementHandler(parser.get(), &CaseReader::on_start, &CaseReader::on_end);
    XML_SetCharacterDataHandler(parser.get(), &CaseReader::on_text);
    XML_SetStartDoctypeDeclHandler(parser.get(), &CaseReader::on_doctype);
    XML_SetParamEntityParsing(parser.get(), XML_PARAM_ENTITY_PARSING_NEVER);
    bool parsed = XML_Parse(parser.get(), xml.data(), static_cast<int>(xml.size()), XML_TRUE) == XML_STATUS_OK;
    std::string where = "line " + std::to_string(XML_GetCurrentLineNumber(parser.get())) + ", column " +
                        std::to_string(XML_GetCurrentColumnNumber(parser.get()) + 1) + ": ";
    if (reader.stop_reason()) return make_error(ErrorCode::InvalidJunit, where + *reader.stop_reason());
    if (!parsed)
        return make_error(ErrorCode::InvalidJunit,
                          where + "not well-formed XML (" + XML_ErrorString(XML_GetErrorCode(parser.get())) + ")");
    if (!reader.saw_root()) return make_error(ErrorCode::InvalidJunit, "the report has no root element");
    return std::move(reader.cases());
}

std::string junit_reports_dir(const std::string& job_dir) { return job_dir + "/junit"; }

Status keep_junit_report(const std::string& job_dir, const std::string& report_path, std::string_view xml) {
    std::string dir = junit_reports_dir(job_dir);
    TRY(make_dirs(dir, 0700));
    std::string bytes(xml);
    return write_file_atomic(dir + "/" + flat_name(report_path) + "-" + sha256_hex(bytes).substr(0, 12) + ".xml", bytes, 0600);
}

Result<std::vector<JunitCase>> read_kept_junit_cases(const std::string& job_dir, const JunitCaseLimits& limits) {
    std::vector<std::string> names;
    {
        std::string dir = junit_reports_dir(job_dir);
        std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), &::closedir);
        if (!d) return std::vector<JunitCase>{};
        while (dirent* e = ::readdir(d.get())) {
            std::string name = e->d_name;
            if (name.size() > 4 && name.compare(name.size() - 4, 4, ".xml") == 0) names.push_back(dir + "/" + name);
        }
    }
    std::sort(names.begin(), names.end());
    std::vector<JunitCase> all;
    for (const auto& path : names) {
        auto xml = read_file(path, limits.report.max_bytes);
        if (!xml.ok()) continue;  // a report the job could read once; a file gone since is skipped
        auto cases = read_junit_cases(*xml, limits);
        if (!cases.ok()) continue;
        for (auto& c : *cases) {
            if (all.size() >= limits.max_cases) break;
            all.push_back(std::move(c));
        }
    }
    return all;
}

}  // namespace kiln::ci
