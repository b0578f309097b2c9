// SandboxService: the one owner of kilnd's sandboxes (their VMs and records), snapshots and
// templates. The HTTP layer (src/kilnd/http) calls only this; nothing else touches a Vm.
// Thread-safe: every method may be called from any HTTP worker thread at once.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "daemon/auth/scope.h"
#include "daemon/net/network_policy.h"

namespace kiln::vm {
class Vm;
class AgentClient;
}  // namespace kiln::vm

namespace kiln::daemon {

// The error codes every method returns are the API's own (ErrorCode::Unauthorized, NotFound,
// TemplateNotFound, InvalidArgument, SandboxNotRunning, Conflict, QuotaExceeded, Unavailable,
// Internal); daemon/api_error.h gives their HTTP statuses, and those of the VM and agent codes
// that pass through.

// Who is calling: the token that authenticated the request. Sandboxes and snapshots belong to
// the token that created them; any other token gets not_found.
// A caller outside a route's scope gets forbidden (403); admin sees every token's objects.
struct Caller {
    int64_t token_id = 0;
    std::string token_name;
    ScopeSet scopes = 0;
    TokenQuota quota;  // the token's limits with kilnd's defaults filled in; unset: unlimited

    bool has(Scope scope) const { return holds(scopes, scope); }
    bool is_admin() const { return (scopes & static_cast<uint32_t>(Scope::Admin)) != 0; }
    // Owns the object, or may act on everyone's.
    bool may_touch(int64_t owner_token_id) const { return owner_token_id == token_id || is_admin(); }
};

// creating -> running -> deleting -> deleted; running -> expired (TTL); creating|running -> lost
// (VM died, or kilnd restarted without it); creating -> failed; creating -> deleted (a delete
// that came while it was being created); running -> pausing -> paused -> resuming -> running
// (docs/pause.md: a paused sandbox has no VM, only its private snapshot). The one table of
// allowed moves is can_transition (sandbox_state.h); SandboxInfo::move_to follows it.
enum class SandboxState { Creating, Running, Pausing, Paused, Resuming, Deleting, Deleted, Expired, Lost, Failed };
inline constexpr SandboxState kAllSandboxStates[] = {SandboxState::Creating, SandboxState::Running, SandboxState::Pausing,
                                                     SandboxState::Paused,   SandboxState::Resuming, SandboxState::Deleting,
                                                     SandboxState::Deleted,  SandboxState::Expired, SandboxState::Lost,
                                                     SandboxState::Failed};
const char* state_name(SandboxState state);
std::optional<SandboxState> parse_state(std::string_view name);
// Holds a VM on its host, or is making one: creating, running, pausing, resuming. These count
// against the host's and the token's limits of live sandboxes; a paused one does not.
bool is_live(SandboxState state);
// Finished for good: deleted, expired, lost, failed. A paused sandbox is neither live nor ended.
bool is_ended(SandboxState state);

using Labels = std::map<std::string, std::string>;

// The record of one sandbox, as the API shows it (see Sandbox in api/openapi.yaml).
struct SandboxInfo {
    std::string id;  // sb-<12 hex>
    std::string host;  // the kilnd whose VM this is (its host_name; docs/fleet.md)
    int64_t owner_token_id = 0;
    std::string template_id;
    int64_t created_at_ms = 0;  // unix ms
    int64_t expires_at_ms = 0;
    int64_t ended_at_ms = 0;    // 0 while live
    Labels metadata;
    Labels env;
    uint32_t vcpus = 1;
    uint32_t memory_mib = 256;
    std::string parent_id;
    std::string error;          // why lost or failed
    double create_ms = 0;
    pid_t qemu_pid = 0;
    // What may leave the sandbox. With mode none and a template without a NIC the VM has no NIC
    // at all; otherwise it has one in its own network namespace (docs/network.md).
    net::NetworkPolicy network;
    bool has_nic = false;
    // Pause and resume (docs/pause.md). auto_pause: the end of the TTL pauses instead of expiring.
    // While paused: when it was paused, the TTL it had left (which counts again from the resume)
    // and the bytes its private snapshot holds on its host's disk; all 0 otherwise.
    bool auto_pause = false;
    int64_t paused_at_ms = 0;
    int64_t ttl_left_ms = 0;
    uint64_t paused_bytes = 0;

    // The lifecycle state; it changes only through move_to. A new record is creating.
    SandboxState state() const { return m_state; }
    // Moves to `to` if can_transition allows it from the current state, and says whether it did.
    // A forbidden move is a bug: it is logged as an error (the sandbox, from, to) and refused,
    // leaving the state as it was.
    bool move_to(SandboxState to);
    // A record in a state reached earlier, without a move: what the store's row reader returns
    // (the state the row recorded) and what tests start from. `fields` gives every other field.
    static SandboxInfo from_row(SandboxState state, SandboxInfo fields);
    static SandboxInfo from_row(SandboxState state) { return from_row(state, SandboxInfo()); }

private:
    SandboxState m_state = SandboxState::Creating;
};

struct SnapshotInfo {
    std::string id;  // snap-<12 hex>; also a template id
    std::string name;
    int64_t owner_token_id = 0;
    std::string sandbox_id;
    std::string template_id;
    int64_t created_at_ms = 0;
    uint64_t size_bytes = 0;
    uint32_t vcpus = 1;
    uint32_t memory_mib = 256;
    std::vector<std::string> hosts;  // the hosts holding a copy: the one that took it, then copies'
};

struct TemplateInfo {
    std::string id;
    std::string kind;  // "builtin" | "snapshot"
    std::string name;
    bool ready = false;
    std::string image;
    uint32_t vcpus = 1;
    uint32_t memory_mib = 256;
    int64_t created_at_ms = 0;
};

struct CreateRequest {
    std::string template_id = "tiny";
    std::optional<int64_t> ttl_seconds;
    Labels metadata;
    Labels env;
    std::optional<uint32_t> vcpus;
    std::optional<uint32_t> memory_mib;
    std::optional<net::NetworkPolicy> network;  // nothing: kilnd's configured default
    bool auto_pause = false;  // at the end of the TTL, pause instead of expiring
};

struct ForkRequest {
    std::optional<int64_t> ttl_seconds;
    Labels metadata;  // empty: the parent's
};

struct ListFilter {
    bool all_states = false;                 // otherwise only those not ended (live and paused) unless `state` is set
    std::optional<SandboxState> state;
    Labels metadata;                         // every pair must match
    bool every_owner = false;                // every token's (admin only; otherwise forbidden)
};

// A running sandbox held for one operation (exec, files). While a lease lives the VM object
// stays valid; a delete or the TTL still kills the VM at once, and agent calls then fail with
// vm_gone, which the HTTP layer reports as sandbox_not_running.
class SandboxLease {
public:
    virtual ~SandboxLease() = default;
    virtual const SandboxInfo& info() const = 0;
    virtual vm::AgentClient& agent() = 0;
};

class SandboxService {
public:
    virtual ~SandboxService() = default;

    // Validates, checks limits (quota_exceeded), restores the template's snapshot and renews the
    // VM's identity; returns once exec works. The record exists (state creating) before QEMU
    // starts, so a crash mid-create is found by the reconcile.
    virtual Result<SandboxInfo> create(const Caller& caller, const CreateRequest& request) = 0;
    virtual Result<SandboxInfo> get(const Caller& caller, const std::string& id) = 0;
    virtual Result<std::vector<SandboxInfo>> list(const Caller& caller, const ListFilter& filter) = 0;
    // Sets expires_at = now + ttl_seconds (running sandboxes; a paused one's TTL left becomes
    // ttl_seconds, counted from its resume; else sandbox_not_running).
    virtual Result<SandboxInfo> set_ttl(const Caller& caller, const std::string& id, int64_t ttl_seconds) = 0;
    // Kills the VM, removes its files, marks it deleted. A finished sandbox: no-op.
    virtual Status remove(const Caller& caller, const std::string& id) = 0;
    // Pause: the guest is frozen, its memory and disk saved to a snapshot private to the sandbox
    // (data_dir/paused/<id>), its VM stopped and its slot, memory, network and jail freed; the TTL
    // stops counting. Paused already: a no-op returning it. Not running: sandbox_not_running.
    virtual Result<SandboxInfo> pause(const Caller& caller, const std::string& id) = 0;
    // Resume: restored from that snapshot with the same id (new network namespace, identity
    // renewed); the TTL is what was left at the pause, or ttl_seconds. Returns once exec works.
    // Limits are checked as for a create (quota_exceeded). Running already: a no-op returning it.
    virtual Result<SandboxInfo> resume(const Caller& caller, const std::string& id, std::optional<int64_t> ttl_seconds) = 0;
    // A running sandbox for exec and files (not_found, sandbox_not_running).
    virtual Result<std::shared_ptr<SandboxLease>> lease(const Caller& caller, const std::string& id) = 0;

    virtual Result<SnapshotInfo> snapshot(const Caller& caller, const std::string& id, const std::string& name) = 0;
    virtual Result<SandboxInfo> fork(const Caller& caller, const std::string& id, const ForkRequest& request) = 0;

    virtual Result<std::vector<SnapshotInfo>> list_snapshots(const Caller& caller) = 0;
    virtual Result<SnapshotInfo> get_snapshot(const Caller& caller, const std::string& id) = 0;
    virtual Status remove_snapshot(const Caller& caller, const std::string& id) = 0;

    // Built-in templates (visible to all) and the caller's snapshots.
    virtual Result<std::vector<TemplateInfo>> list_templates(const Caller& caller) = 0;
    virtual Result<TemplateInfo> get_template(const Caller& caller, const std::string& id) = 0;
    virtual Status remove_template(const Caller& caller, const std::string& id) = 0;

    // All sandboxes by state name (every state present, zero included), for /metrics.
    virtual std::map<std::string, int64_t> count_by_state() = 0;
};

}  // namespace kiln::daemon
