// Helpers for the benchmarks that drive VMs through the vm library.
#pragma once

#include "bench_util.h"
#include "vm/vm.h"

namespace kiln::bench {

// `true` run in the guest through the agent, or exit(1) saying why.
inline void exec_true(vm::Vm& vm) {
    proto::ExecRequest req;
    req.argv = {"true"};
    must(vm.agent().exec(req), "exec true");
}

}  // namespace kiln::bench
