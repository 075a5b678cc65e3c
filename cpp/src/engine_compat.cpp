// Plan build records against this machine (see engine_compat.hpp).
#include "engine_compat.hpp"

#include <sstream>
#include <tuple>
#include <vector>

namespace svsr {

namespace {

bool parse_int(const std::string& s, int& out) {
    if (s.empty() || s.size() > 6) return false;
    int v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    out = v;
    return true;
}

bool same_release(const TrtVersion& a, const TrtVersion& b) {
    return a.major == b.major && a.minor == b.minor && a.patch == b.patch && (a.build.empty() || b.build.empty() || a.build == b.build);
}

bool not_newer(const TrtVersion& built, const TrtVersion& here) {
    return std::make_tuple(built.major, built.minor, built.patch) <= std::make_tuple(here.major, here.minor, here.patch);
}

}  // namespace

std::string TrtVersion::text() const {
    if (!valid()) return "?";
    return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch) + (build.empty() ? "" : "." + build);
}

TrtVersion parse_trt_version(const std::string& text) {
    std::vector<std::string> parts;
    std::string part;
    std::istringstream in(text);
    while (std::getline(in, part, '.')) parts.push_back(part);
    TrtVersion v;
    if (parts.size() < 3 || parts.size() > 4) return TrtVersion{};
    if (!parse_int(parts[0], v.major) || !parse_int(parts[1], v.minor) || !parse_int(parts[2], v.patch)) return TrtVersion{};
    int build = 0;
    if (parts.size() == 4) {
        if (!parse_int(parts[3], build)) return TrtVersion{};
        v.build = parts[3];
    }
    return v;
}

TrtVersion trt_version_from_lib(int32_t version, int32_t build) {
    TrtVersion v;
    v.major = version / 10000;
    v.minor = (version / 100) % 100;
    v.patch = version % 100;
    v.build = std::to_string(build);
    return v;
}

EngineLoad check_engine_record(const EngineRecord& r, const std::string& where, const EngineHost& host, const std::string& rebuild) {
    const TrtVersion built = parse_trt_version(r.tensorrt_version);
    const std::string here = host.tensorrt.text();
    EngineLoad load;
    if (!r.version_compatible) {
        if (!built.valid() || !same_release(built, host.tensorrt))
            throw Error(Status::manifest, where + " was built with TensorRT " + r.tensorrt_version + " but this machine has TensorRT " + here +
                                              "; rebuild it with: " + rebuild);
    } else {
        load.host_code = true;
        if (!built.valid())
            throw Error(Status::manifest, where + " records TensorRT version '" + r.tensorrt_version + "', which is not a version; rebuild it with: " + rebuild);
        if (r.lean && !same_release(built, host.tensorrt) && !host.lean_runtime.empty()) {
            load.lean_library = true;  // that library must be TensorRT <built>'s lean runtime; TensorRT checks it
        } else if (r.lean && !same_release(built, host.tensorrt)) {
            throw Error(Status::manifest, where + " was built with TensorRT " + r.tensorrt_version +
                                              " without its lean runtime inside (svsr-export --lean) and this machine has TensorRT " + here +
                                              "; give TensorRT " + r.tensorrt_version + "'s lean runtime library (libnvinfer_lean.so." +
                                              std::to_string(built.major) + ") with --lean-runtime PATH, or rebuild it with: " + rebuild);
        } else if (!not_newer(built, host.tensorrt)) {
            throw Error(Status::manifest, where + " was built with TensorRT " + r.tensorrt_version + ", newer than this machine's TensorRT " + here +
                                              " (version-compatible plans run on the same or a later TensorRT); rebuild it with: " + rebuild);
        }
    }
    if ((!r.gpu_name.empty() && r.gpu_name != host.gpu_name) || (!r.compute_capability.empty() && r.compute_capability != host.compute_capability))
        throw Error(Status::manifest, where + " was built for " + r.gpu_name + " (compute capability " + r.compute_capability +
                                          ") but this machine has " + host.gpu_name + " (compute capability " + host.compute_capability +
                                          "); rebuild it with: " + rebuild);
    return load;
}

}  // namespace svsr
