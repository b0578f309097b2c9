// The dashboard's files, compiled into kilnd from ui/ by src/kilnd/embed_ui.cmake.
#pragma once

#include <cstddef>
#include <string_view>

namespace kiln::daemon::http {

struct UiAsset {
    const char* path;          // relative to ui/: "index.html", "js/app.js"
    const char* content_type;  // from the extension
    const char* sha256;        // of the bytes: the ETag
    const unsigned char* data;
    size_t size;
};

struct UiAssetSet {
    const UiAsset* assets;
    size_t count;
    // From every file's name and hash: the pages load /ui/a/<build>/<path>, so a new kilnd's
    // files never meet an old one's in a browser's cache.
    const char* build;

    const UiAsset* find(std::string_view path) const {
        for (size_t i = 0; i < count; ++i)
            if (path == assets[i].path) return &assets[i];
        return nullptr;
    }
};

const UiAssetSet& ui_assets();

}  // namespace kiln::daemon::http
