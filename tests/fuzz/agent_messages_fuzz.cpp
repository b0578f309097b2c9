// libFuzzer target: every agent request parser must reject or accept any payload without crashing.
#include <cstddef>
#include <cstdint>
#include <string>

#include "proto/messages.h"

using namespace kiln::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string payload(reinterpret_cast<const char*>(data), size);
    (void)parse_error_body(payload);
    auto j = parse_json_object(payload);
    if (!j.ok()) return 0;
    (void)parse_ping_result(*j);
    (void)parse_init_request(*j);
    (void)parse_exec_request(*j);
    (void)parse_exec_result(*j);
    (void)parse_path_request(*j);
    (void)parse_write_request(*j);
    (void)parse_mkdir_request(*j);
    (void)parse_remove_request(*j);
    (void)parse_file_info(*j);
    (void)parse_process_info(*j);
    (void)parse_procs_result(*j);
    (void)parse_pid_request(*j);
    (void)parse_signal_request(*j);
    (void)parse_input_request(*j);
    (void)parse_list_request(*j);
    (void)parse_move_request(*j);
    (void)parse_watch_request(*j);
    // The host parses every watch event Data frame a (hostile) agent sends.
    (void)parse_watch_event(*j);
    return 0;
}
