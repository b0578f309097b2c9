// Watch streams: one DirWatch per stream, its events as Data frames of JSON.
#include "agent/watch_streams.h"

#include "proto/messages.h"

namespace kiln::agent {

Status WatchStreams::start(uint32_t stream, const nlohmann::json& body, FrameOutbox& outbox) {
    auto request = TRY(proto::parse_watch_request(body));
    auto watch = TRY(DirWatch::start(request));
    outbox.push_json(proto::FrameType::Started, stream, nlohmann::json{{"folders", watch->folders()}});
    m_watches.emplace(stream, std::move(watch));
    return ok_status();
}

bool WatchStreams::has_events() const {
    for (const auto& [stream, watch] : m_watches)
        if (watch->has_events() || watch->ended()) return true;
    return false;
}

void WatchStreams::for_each_fd(const std::function<void(int fd, uint32_t stream)>& add) const {
    for (const auto& [stream, watch] : m_watches) add(watch->fd(), stream);
}

void WatchStreams::on_readable(uint32_t stream) {
    if (auto it = m_watches.find(stream); it != m_watches.end()) it->second->read_events();
}

void WatchStreams::pump(FrameOutbox& outbox) {
    for (auto it = m_watches.begin(); it != m_watches.end();) {
        DirWatch& watch = *it->second;
        while (!outbox.congested()) {
            auto event = watch.next_event();
            if (!event) break;
            outbox.push(proto::FrameType::Data, it->first, dump_json(proto::to_json(*event)));
        }
        if (watch.ended() && !watch.has_events()) {
            outbox.push_error(it->first, watch.ended()->code, watch.ended()->message);
            it = m_watches.erase(it);
        } else {
            ++it;
        }
    }
}

void WatchStreams::detach(uint32_t stream, FrameOutbox& outbox) {
    // Events not yet sent are dropped: the host said it wants no more.
    if (m_watches.erase(stream)) outbox.push_json(proto::FrameType::Result, stream, nlohmann::json::object());
}

void WatchStreams::for_each_stream(const std::function<void(uint32_t)>& fn) const {
    for (const auto& [stream, watch] : m_watches) fn(stream);
}

}  // namespace kiln::agent
