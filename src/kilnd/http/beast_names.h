// The short names the HTTP layer's Beast code uses (connection.cpp serves with them,
// forward_client.cpp sends with them), in one place.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>

namespace kiln::daemon::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

}  // namespace kiln::daemon::http
