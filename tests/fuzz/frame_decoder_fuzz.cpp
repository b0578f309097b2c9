// libFuzzer target: the agent frame decoder must never crash, and must stay bounded, on any bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "proto/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    kiln::proto::FrameDecoder decoder;
    // Feed in uneven pieces so partial headers and payloads are exercised.
    size_t offset = 0, step = 1;
    while (offset < size) {
        size_t n = std::min(step, size - offset);
        decoder.feed(reinterpret_cast<const char*>(data) + offset, n);
        offset += n;
        step = step * 3 % 17 + 1;
        while (auto frame = decoder.next()) {
            if (frame->payload.size() > kiln::proto::kMaxPayload) abort();
        }
        while (decoder.next_error()) {
        }
    }
    if (decoder.buffered() > kiln::proto::kHeaderSize + kiln::proto::kMaxPayload + size) abort();
    return 0;
}
