// JSON rendering of kilnd's API objects; see api/openapi.yaml for the shapes.
#include "kilnd/http/json_render.h"

#include "base/json_log.h"

namespace kiln::daemon::http {

std::string rfc3339_ms(int64_t unix_ms) { return log::rfc3339_ms(unix_ms); }

json render(const SandboxInfo& s) {
    json j = {{"id", s.id},
              {"state", state_name(s.state())},
              {"template", s.template_id},
              {"created_at", rfc3339_ms(s.created_at_ms)},
              {"expires_at", rfc3339_ms(s.expires_at_ms)},
              {"metadata", s.metadata},
              {"vcpus", s.vcpus},
              {"memory_mib", s.memory_mib},
              {"host", s.host},
              {"network", net::to_json(s.network)},
              {"create_ms", s.create_ms}};  // how long the create took (the dashboard's chart)
    if (s.ended_at_ms) j["ended_at"] = rfc3339_ms(s.ended_at_ms);
    if (!s.parent_id.empty()) j["parent_id"] = s.parent_id;
    if (!s.error.empty()) j["error"] = without_host_logs(s.error);
    if (s.create_ms > 0) j["create_ms"] = s.create_ms;
    j["auto_pause"] = s.auto_pause;
    if (s.state() == SandboxState::Paused) {
        j["paused_at"] = rfc3339_ms(s.paused_at_ms);
        j["ttl_left_seconds"] = s.ttl_left_ms / 1000.0;
        j["paused_bytes"] = s.paused_bytes;
    }
    return j;
}

json render(const SnapshotInfo& s) {
    json j = {{"id", s.id},
              {"sandbox_id", s.sandbox_id},
              {"created_at", rfc3339_ms(s.created_at_ms)},
              {"size_bytes", s.size_bytes},
              {"vcpus", s.vcpus},
              {"memory_mib", s.memory_mib}};
    if (!s.name.empty()) j["name"] = s.name;
    if (!s.template_id.empty()) j["template"] = s.template_id;
    if (!s.hosts.empty()) j["hosts"] = s.hosts;
    return j;
}

json render(const TemplateInfo& t) {
    json j = {{"id", t.id}, {"kind", t.kind}, {"ready", t.ready}, {"vcpus", t.vcpus}, {"memory_mib", t.memory_mib}};
    if (!t.name.empty()) j["name"] = t.name;
    if (!t.image.empty()) j["image"] = t.image;
    if (t.created_at_ms) j["created_at"] = rfc3339_ms(t.created_at_ms);
    return j;
}

json render(const proto::FileInfo& f, const std::string& path) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", f.mode & 07777);
    std::string name = path;
    if (auto slash = path.find_last_of('/'); slash != std::string::npos && slash + 1 < path.size())
        name = path.substr(slash + 1);
    json j{{"path", path},
           {"name", name},
           {"type", f.type},
           {"size", f.size},
           {"mode", mode},
           {"mtime", rfc3339_ms(f.mtime_unix_ns / 1000000)}};
    // An older agent sends no names.
    if (!f.owner.empty()) j["owner"] = f.owner;
    if (!f.group.empty()) j["group"] = f.group;
    if (f.type == "symlink" && !f.symlink_target.empty()) j["target"] = f.symlink_target;
    return j;
}

namespace {
void render_stream(json& j, const std::string& name, const CappedOutput& stream) {
    OutputEncoding encoding = choose_encoding(stream.kept());
    j[name] = encoding == OutputEncoding::Text ? stream.kept() : base64_encode(stream.kept());
    j[name + "_encoding"] = encoding_name(encoding);
    j[name + "_truncated"] = stream.truncated();
    j[name + "_dropped_bytes"] = stream.dropped();
}
}  // namespace

json render_exec_result(const proto::ExecResult& r, const CappedOutput& out, const CappedOutput& err) {
    json j = {{"exit_code", r.signal ? json(nullptr) : json(r.exit_code)},
              {"signal", r.signal ? json(r.signal) : json(nullptr)},
              {"timed_out", r.timed_out},
              {"duration_ms", r.duration_ms}};
    render_stream(j, "stdout", out);
    render_stream(j, "stderr", err);
    // `truncated` predates the per-stream fields: either stream cut, by the host or by the agent.
    if (r.output_truncated || out.truncated() || err.truncated()) j["truncated"] = true;
    return j;
}

std::string without_host_logs(const std::string& message) {
    static constexpr std::string_view kQemuLog = "; qemu.log:";
    static constexpr std::string_view kConsole = "; last console lines:";
    size_t start = message.find(kQemuLog);
    if (start == std::string::npos) return message;
    size_t end = message.find(kConsole, start);
    return message.substr(0, start) + (end == std::string::npos ? std::string() : message.substr(end));
}

json render_error(const Error& e) { return json{{"error", {{"code", code_name(e.code)}, {"message", e.message}}}}; }

std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

namespace {
// How many bytes at the end of `s` start a UTF-8 sequence that is not complete yet.
size_t incomplete_tail(std::string_view s) {
    size_t n = s.size();
    for (size_t back = 1; back <= 3 && back <= n; ++back) {
        unsigned char c = static_cast<unsigned char>(s[n - back]);
        if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
        size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
        return need > back ? back : 0;
    }
    return 0;
}
}  // namespace

std::string Utf8Carry::take(std::string_view bytes) {
    m_pending.append(bytes);
    size_t keep = incomplete_tail(m_pending);
    std::string out = m_pending.substr(0, m_pending.size() - keep);
    m_pending.erase(0, m_pending.size() - keep);
    return out;
}

std::string Utf8Carry::flush() { return std::exchange(m_pending, std::string()); }

}  // namespace kiln::daemon::http
