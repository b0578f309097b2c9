// envd's process.Process service over the agent's kept processes (docs/agent-protocol.md): Start
// (streamed start/data/end events; the process outlives the stream),
// Connect, List, SendInput, CloseStdin, SendSignal; Update and StreamInput answer unimplemented
// (Kiln has no PTY, and the SDK does not use StreamInput).
#pragma once

#include "kilnd/e2b/envd_routes.h"

namespace kiln::daemon::e2b {

void add_process_service(http::Router& router, EnvdContext& ctx);

}  // namespace kiln::daemon::e2b
