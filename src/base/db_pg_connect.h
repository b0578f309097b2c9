// How kilnd connects to PostgreSQL, for every connection it makes: the store's (db_postgres.cpp)
// and the CI queue's LISTEN connection (pg_listener.cpp). Internal to src/base.
#pragma once

#include <libpq-fe.h>

#include <string>

namespace kiln::db_detail {

// PQconnectdbParams with kilnd's defaults before the URL's own settings (which win): a 5 s
// connect timeout, and over TCP keepalives and a TCP user timeout, so that a server that vanished
// without closing the connection (a partition, a dead machine) is noticed within about 30 s, not
// the kernel's hours. Server notices are dropped. Null only when libpq is out of memory; the
// caller checks PQstatus and PQfinishes it.
PGconn* pg_connect(const std::string& url);

// A libpq message on one line, for logs and errors.
std::string one_line(std::string text);

}  // namespace kiln::db_detail
