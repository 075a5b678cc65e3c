// Minimal test helpers for the ctest executables (no framework: nothing can be downloaded).
#pragma once

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "svsr/host.hpp"

namespace check {

inline int& failures() {
    static int n = 0;
    return n;
}
inline int& passes() {
    static int n = 0;
    return n;
}

inline void report(bool ok, const char* file, int line, const std::string& what) {
    if (ok) {
        ++passes();
    } else {
        ++failures();
        std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what.c_str());
    }
}

inline int finish(const char* name) {
    std::printf("%s: %d checks passed, %d failed\n", name, passes(), failures());
    return failures() == 0 ? 0 : 1;
}

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "cannot read %s\n", path.c_str());
        std::exit(2);
    }
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline void write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
}

}  // namespace check

#define CHECK(cond) ::check::report(static_cast<bool>(cond), __FILE__, __LINE__, #cond)
#define CHECK_MSG(cond, msg) ::check::report(static_cast<bool>(cond), __FILE__, __LINE__, std::string(#cond) + ": " + (msg))
// expects `expr` to throw svsr::Error with `status` and a message containing `needle`
#define CHECK_THROWS(expr, want_status, needle)                                                                        \
    do {                                                                                                          \
        bool thrown_ = false;                                                                                     \
        try {                                                                                                     \
            expr;                                                                                                 \
        } catch (const svsr::Error& e_) {                                                                         \
            thrown_ = true;                                                                                       \
            const bool ok_ = e_.status() == (want_status) && std::string(e_.what()).find(needle) != std::string::npos; \
            ::check::report(ok_, __FILE__, __LINE__, std::string(#expr) + " threw: " + e_.what());                \
        }                                                                                                         \
        if (!thrown_) ::check::report(false, __FILE__, __LINE__, std::string(#expr) + " did not throw");          \
    } while (0)
