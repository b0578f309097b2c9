// JobAttempt's shards (`parallel: N`, docs/pipeline.md): the fan-out of the job's live VM after its
// fork_after step, or N fresh VMs; one thread per shard, every shard to its end, and where each
// shard's step records go among the job's.
#include <exception>
#include <functional>
#include <thread>

#include "ci/jobs/job_attempt.h"
#include "ci/jobs/job_log.h"

namespace kiln::ci {
namespace {

// The shards' threads, joined on every path out of the fan-out (a phase that throws included):
// no thread outlives the attempt's VMs or records.
class ShardThreads {
public:
    ShardThreads() = default;
    ShardThreads(const ShardThreads&) = delete;
    ShardThreads& operator=(const ShardThreads&) = delete;
    ~ShardThreads() { join(); }

    void start(std::function<void()> body) { m_threads.emplace_back(std::move(body)); }
    void join() {
        for (auto& t : m_threads)
            if (t.joinable()) t.join();
    }

private:
    std::vector<std::thread> m_threads;
};

}  // namespace

AttemptVm& JobAttempt::add_vm(int shard) {
    m_vms.push_back(std::make_unique<AttemptVm>());
    m_vms.back()->shard = shard;
    return *m_vms.back();
}

std::vector<StepRecord> JobAttempt::planned_step_records() const {
    std::vector<StepRecord> records;
    auto add = [&](size_t first, int shard) {
        for (size_t i = first; i < m_def.steps.size(); ++i) {
            StepRecord r{m_def.steps[i].name, "pending", -1, 0};
            r.shard = shard;
            records.push_back(std::move(r));
        }
    };
    if (m_shards == 1) {
        add(0, -1);
        return records;
    }
    size_t first = 0;
    if (m_fork_index) {  // the steps up to fork_after once, in the job's VM
        for (size_t i = 0; i <= *m_fork_index; ++i) records.push_back(StepRecord{m_def.steps[i].name, "pending", -1, 0});
        first = *m_fork_index + 1;
    }
    for (int shard = 0; shard < m_shards; ++shard) add(first, shard);
    return records;
}

size_t JobAttempt::record_index(int shard, size_t step) const {
    if (shard < 0) return step;
    const size_t before = m_fork_index ? *m_fork_index + 1 : 0;  // the job's own VM's records
    const size_t per_shard = m_def.steps.size() - before;
    return before + size_t(shard) * per_shard + (step - before);
}

void JobAttempt::run_shard(AttemptVm& vm, const std::function<bool()>& phases) {
    bool went_on = false;
    try {
        went_on = phases();
    } catch (const std::exception& e) {  // a thread must not throw: the attempt ends as an error
        went_on = fail(JobState::Error, "shard " + std::to_string(vm.shard) + ": " + e.what(), true);
    }
    if (!went_on) m_abandoned = true;
    remove_vm(vm);  // at once: its memory goes back to the shards still running
}

bool JobAttempt::run_forked_shards(AttemptVm& parent) {
    // The steps up to fork_after did not all pass (or the VM stopped answering): no shard runs,
    // and what those steps left is the job's results (a failed install's logs, say).
    if (!parent.passed || parent.stuck) {
        skip_pending_steps();
        return collect_results(parent);
    }
    const size_t first = *m_fork_index + 1;
    daemon::ForkRequest request;
    request.ttl_seconds = vm_ttl_seconds();
    ShardThreads threads;
    for (int shard = 0; shard < m_shards && !m_abandoned; ++shard) {
        if (m_control.stopped()) {
            stopped_by_watchdog();
            m_abandoned = true;
            break;
        }
        // The fork pauses the parent while its state streams to the child; the children forked
        // already run their steps meanwhile.
        request.metadata = vm_metadata(shard);
        auto child = m_runner.m_service.fork(m_runner.m_config.caller, parent.sandbox_id, request);
        if (!child.ok()) {
            vm_failure("forking shard " + std::to_string(shard), child.error());
            m_abandoned = true;
            break;
        }
        AttemptVm& vm = add_vm(shard);
        vm.sandbox_id = child->id;
        m_control.add_sandbox(vm.sandbox_id);
        event(vm, {{"type", "vm"}, {"sandbox", vm.sandbox_id}, {"from", "fork"}, {"create_ms", child->create_ms}});
        threads.start([this, &vm, first] {
            run_shard(vm, [&] { return lease_vm(vm) && run_steps(vm, first, m_def.steps.size()) && collect_results(vm); });
        });
    }
    // The parent's part is done once every child is forked: it goes before the shards end.
    remove_vm(parent);
    threads.join();
    skip_pending_steps();  // shards never forked
    return !ended();
}

bool JobAttempt::run_fresh_shards() {
    m_checkouts_left = m_shards;
    ShardThreads threads;
    for (int shard = 0; shard < m_shards; ++shard) {
        AttemptVm& vm = add_vm(shard);
        threads.start([this, &vm] {
            run_shard(vm, [&] {
                return start_vm(vm) && check_out(vm) && bake_on_miss(vm) && copy_needs(vm) &&
                       run_steps(vm, 0, m_def.steps.size()) && collect_results(vm);
            });
        });
    }
    threads.join();
    skip_pending_steps();
    return !ended();
}

}  // namespace kiln::ci
