// What an engine implements behind Db (db.h): a connection and its statements. Internal to
// src/base (db.cpp, db_sqlite.cpp, db_postgres.cpp); stores use Db, Session and DbStatement.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"

namespace kiln::db_detail {

class StatementImpl {
public:
    virtual ~StatementImpl() = default;
    virtual void bind(int index, int64_t value) = 0;
    virtual void bind(int index, std::string_view value) = 0;
    virtual void bind(int index, double value) = 0;
    virtual Result<bool> step() = 0;
    virtual int64_t column_int(int index) const = 0;
    virtual double column_double(int index) const = 0;
    virtual std::string column_text(int index) const = 0;
};

// Called only with the Db's mutex held (from a Session), except close() (which takes it itself).
class Connection {
public:
    virtual ~Connection() = default;
    virtual Status exec(const std::string& sql) = 0;
    virtual Result<std::unique_ptr<StatementImpl>> prepare(const std::string& sql) = 0;
    virtual int changes() const = 0;
    virtual Status begin() = 0;
    virtual Status commit() = 0;
    virtual void rollback() = 0;
    virtual void close() = 0;
};

Result<std::unique_ptr<Connection>> open_sqlite(const std::string& path);
Result<std::unique_ptr<Connection>> open_postgres(const std::string& url);

}  // namespace kiln::db_detail
