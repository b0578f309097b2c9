// Sandbox states: names, parsing and which are live (declared in sandboxes/sandbox_service.h).
#include "daemon/sandboxes/sandbox_service.h"

namespace kiln::daemon {

const char* state_name(SandboxState state) {
    switch (state) {
        case SandboxState::Creating: return "creating";
        case SandboxState::Running: return "running";
        case SandboxState::Deleting: return "deleting";
        case SandboxState::Deleted: return "deleted";
        case SandboxState::Expired: return "expired";
        case SandboxState::Lost: return "lost";
        case SandboxState::Failed: return "failed";
    }
    return "lost";
}

std::optional<SandboxState> parse_state(std::string_view name) {
    for (auto s : {SandboxState::Creating, SandboxState::Running, SandboxState::Deleting, SandboxState::Deleted,
                   SandboxState::Expired, SandboxState::Lost, SandboxState::Failed}) {
        if (name == state_name(s)) return s;
    }
    return std::nullopt;
}

bool is_live(SandboxState state) { return state == SandboxState::Creating || state == SandboxState::Running; }

}  // namespace kiln::daemon

#include "daemon/sandboxes/sandbox_state.h"

namespace kiln::daemon {

bool can_transition(SandboxState from, SandboxState to) {
    using S = SandboxState;
    switch (from) {
        case S::Creating: return to == S::Running || to == S::Failed || to == S::Lost || to == S::Deleting;
        case S::Running: return to == S::Deleting || to == S::Expired || to == S::Lost;
        case S::Deleting: return to == S::Deleted || to == S::Lost;
        default: return false;
    }
}

}  // namespace kiln::daemon
