// The built-in TensorRT runner: TensorRT's C++ runtime API; the device work (streams, events,
// copies, CUDA graphs, scratch) goes through DeviceQueue over the CUDA runtime (device_queue.hpp).
//
// * Plans: manifest["engines"]["<graph>.<precision>"] records, file under the build folder; the
//   record is checked against this machine (engine_compat.hpp: TensorRT version, GPU; version-
//   compatible plans on a later TensorRT, "lean" ones through IRuntime::loadRuntime) and the plan
//   against its sha256 before deserialising, and each engine's I/O against the manifest.
// * One IExecutionContext per (graph, set of bound buffers), i.e. per slot set (denoise: per slot
//   set and TCM on/off): created at the first run with those buffers, setInputShape and
//   setTensorAddress once, never rebound. All contexts share one user-managed scratch area
//   (setDeviceMemoryV2) as large as the largest context in use needs for its shapes
//   (updateDeviceMemorySizeForShapes, not the profile's maximum): they run one after another on one
//   compute stream. When the area grows, every context is pointed at the new one and its CUDA graph
//   captured again.
// * CUDA graphs (optional): the second run of a context captures its enqueueV3 into a CUDA graph,
//   later runs replay it.
// * Copies run on a second stream (DeviceQueue), so an upload into one slot set overlaps the compute
//   on the other set.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>

#include "cuda_api.hpp"
#include "device_queue.hpp"
#include "engine_compat.hpp"
#include "svsr/host.hpp"
#include "svsr/trt_runner.hpp"

namespace svsr {

namespace {

void cuda_check(cudaError_t status, const char* what) {
    if (status != cudaSuccess)
        throw Error(status == cudaErrorMemoryAllocation ? Status::out_of_memory : Status::runner,
                    std::string("CUDA ") + what + " failed: " + cudaGetErrorString(status) + ".");
}

class Logger final : public nvinfer1::ILogger {
public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
        if (severity > Severity::kWARNING) return;
        std::fprintf(stderr, "TensorRT %s: %s\n", severity <= Severity::kERROR ? "error" : "warning", msg);
        if (severity <= Severity::kERROR) last_error = msg;
    }
    std::string last_error;
};

std::string join_path(const std::string& dir, const std::string& file) {
    if (!file.empty() && file[0] == '/') return file;
    return dir.empty() || dir.back() == '/' ? dir + file : dir + "/" + file;
}

std::string shape_text(const std::vector<int64_t>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
}

struct Context {
    nvinfer1::IExecutionContext* context = nullptr;
    std::map<std::string, BufferHandle> bound;
    device::GraphLaunch launch;
};

struct Engine {
    std::string graph, precision, file;
    nvinfer1::ICudaEngine* engine = nullptr;
    std::vector<std::string> inputs, outputs;
    std::string profile_summary;
    std::vector<std::unique_ptr<Context>> contexts;
};

class TrtRunner final : public Runner {
public:
    TrtRunner(const Manifest& m, const TrtOptions& options);
    ~TrtRunner() override { release(); }
    const char* name() const override { return "tensorrt"; }
    BufferHandle allocate(const std::string& label, const std::vector<int64_t>& shape) override { return queue_->allocate(label, shape); }
    void free(BufferHandle buffer) override;
    void upload(BufferHandle buffer, const void* host, size_t bytes) override { queue_->upload(buffer, host, bytes); }
    void download(BufferHandle buffer, void* host, size_t bytes) override { queue_->download(buffer, host, bytes); }
    void run(const std::string& graph, const std::vector<Binding>& inputs, const std::vector<Binding>& outputs) override;
    void synchronize() override { queue_->synchronize(); }
    void copy_region(BufferHandle source, BufferHandle target, int64_t source_y, int64_t source_x, int64_t target_y, int64_t target_x,
                     int64_t rows, int64_t cols) override {
        queue_->copy_region(source, target, source_y, source_x, target_y, target_x, rows, cols);
    }
    void zero(BufferHandle buffer) override { queue_->zero(buffer); }
    std::string tile_problem(int tile_height, int tile_width, int padded_height, int padded_width) const override {
        return engine_tile_problem(manifest_, options_.precision, tile_height, tile_width, padded_height, padded_width);
    }
    std::string graph_problem(const std::string& graph) const override {
        if (engines_.count(graph)) return std::string();
        const std::string why = graph == "flow_x2" ? " (--flow-scale 2)" : graph == "flow_x1" ? " (--flow-scale 1)" : stats_graph(graph) ? " (tiles)" : "";
        return manifest_.build_dir + " has no TensorRT engine for the " + graph + " graph" + why + "; build the engines on this machine with: " +
               rebuild();
    }

private:
    void load(const TrtOptions& options);
    void release() noexcept;
    Context& context_for(Engine& e, const std::map<std::string, BufferHandle>& bound);
    void point_at_scratch(nvinfer1::IExecutionContext& context);
    void destroy_context(Context& c) noexcept;
    std::string rebuild() const {
        const std::string command = manifest_.rebuild_command(precision_flags_ + (profile_args_.empty() ? "" : " " + profile_args_));
        return lean_plans_ ? command + " --lean" : command;  // the rebuild must make lean plans again
    }
    void trt_fail(const std::string& what) const {
        throw Error(Status::runner, what + (logger_.last_error.empty() ? "" : " (TensorRT: " + logger_.last_error + ")") + ".");
    }

    Manifest manifest_;
    TrtOptions options_;
    Logger logger_;
    std::unique_ptr<device::DeviceApi> api_;
    std::unique_ptr<device::DeviceQueue> queue_;
    nvinfer1::IRuntime* runtime_ = nullptr;
    nvinfer1::IRuntime* lean_runtime_ = nullptr;  // loaded from options.lean_runtime; owned, deleted before runtime_
    std::map<std::string, Engine> engines_;
    std::string precision_flags_, profile_args_;
    bool lean_plans_ = false;
    bool warned_capture_ = false;
};

TrtRunner::TrtRunner(const Manifest& m, const TrtOptions& options) : manifest_(m), options_(options) {
    try {
        load(options);
    } catch (...) {
        release();  // a constructor that throws gets no destructor call
        throw;
    }
}

void TrtRunner::load(const TrtOptions& options) {
    const Manifest& m = manifest_;
    int count = 0;
    cuda_check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    if (options.device < 0 || options.device >= count)
        throw Error(Status::runner, "CUDA device " + std::to_string(options.device) + " does not exist (" + std::to_string(count) + " devices).");
    cuda_check(cudaSetDevice(options.device), "cudaSetDevice");
    cudaDeviceProp prop{};
    cuda_check(cudaGetDeviceProperties(&prop, options.device), "cudaGetDeviceProperties");
    EngineHost host;
    host.gpu_name = prop.name;
    while (!host.gpu_name.empty() && host.gpu_name.back() == ' ') host.gpu_name.pop_back();
    host.compute_capability = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    host.tensorrt = trt_version_from_lib(getInferLibVersion(), getInferLibBuildVersion());  // major * 10000 + minor * 100 + patch
    host.lean_runtime = options.lean_runtime;

    // precision per graph: fixed, or auto = the first of fp16, bf16, fp32 with an engine. The flow graphs of
    // the other flow scales (flow_x2, flow_x1) and the stats graphs (tiles only) are loaded where built; a
    // clip that needs one that is not says so before it starts (graph_problem)
    auto optional = [](const std::string& graph) { return graph == "flow_x2" || graph == "flow_x1" || stats_graph(graph); };
    std::map<std::string, std::string> chosen;
    for (const char* graph : kGraphNames) {
        std::string p = options.precision;
        if (float32_only_graph(graph) && (p == "auto" || p == "fp32" || p == "fp16" || p == "bf16")) {
            chosen[graph] = "fp32";  // warp and blend always run in float32 (svsr/contract/precision.py)
            continue;
        }
        if (p == "auto") {
            p.clear();
            for (const char* cand : {"fp16", "bf16", "fp32"})
                if (p.empty() && m.engines.count(std::string(graph) + "." + cand)) p = cand;
            if (p.empty() && optional(graph)) continue;
            if (p.empty())
                throw Error(Status::manifest, m.build_dir + " has no TensorRT engine for the " + std::string(graph) +
                                                  " graph; build the engines on this machine with: " +
                                                  m.rebuild_command("--precision fp16"));
        } else if (p != "fp32" && p != "fp16" && p != "bf16") {
            throw Error(Status::invalid_argument, "precision '" + p + "' is not one of auto, fp32, fp16, bf16.");
        }
        chosen[graph] = p;
    }
    const std::string flow_p = chosen["flow"], unet_p = chosen["denoise"], vae_p = chosen["decode"];
    precision_flags_ = "--precision " + unet_p;
    if (chosen["guide_decode"] != unet_p || vae_p != unet_p) precision_flags_ += " --vae-precision " + vae_p;
    if (flow_p != unet_p) precision_flags_ += " --flow-precision " + flow_p;
    for (const char* graph : kGraphNames) {
        auto it = m.engines.find(std::string(graph) + "." + chosen[graph]);
        if (it == m.engines.end()) continue;
        // the rebuild keeps the build's frame sizes and, where the tiled graphs record one, its tile (svsr-export --tile)
        if (profile_args_.empty() || (it->second.tile_height > 0 && profile_args_.find("--tile") == std::string::npos))
            profile_args_ = it->second.profile_args;
        lean_plans_ = lean_plans_ || it->second.version_compatible;
    }
    for (const char* graph : kGraphNames) {
        if (!m.engines.count(std::string(graph) + "." + chosen[graph]) && !optional(graph))
            throw Error(Status::manifest, m.build_dir + " has no " + chosen[graph] + " TensorRT engine for the " + graph +
                                              " graph; build it with: " + rebuild());
    }

    api_ = device::make_cuda_api();
    queue_ = std::make_unique<device::DeviceQueue>(*api_);
    runtime_ = nvinfer1::createInferRuntime(logger_);
    if (!runtime_) trt_fail("TensorRT could not create a runtime");
    for (const char* graph : kGraphNames) {
        if (!m.engines.count(std::string(graph) + "." + chosen[graph])) continue;  // an optional graph not built (checked above)
        const EngineRecord& r = m.engines.at(std::string(graph) + "." + chosen[graph]);
        const std::string where = "the " + r.graph + " " + r.precision + " engine in " + m.build_dir;
        const EngineLoad how = check_engine_record(r, where, host, rebuild());
        const std::string file = join_path(m.build_dir, r.file);
        std::ifstream in(file, std::ios::binary);
        if (!in) throw Error(Status::manifest, where + " (" + file + ") is missing; rebuild it with: " + rebuild());
        const std::vector<char> plan((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (options.check_files && sha256_hex(plan.data(), plan.size()) != r.sha256)
            throw Error(Status::manifest, where + " (" + file + ") does not match its sha256 in the manifest; rebuild it with: " + rebuild());

        // as trtexec loads plans: a lean plan of another TensorRT through that version's lean runtime
        // (--leanDLLPath), and host code allowed for version-compatible plans (--versionCompatible)
        nvinfer1::IRuntime* rt = runtime_;
        if (how.lean_library) {
            if (!lean_runtime_) lean_runtime_ = runtime_->loadRuntime(options.lean_runtime.c_str());
            if (!lean_runtime_)
                throw Error(Status::manifest, "TensorRT could not load the lean runtime " + options.lean_runtime + " for " + where +
                                                  (logger_.last_error.empty() ? "" : " (" + logger_.last_error + ")") + "; give TensorRT " +
                                                  r.tensorrt_version + "'s libnvinfer_lean, or rebuild it with: " + rebuild());
            rt = lean_runtime_;
        }
        if (how.host_code) rt->setEngineHostCodeAllowed(true);

        Engine& e = engines_[graph];  // owned from here on, so release() frees it whatever fails below
        e.graph = graph;
        e.precision = r.precision;
        e.file = file;
        e.profile_summary = r.profile_summary;
        e.engine = rt->deserializeCudaEngine(plan.data(), plan.size());
        if (!e.engine)
            throw Error(Status::manifest, "TensorRT could not load " + where + (logger_.last_error.empty() ? "" : " (" + logger_.last_error + ")") +
                                              "; rebuild it with: " + rebuild());
        // I/O: exactly the manifest's tensors, float32, in the right direction
        const GraphEntry& g = m.graphs.at(graph);
        std::map<std::string, bool> want;  // name -> is input
        for (const auto& t : g.inputs) want[t.name] = true;
        for (const auto& t : g.outputs) want[t.name] = false;
        const int32_t n = e.engine->getNbIOTensors();
        std::string found;
        bool same = n == int32_t(want.size());
        for (int32_t i = 0; i < n; ++i) {
            const char* name = e.engine->getIOTensorName(i);
            found += (i ? ", " : "") + std::string(name);
            auto w = want.find(name);
            const bool input = e.engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
            if (w == want.end() || w->second != input) {
                same = false;
                continue;
            }
            if (e.engine->getTensorDataType(name) != nvinfer1::DataType::kFLOAT)
                throw Error(Status::manifest, where + ": tensor " + name +
                                                  " is not float32 (typed graphs must keep float32 inputs and outputs); rebuild it with: " + rebuild());
            (input ? e.inputs : e.outputs).push_back(name);
        }
        if (!same)
            throw Error(Status::manifest, where + " has tensors [" + found + "] but the manifest's graph has other ones; rebuild it with: " + rebuild());
    }
}

void TrtRunner::release() noexcept {
    if (queue_) queue_->drain();
    for (auto& kv : engines_) {
        for (auto& c : kv.second.contexts) destroy_context(*c);
        delete kv.second.engine;
    }
    engines_.clear();
    queue_.reset();  // buffers, pinned memory, scratch, streams
    delete lean_runtime_;  // engines, then the runtime that made them, then its parent (as trtexec)
    lean_runtime_ = nullptr;
    delete runtime_;
    runtime_ = nullptr;
    api_.reset();
}

void TrtRunner::destroy_context(Context& c) noexcept {
    if (queue_) queue_->drop_graph(c.launch);
    delete c.context;
    c.context = nullptr;
}

void TrtRunner::free(BufferHandle h) {
    queue_->drain();
    // contexts bound to it go with it (they are bound once)
    bool any_left = false;
    for (auto& kv : engines_) {
        auto& list = kv.second.contexts;
        for (auto c = list.begin(); c != list.end();) {
            bool uses = false;
            for (const auto& b : (*c)->bound) uses = uses || b.second == h;
            if (uses) {
                destroy_context(**c);
                c = list.erase(c);
            } else {
                ++c;
            }
        }
        any_left = any_left || !list.empty();
    }
    queue_->free(h);
    if (!any_left) queue_->release_scratch();  // the next frame size sizes it anew
}

void TrtRunner::point_at_scratch(nvinfer1::IExecutionContext& context) {
    context.setDeviceMemoryV2(queue_->scratch(), queue_->scratch_bytes());
}

Context& TrtRunner::context_for(Engine& e, const std::map<std::string, BufferHandle>& bound) {
    for (auto& c : e.contexts)
        if (c->bound == bound) return *c;
    // untiled: at most 4 per engine; tiled: the blend engine binds each tile's weights (3 per tile)
    if (e.contexts.size() >= 16)
        throw Error(Status::internal, "more than 16 binding sets for the " + e.graph + " engine: the schedule does not reuse its slots.");
    auto c = std::make_unique<Context>();
    c->bound = bound;
    c->context = e.engine->createExecutionContext(nvinfer1::ExecutionContextAllocationStrategy::kUSER_MANAGED);
    if (!c->context) trt_fail("TensorRT could not create an execution context for the " + e.graph + " engine");
    for (const std::string& name : e.inputs) {
        const std::vector<int64_t>& shape = queue_->shape(bound.at(name));
        const nvinfer1::Dims declared = e.engine->getTensorShape(name.c_str());
        bool dynamic = false;
        for (int32_t i = 0; i < declared.nbDims; ++i) dynamic = dynamic || declared.d[i] < 0;
        if (dynamic) {
            nvinfer1::Dims dims{};
            dims.nbDims = int32_t(shape.size());
            for (size_t i = 0; i < shape.size(); ++i) dims.d[i] = shape[i];
            if (!c->context->setInputShape(name.c_str(), dims)) {
                destroy_context(*c);
                throw Error(Status::input, "the " + e.graph + " engine does not accept " + name + " of shape " + shape_text(shape) +
                                               (e.profile_summary.empty() ? "" : " (its profile is " + e.profile_summary + ")") +
                                               "; rebuild the engines for this size with: " + rebuild());
            }
        } else {
            bool same = declared.nbDims == int32_t(shape.size());
            for (int32_t i = 0; same && i < declared.nbDims; ++i) same = declared.d[i] == shape[size_t(i)];
            if (!same) {
                destroy_context(*c);
                throw Error(Status::input, "the " + e.graph + " engine was built for a fixed " + name + " shape other than " + shape_text(shape) +
                                               "; rebuild the engines for this size with: " + rebuild());
            }
        }
    }
    for (const std::string& name : e.outputs) {
        const std::vector<int64_t>& shape = queue_->shape(bound.at(name));
        const nvinfer1::Dims got = c->context->getTensorShape(name.c_str());
        bool same = got.nbDims == int32_t(shape.size());
        for (int32_t i = 0; same && i < got.nbDims; ++i) same = got.d[i] == shape[size_t(i)];
        if (!same) {
            destroy_context(*c);
            throw Error(Status::runner, "the " + e.graph + " engine makes " + name + " of another shape than its buffer " + shape_text(shape) + ".");
        }
    }
    // scratch for the shapes just set, not the profile's maximum (0: unknown, take the profile's)
    int64_t need = int64_t(c->context->updateDeviceMemorySizeForShapes());
    if (need <= 0) need = e.engine->getDeviceMemorySizeForProfileV2(c->context->getOptimizationProfile());
    try {
        if (queue_->reserve_scratch(need)) {  // moved: every context (and its CUDA graph) pointed at the new area
            for (auto& kv : engines_)
                for (auto& other : kv.second.contexts) {
                    point_at_scratch(*other->context);
                    queue_->drop_graph(other->launch);
                }
        }
    } catch (...) {
        destroy_context(*c);
        // the old area may be gone: no context may keep pointing at it (they are made again when needed)
        for (auto& kv : engines_) {
            for (auto& other : kv.second.contexts) destroy_context(*other);
            kv.second.contexts.clear();
        }
        throw;
    }
    point_at_scratch(*c->context);
    for (const auto& kv : bound)
        if (!c->context->setTensorAddress(kv.first.c_str(), queue_->pointer(kv.second))) {
            destroy_context(*c);
            trt_fail("TensorRT refused the address of " + e.graph + "." + kv.first);
        }
    e.contexts.push_back(std::move(c));
    return *e.contexts.back();
}

void TrtRunner::run(const std::string& graph, const std::vector<Binding>& inputs, const std::vector<Binding>& outputs) {
    auto it = engines_.find(graph);
    if (it == engines_.end()) throw Error(Status::internal, "no engine for graph " + graph + ".");
    Engine& e = it->second;
    std::map<std::string, BufferHandle> bound;
    for (const auto& b : inputs) bound[b.name] = b.buffer;
    for (const auto& b : outputs) bound[b.name] = b.buffer;
    if (bound.size() != e.inputs.size() + e.outputs.size())
        throw Error(Status::internal, "run(" + graph + ") binds " + std::to_string(bound.size()) + " tensors; the engine has " +
                                          std::to_string(e.inputs.size() + e.outputs.size()) + ".");
    for (const auto& name : e.inputs)
        if (!bound.count(name)) throw Error(Status::internal, "run(" + graph + ") does not bind " + name + ".");
    for (const auto& name : e.outputs)
        if (!bound.count(name)) throw Error(Status::internal, "run(" + graph + ") does not bind " + name + ".");
    Context& c = context_for(e, bound);
    std::vector<BufferHandle> buffers;
    for (const auto& kv : bound) buffers.push_back(kv.second);
    nvinfer1::IExecutionContext* context = c.context;
    const bool ok = queue_->run(buffers, c.launch, options_.cuda_graphs,
                                [context](device::Stream stream) { return context->enqueueV3(static_cast<cudaStream_t>(stream)); });
    if (c.launch.capture_failed && !warned_capture_) {
        std::fprintf(stderr, "svsr: could not capture the %s engine into a CUDA graph; running it without CUDA graphs.\n", e.graph.c_str());
        warned_capture_ = true;
    }
    if (!ok) trt_fail("TensorRT could not enqueue the " + e.graph + " engine");
}

}  // namespace

std::unique_ptr<Runner> open_tensorrt_runner(const Manifest& manifest, const TrtOptions& options) {
    return std::make_unique<TrtRunner>(manifest, options);
}

}  // namespace svsr
