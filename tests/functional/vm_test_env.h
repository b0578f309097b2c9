// Shared set-up for functional tests: real kernel, image and QEMU, skipped (or failed when CI=true) if absent.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "vm/guest_artifacts.h"
#include "vm/qemu_version.h"
#include "vm/vm.h"

namespace kiln::test {

inline bool in_ci() {
    const char* ci = std::getenv("CI");
    return ci && std::string(ci) == "true";
}

// The image the functional tests boot: $KILN_TEST_IMAGE or "tiny".
inline std::string test_image() {
    const char* v = std::getenv("KILN_TEST_IMAGE");
    return v && *v ? v : "tiny";
}

// Why real VMs cannot run here, or nothing.
inline std::optional<std::string> vm_unavailable_reason() {
    if (auto q = vm::qemu_info(); !q.ok()) return "QEMU: " + q.error().message;
    if (auto k = vm::find_kernel(); !k.ok()) return "kernel: " + k.error().message;
    if (auto i = vm::find_image(test_image()); !i.ok()) return "image: " + i.error().message;
    return std::nullopt;
}

inline vm::BootOptions test_boot_options() {
    vm::BootOptions options;
    options.image = test_image();
    options.boot_timeout = Millis(60000);
    return options;
}

// A VM shared by the tests of one suite (boots cost about a second under TCG).
class SharedVm {
public:
    vm::Vm* get() {
        if (!m_vm && m_failed.empty()) {
            auto booted = vm::Vm::boot(test_boot_options());
            if (booted.ok()) m_vm = std::move(*booted);
            else m_failed = booted.error().to_string();
        }
        return m_vm.get();
    }
    // Replaces a VM that a test broke.
    void reset() { m_vm.reset(); }
    const std::string& failure() const { return m_failed; }

private:
    std::unique_ptr<vm::Vm> m_vm;
    std::string m_failed;
};

}  // namespace kiln::test

// Skips the test when VMs are unavailable; fails it instead under CI=true.
#define KILN_REQUIRE_VM()                                                             \
    do {                                                                              \
        if (auto why_ = ::kiln::test::vm_unavailable_reason()) {                      \
            if (::kiln::test::in_ci()) FAIL() << "VM tests cannot run: " << *why_;    \
            GTEST_SKIP() << "VM tests cannot run: " << *why_;                         \
        }                                                                             \
    } while (0)

namespace kiln::test {

// A fixture whose tests share one booted VM per suite. Derive, and define the static member with
// KILN_SHARED_VM_SUITE(Name).
class SharedVmTest : public ::testing::Test {
protected:
    virtual SharedVm& shared() = 0;
    void SetUp() override {
        KILN_REQUIRE_VM();
        m_vm = shared().get();
        ASSERT_NE(m_vm, nullptr) << "boot failed: " << shared().failure();
        if (!m_vm->agent().alive()) {  // a previous test broke it
            shared().reset();
            m_vm = shared().get();
            ASSERT_NE(m_vm, nullptr) << "boot failed: " << shared().failure();
        }
    }
    vm::AgentClient& agent() { return m_vm->agent(); }

    // Runs a shell command and returns its collected output; fails the test on a transport error.
    vm::ExecOutput sh(const std::string& command, uint64_t timeout_ms = 60000) {
        proto::ExecRequest request;
        request.shell = command;
        request.timeout_ms = timeout_ms;
        auto out = agent().exec_collect(request);
        EXPECT_TRUE(out.ok()) << command << ": " << out.error().to_string();
        return out.ok() ? *out : vm::ExecOutput{};
    }

    vm::Vm* m_vm = nullptr;
};

}  // namespace kiln::test

#define KILN_SHARED_VM_SUITE(Name)                                      \
    class Name : public ::kiln::test::SharedVmTest {                    \
    protected:                                                          \
        static ::kiln::test::SharedVm s_shared;                         \
        ::kiln::test::SharedVm& shared() override { return s_shared; }  \
        static void TearDownTestSuite() { s_shared.reset(); }           \
    };                                                                  \
    ::kiln::test::SharedVm Name::s_shared
