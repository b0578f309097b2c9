// The sandbox lifecycle's one table of allowed moves (states are declared in sandbox_service.h;
// SandboxInfo::move_to follows this table):
//   creating -> running | failed | lost | deleting | deleted
//   running  -> deleting | expired | lost | pausing
//   pausing  -> paused | running (the pause failed, the VM runs on) | deleting | lost
//   paused   -> resuming | deleted (its snapshot is all there is: no deleting phase) | lost
//               (its snapshot is missing at start)
//   resuming -> running | paused (the restore failed: the snapshot is intact) | deleted (a delete
//               that came during the restore, as for creating) | deleting | lost
//   deleting -> deleted | lost
// deleted, expired, lost and failed are final: they go nowhere.
// (docs/pause.md has the pause and resume moves.)
#pragma once

#include <string>

#include "daemon/sandboxes/sandbox_service.h"

namespace kiln::daemon {

bool can_transition(SandboxState from, SandboxState to);

// Logs a move the table forbids, as the bug it is (error level: the sandbox, from, to).
void log_forbidden_move(const std::string& sandbox_id, SandboxState from, SandboxState to);

}  // namespace kiln::daemon
