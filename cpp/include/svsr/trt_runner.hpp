// svsr/trt_runner.hpp: the built-in TensorRT runner (compiled when CMake finds TensorRT and CUDA;
// SVSR_HAVE_TENSORRT is then defined). The header itself needs neither.
#pragma once

#include <memory>
#include <string>

#include "svsr/host.hpp"

namespace svsr {

struct TrtOptions {
    std::string precision = "auto";  // auto (fp16 > bf16 > fp32 per graph, where an engine exists), fp32, fp16, bf16
    bool cuda_graphs = true;         // capture each execution context's enqueue into a CUDA graph, replay it
    int device = 0;                  // CUDA device ordinal
    bool check_files = true;         // plan files exist and match their sha256 in manifest["engines"]
    std::string lean_runtime;        // lean runtime library of the TensorRT that built "lean" plans (IRuntime::loadRuntime)
};

// Deserialises the plans named in manifest["engines"] (file under the build folder) after checking
// their build records against this machine (TensorRT version, GPU). Throws Error with a sentence
// that names the command rebuilding the engines. Only defined when SVSR_HAVE_TENSORRT.
std::unique_ptr<Runner> open_tensorrt_runner(const Manifest& manifest, const TrtOptions& options);

}  // namespace svsr
