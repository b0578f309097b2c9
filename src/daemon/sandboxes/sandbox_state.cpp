// Sandbox states: names, parsing, which are live (declared in sandboxes/sandbox_service.h), and
// the checked moves between them (sandbox_state.h).
#include "daemon/sandboxes/sandbox_service.h"

namespace kiln::daemon {

const char* state_name(SandboxState state) {
    switch (state) {
        case SandboxState::Creating: return "creating";
        case SandboxState::Running: return "running";
        case SandboxState::Pausing: return "pausing";
        case SandboxState::Paused: return "paused";
        case SandboxState::Resuming: return "resuming";
        case SandboxState::Deleting: return "deleting";
        case SandboxState::Deleted: return "deleted";
        case SandboxState::Expired: return "expired";
        case SandboxState::Lost: return "lost";
        case SandboxState::Failed: return "failed";
    }
    return "lost";
}

std::optional<SandboxState> parse_state(std::string_view name) {
    for (auto s : kAllSandboxStates)
        if (name == state_name(s)) return s;
    return std::nullopt;
}

bool is_live(SandboxState state) {
    return state == SandboxState::Creating || state == SandboxState::Running || state == SandboxState::Pausing ||
           state == SandboxState::Resuming;
}

bool is_ended(SandboxState state) {
    return state == SandboxState::Deleted || state == SandboxState::Expired || state == SandboxState::Lost ||
           state == SandboxState::Failed;
}

}  // namespace kiln::daemon

#include "daemon/sandboxes/sandbox_state.h"

#include "base/json_log.h"

namespace kiln::daemon {

bool can_transition(SandboxState from, SandboxState to) {
    using S = SandboxState;
    switch (from) {
        // creating -> deleted: a delete that comes while the create is restoring the VM only marks
        // the create cancelled (the create's thread owns the VM until the restore returns, and no
        // lease can reach a creating sandbox); the create then destroys the VM itself and records
        // deleted. There is no deleting phase to show: nothing else holds the VM. kilnd stopping
        // mid-create ends a create the same way. (creating -> deleting is shutdown's path for a
        // create still in flight when its wait for creates ends.)
        case S::Creating:
            return to == S::Running || to == S::Failed || to == S::Lost || to == S::Deleting || to == S::Deleted;
        case S::Running: return to == S::Deleting || to == S::Expired || to == S::Lost || to == S::Pausing;
        case S::Pausing: return to == S::Paused || to == S::Running || to == S::Deleting || to == S::Lost;
        // paused -> lost: its snapshot went missing (the reconcile finds no directory).
        case S::Paused: return to == S::Resuming || to == S::Deleted || to == S::Lost;
        // resuming -> deleting: shutdown's path for a resume still in flight, as for creating.
        case S::Resuming:
            return to == S::Running || to == S::Paused || to == S::Deleted || to == S::Deleting || to == S::Lost;
        case S::Deleting: return to == S::Deleted || to == S::Lost;
        case S::Deleted:
        case S::Expired:
        case S::Lost:
        case S::Failed: return false;
    }
    return false;
}

void log_forbidden_move(const std::string& sandbox_id, SandboxState from, SandboxState to) {
    log::error("sandbox: forbidden state change refused (a bug)",
               {{"sandbox", sandbox_id}, {"from", state_name(from)}, {"to", state_name(to)}});
}

bool SandboxInfo::move_to(SandboxState to) {
    if (!can_transition(m_state, to)) {
        log_forbidden_move(id, m_state, to);
        return false;
    }
    m_state = to;
    return true;
}

SandboxInfo SandboxInfo::from_row(SandboxState state, SandboxInfo fields) {
    fields.m_state = state;
    return fields;
}

}  // namespace kiln::daemon
