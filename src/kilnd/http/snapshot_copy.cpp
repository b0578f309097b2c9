// See snapshot_copy.h.
#include "kilnd/http/snapshot_copy.h"

#include <cstdio>

#include "base/clock.h"
#include "base/errno_error.h"
#include "base/file_util.h"
#include "base/json_log.h"
#include "vm/snapshot_manifest.h"

namespace kiln::daemon::http {

namespace {
Error damaged(const std::string& id, const std::string& from, const std::string& what) {
    return make_error(ErrorCode::Unavailable, "snapshot " + id + " copied from host " + from + " is damaged: " + what);
}
}  // namespace

Status SnapshotCopier::copy_here(const std::string& id, const std::string& dir, const ForwardTarget& from, int64_t token_id) {
    std::lock_guard lock(m_mutex);
    if (path_exists(dir + "/" + vm::kManifestFileName)) return m_store.add_snapshot_host(id, m_self);
    const int64_t start = now_unix_ms();
    const std::string partial = dir + ".partial";
    (void)remove_tree(partial);  // a copy cut short before
    TRY(make_dirs(partial, 0700));
    const std::string base = "/v1/internal/snapshots/" + id + "/files/";
    auto fetch = [&](const char* name, uint64_t max_bytes) {
        return fetch_file(from, m_self, m_secret, token_id, base + name, partial + "/" + name, max_bytes);
    };
    auto result = [&]() -> Status {
        // The manifest first: it carries its own checksum, and the others' sizes and SHA-256.
        TRY(fetch(vm::kManifestFileName, vm::kMaxManifestBytes));
        auto manifest = vm::parse_manifest(TRY(read_file(partial + "/" + vm::kManifestFileName, vm::kMaxManifestBytes)));
        if (!manifest.ok()) return damaged(id, from.host, manifest.error().message);
        if (manifest->id != id) return damaged(id, from.host, "its manifest names " + manifest->id.substr(0, 40));
        const std::pair<const char*, const vm::SnapshotFileInfo*> files[] = {
            {vm::kStateFileName, &manifest->state}, {vm::kMemoryFileName, &manifest->memory}, {vm::kDiskFileName, &manifest->disk}};
        for (const auto& [name, expected] : files) {
            auto got = TRY(fetch(name, expected->size));
            // The manifest's SHA-256 where it records one (a sandbox's snapshot records sizes
            // only), else the one the sender computed before sending: what arrived is what it has.
            const std::string& want = expected->sha256.empty() ? got.announced_sha256 : expected->sha256;
            if (got.size != expected->size || want.empty() || got.sha256 != want)
                return damaged(id, from.host, std::string(name) + " arrived with " + std::to_string(got.size) +
                                                  " bytes, SHA-256 " + got.sha256 + "; expected " +
                                                  std::to_string(expected->size) + " bytes, SHA-256 " +
                                                  (want.empty() ? "(none given)" : want));
        }
        if (std::rename(partial.c_str(), dir.c_str()) != 0) return errno_error("rename " + partial);
        return m_store.add_snapshot_host(id, m_self);
    }();
    if (!result.ok()) {
        (void)remove_tree(partial);
        log::warn("snapshot copy failed", {{"snapshot", id}, {"from", from.host}, {"error", result.error().message}});
        return result;
    }
    log::info("snapshot copied", {{"snapshot", id}, {"from", from.host}, {"ms", now_unix_ms() - start}});
    return ok_status();
}

}  // namespace kiln::daemon::http
