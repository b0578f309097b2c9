// WatchStreams: the server's open watch streams by stream id: started by a watch request, fed by
// inotify, pumped into Data frames while the host keeps up, ended by the host's Detach (Result {})
// or the watched folder's end (Error).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "agent/dir_watch.h"
#include "agent/frame_outbox.h"
#include "base/result.h"

namespace kiln::agent {

class WatchStreams {
public:
    // Starts the watch a request asks for; on success a Started frame {"folders": N} tells the
    // host that events from now on are seen.
    Status start(uint32_t stream, const nlohmann::json& body, FrameOutbox& outbox);
    bool contains(uint32_t stream) const { return m_watches.count(stream) != 0; }
    size_t size() const { return m_watches.size(); }
    bool has_events() const;

    // Calls add(fd, stream) for each watch's inotify fd.
    void for_each_fd(const std::function<void(int fd, uint32_t stream)>& add) const;
    // The stream's fd is readable.
    void on_readable(uint32_t stream);
    // Sends queued events while the outbox is not congested; ends the streams whose folder went away.
    void pump(FrameOutbox& outbox);
    // The host's Detach: the stream ends with Result {}.
    void detach(uint32_t stream, FrameOutbox& outbox);
    // Ends a stream without a frame (reset, disconnect, a malformed frame).
    void abandon(uint32_t stream) { m_watches.erase(stream); }
    void for_each_stream(const std::function<void(uint32_t)>& fn) const;

private:
    std::map<uint32_t, std::unique_ptr<DirWatch>> m_watches;
};

}  // namespace kiln::agent
