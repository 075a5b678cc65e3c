// Whether and how this machine's TensorRT loads a plan, from its build record
// (svsr/contract/engine_records.py check_record, plus version-compatible plans).
//
// * An ordinary plan runs only on the TensorRT version (and build, where recorded) that built it.
// * A version-compatible plan (svsr-export --lean: kVERSION_COMPATIBLE) also runs on a later
//   TensorRT; it holds host code, which the runtime must be allowed to load
//   (setEngineHostCodeAllowed, as trtexec does for --versionCompatible).
// * A "lean" one has no lean runtime inside (kEXCLUDE_LEAN_RUNTIME): this TensorRT deserialises it
//   where it is the building version; otherwise the building version's lean runtime library, given
//   by the user, is loaded with IRuntime::loadRuntime (trtexec --leanDLLPath) and deserialises it.
// * Every plan runs only on the GPU model it was built for.
#pragma once

#include <string>

#include "svsr/host.hpp"

namespace svsr {

struct TrtVersion {
    int major = -1, minor = -1, patch = -1;
    std::string build;  // "" when not recorded
    bool valid() const { return major >= 0 && minor >= 0 && patch >= 0; }
    std::string text() const;
};
// "11.1.0.106" or "11.1.0"; an invalid TrtVersion otherwise.
TrtVersion parse_trt_version(const std::string& text);
// getInferLibVersion() (major * 10000 + minor * 100 + patch) and getInferLibBuildVersion().
TrtVersion trt_version_from_lib(int32_t version, int32_t build);

struct EngineHost {
    TrtVersion tensorrt;
    std::string gpu_name, compute_capability;
    std::string lean_runtime;  // path of a lean runtime library given by the user, or ""
};

struct EngineLoad {
    bool host_code = false;     // setEngineHostCodeAllowed(true) before deserialising
    bool lean_library = false;  // deserialise with IRuntime::loadRuntime(host.lean_runtime)
};

// Error(manifest) with one sentence ending in "rebuild it with: <rebuild>" for a plan this machine
// cannot run; else how to load it. `where`: "the <graph> <precision> engine in <build folder>".
EngineLoad check_engine_record(const EngineRecord& record, const std::string& where, const EngineHost& host, const std::string& rebuild);

}  // namespace svsr
