// The sandbox state machine's checked transitions (states are declared in sandbox_service.h).
#pragma once

#include "daemon/sandboxes/sandbox_service.h"

namespace kiln::daemon {

// creating -> running | failed | lost | deleting; running -> deleting | expired | lost;
// deleting -> deleted | lost. Finished states (deleted, expired, lost, failed) go nowhere.
bool can_transition(SandboxState from, SandboxState to);

}  // namespace kiln::daemon
