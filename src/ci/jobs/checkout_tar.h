// CheckoutTar: a job's checkout as a tar (GitCache::checkout_tar), made on a thread of its own while
// the job's VM starts; the VM's checkout command reads it on its stdin (source()), waiting for it
// if it is not made yet. Destroying it waits for that thread and removes the tar.
#pragma once

#include <atomic>
#include <cstdint>
#include <future>
#include <mutex>
#include <optional>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "vm/agent_client.h"

namespace kiln::ci {

class GitCache;

class CheckoutTar {
public:
    // Starts making <dir>/code.tar of `sha` from the cache repository.
    CheckoutTar(GitCache& git, std::string cache_repo, std::string sha, std::string dir);
    ~CheckoutTar();
    // source() hands out a callback holding `this`.
    CheckoutTar(const CheckoutTar&) = delete;
    CheckoutTar& operator=(const CheckoutTar&) = delete;

    // Once the VM has it, the tar goes (an open fd still reads it); waits for it to be made.
    void remove();

    // The tar's path, or why it could not be made; waits for it.
    const Result<std::string>& wait();
    int64_t made_ms() const { return m_made_ms; }      // how long making it took
    int64_t waited_ms() const { return m_waited_ms; }  // how long the VM's command waited for it

    // The tar's bytes; an error if it could not be made (the command then sees a cut-off stream).
    // Each call gives a reader of its own (the VMs of a sharded job's fresh shards read it at once);
    // a reader opens the tar on its first read, so remove() must wait until every reader has read.
    vm::ByteSource source();

private:
    std::atomic<int64_t> m_made_ms{0};
    std::atomic<int64_t> m_waited_ms{0};
    std::future<Result<std::string>> m_future;
    std::once_flag m_once;
    std::optional<Result<std::string>> m_result;
};

}  // namespace kiln::ci
