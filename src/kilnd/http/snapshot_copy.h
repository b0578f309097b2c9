// Copying a snapshot to this host from one that holds it (docs/fleet.md): its manifest, device
// state, memory and disk over the fleet's internal API, each checked against the manifest's
// size and SHA-256, written under <dir>.partial and renamed whole (a crash leaves only the
// .partial, which the reconcile removes); then this host is added to the record's holders.
#pragma once

#include <mutex>
#include <string>

#include "base/result.h"
#include "daemon/store/store.h"
#include "kilnd/http/forward_client.h"

namespace kiln::daemon::http {

class SnapshotCopier {
public:
    SnapshotCopier(std::string self_host, std::string fleet_secret, Store& store)
        : m_self(std::move(self_host)), m_secret(std::move(fleet_secret)), m_store(store) {}

    // Makes `dir` hold snapshot `id`, fetched from `from` for token `token_id` (who must see it
    // there). Nothing to do when `dir` already holds it.
    Status copy_here(const std::string& id, const std::string& dir, const ForwardTarget& from, int64_t token_id);

private:
    const std::string m_self;
    const std::string m_secret;
    Store& m_store;
    // One copy at a time on this host: two creates from one snapshot copy it once, and copies
    // do not compete for the disk.
    std::mutex m_mutex;
};

}  // namespace kiln::daemon::http
