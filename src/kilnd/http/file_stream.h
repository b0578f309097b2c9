// A file on this host as a response: sized, read as the client takes it (a CI artifact, a
// snapshot's file sent to another host of the fleet).
#pragma once

#include <string>

#include "base/result.h"
#include "kilnd/http/http_message.h"

namespace kiln::daemon::http {

// Opens `path` (no symlink followed at its last component) and sets `res` to stream it with its
// length. NotFound when it cannot be opened.
Status stream_file(Response& res, const std::string& path, const std::string& content_type = "application/octet-stream");

}  // namespace kiln::daemon::http
