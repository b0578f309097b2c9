// A temporary directory for kilnd's unit tests, removed at the end of the test.
#pragma once

#include <cstdlib>
#include <string>

#include "base/file_util.h"

namespace kiln::test {

class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/kilnd-test-XXXXXX";
        const char* made = ::mkdtemp(tmpl);
        m_path = made ? made : "";
    }
    ~TempDir() { (void)remove_tree(m_path); }
    const std::string& path() const { return m_path; }

private:
    std::string m_path;
};

}  // namespace kiln::test
