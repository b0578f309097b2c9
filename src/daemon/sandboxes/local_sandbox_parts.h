// The parts of LocalSandboxService's live set (local_sandbox_service.h): a VM with its network,
// a sandbox's entry, and a lease. Private to the service's own files (local_sandbox_service.cpp,
// pause_resume.cpp).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>

#include "daemon/sandboxes/local_sandbox_service.h"
#include "vm/vm.h"

namespace kiln::daemon {

// Owns a VM and its network; the last holder (the live set or a lease) destroys both, the VM
// first (QEMU holds the tap that keeps the namespace alive), the network in the background
// (NetworkRemover: the caller does not wait for the kernel's veth and namespace teardown).
struct LocalSandboxService::VmBox {
    std::unique_ptr<vm::Vm> vm;
    std::unique_ptr<net::SandboxNetwork> network;  // null without a NIC
    std::shared_ptr<net::NetworkRemover> network_remover;
    std::atomic<bool> keep{false};  // shutdown with on_shutdown=keep: leave QEMU running
    ~VmBox() {
        if (keep) {  // deliberately not destroyed: QEMU (and its namespace) outlive kilnd
            (void)vm.release();
            (void)network.release();
            return;
        }
        if (vm) vm->destroy();
        if (network) network_remover->remove_later(std::move(network));
    }
};

struct LocalSandboxService::Entry {
    SandboxRecord record;           // guarded by the service's m_mutex
    int64_t ttl_deadline_ms = 0;    // record.info.expires_at_ms on the monotonic clock; guarded by m_mutex
    std::shared_ptr<VmBox> box;     // null while creating; guarded by m_mutex
    bool cancelled = false;         // removed while creating; guarded by m_mutex
    std::mutex op_mutex;            // one snapshot or fork at a time per sandbox
};

class LocalSandboxService::Lease final : public SandboxLease {
public:
    Lease(SandboxInfo info, std::shared_ptr<VmBox> box) : m_info(std::move(info)), m_box(std::move(box)) {}
    const SandboxInfo& info() const override { return m_info; }
    vm::AgentClient& agent() override { return m_box->vm->agent(); }

private:
    SandboxInfo m_info;
    std::shared_ptr<VmBox> m_box;
};

}  // namespace kiln::daemon
