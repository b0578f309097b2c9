// libnftables in-process: a context per call (its socket binds to the caller's namespace), one lock.
#include "daemon/net/nft_loader.h"

#include <nftables/libnftables.h>

#include <memory>
#include <mutex>

namespace kiln::daemon::net {

Status load_nft_ruleset(const std::string& ruleset) {
    static std::mutex mutex;
    std::lock_guard lock(mutex);
    std::unique_ptr<nft_ctx, void (*)(nft_ctx*)> ctx(nft_ctx_new(NFT_CTX_DEFAULT), nft_ctx_free);
    if (!ctx) return make_error(ErrorCode::NetworkSetupFailed, "nftables: cannot create a context");
    nft_ctx_buffer_output(ctx.get());
    nft_ctx_buffer_error(ctx.get());
    if (nft_run_cmd_from_buffer(ctx.get(), ruleset.c_str()) != 0) {
        std::string message = nft_ctx_get_error_buffer(ctx.get());
        while (!message.empty() && message.back() == '\n') message.pop_back();
        return make_error(ErrorCode::NetworkSetupFailed, "nftables: " + message);
    }
    return ok_status();
}

}  // namespace kiln::daemon::net
