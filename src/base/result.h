// Result<T>: the one error style of Kiln. Functions that can fail return a value or an Error; no exceptions cross module boundaries.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "base/error_code.h"

namespace kiln {

// A failure with a stable machine-readable code (see error_code.h) and a message for humans.
struct Error {
    ErrorCode code = ErrorCode::Internal;
    std::string message;

    // "<code name>: <message>", as logs and job records show it.
    std::string to_string() const { return std::string(code_name(code)) + ": " + message; }
};

inline Error make_error(ErrorCode code, std::string message) { return Error{code, std::move(message)}; }

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : m_value(std::move(value)) {}
    Result(Error error) : m_value(std::move(error)) {}

    bool ok() const { return std::holds_alternative<T>(m_value); }
    explicit operator bool() const { return ok(); }

    T& value() & { return std::get<T>(m_value); }
    const T& value() const& { return std::get<T>(m_value); }
    T&& value() && { return std::get<T>(std::move(m_value)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }

    const Error& error() const& { return std::get<Error>(m_value); }
    Error&& error() && { return std::get<Error>(std::move(m_value)); }

private:
    std::variant<T, Error> m_value;
};

// Result<void>: success carries nothing.
struct Ok {};
using Status = Result<Ok>;
inline Status ok_status() { return Ok{}; }

}  // namespace kiln

// TRY(expr): evaluates a Result; on error returns the error from the enclosing function, else yields the value.
#define KILN_CONCAT_INNER(a, b) a##b
#define KILN_CONCAT(a, b) KILN_CONCAT_INNER(a, b)
#define TRY(expr)                                                   \
    ({                                                              \
        auto KILN_CONCAT(_try_, __LINE__) = (expr);                 \
        if (!KILN_CONCAT(_try_, __LINE__).ok())                     \
            return std::move(KILN_CONCAT(_try_, __LINE__)).error(); \
        std::move(KILN_CONCAT(_try_, __LINE__)).value();            \
    })
