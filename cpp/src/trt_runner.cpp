// The built-in TensorRT runner: TensorRT's C++ runtime API + the CUDA runtime.
//
// * Plans: manifest["engines"]["<graph>.<precision>"] records, file under the build folder; the
//   record is checked against this machine (TensorRT version, GPU name + compute capability) and
//   the plan against its sha256 before deserialising, and each engine's I/O against the manifest.
// * One IExecutionContext per (graph, set of bound buffers), i.e. per slot set (denoise: per slot
//   set and TCM on/off): created at the first run with those buffers, setTensorAddress and
//   setInputShape once, never rebound. All contexts share one user-managed scratch area
//   (setDeviceMemoryV2, sized to the largest getDeviceMemorySizeV2): they run one after another
//   on one compute stream.
// * CUDA graphs (optional): the second run of a context captures its enqueueV3 into a CUDA graph,
//   later runs replay it (the first run is eager, as TensorRT needs before a capture).
// * Copies run on a second stream, through pinned staging memory, ordered against the compute
//   stream with per-buffer events: an upload into one slot set overlaps the compute on the other
//   set; compute waits for the uploads of the buffers it binds, copies wait for the compute that
//   last touched their buffer. Downloads land in the caller's memory at synchronize() (or earlier).
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <sstream>

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

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    std::istringstream in(s);
    while (std::getline(in, cur, sep)) out.push_back(cur);
    return out;
}

struct Buffer {
    std::string label;
    std::vector<int64_t> shape;
    size_t bytes = 0;
    void* ptr = nullptr;
    cudaEvent_t ready = nullptr;       // copy stream: the last upload into it finished
    cudaEvent_t used = nullptr;        // compute stream: the last run binding it finished
    cudaEvent_t downloaded = nullptr;  // copy stream: the last download from it finished
    bool upload_pending = false, used_valid = false, download_pending = false;
    void* staging[2] = {nullptr, nullptr};  // pinned upload slots, each guarded by an event
    cudaEvent_t staged[2] = {nullptr, nullptr};
    bool staged_valid[2] = {false, false};
    int next_staging = 0;
};

struct Context {
    nvinfer1::IExecutionContext* context = nullptr;
    std::map<std::string, BufferHandle> bound;
    int runs = 0;
    cudaGraphExec_t graph = nullptr;
    bool capture_failed = false;
};

struct Engine {
    std::string graph, precision, file;
    nvinfer1::ICudaEngine* engine = nullptr;
    std::vector<std::string> inputs, outputs;
    int64_t scratch = 0;
    std::string profile_args, profile_summary;
    std::vector<std::unique_ptr<Context>> contexts;
};

struct PinnedChunk {
    void* ptr = nullptr;
    size_t bytes = 0;
    cudaEvent_t done = nullptr;
};

struct PendingDownload {
    PinnedChunk chunk;
    void* host = nullptr;
    size_t bytes = 0;
};

constexpr size_t kMaxDownloadsInFlight = 4;  // per size: bounds pinned memory whatever the clip length

class TrtRunner final : public Runner {
public:
    TrtRunner(const Manifest& m, const TrtOptions& options);
    ~TrtRunner() override { release(); }
    const char* name() const override { return "tensorrt"; }
    BufferHandle allocate(const std::string& label, const std::vector<int64_t>& shape) override;
    void free(BufferHandle buffer) override;
    void upload(BufferHandle buffer, const void* host, size_t bytes) override;
    void download(BufferHandle buffer, void* host, size_t bytes) override;
    void run(const std::string& graph, const std::vector<Binding>& inputs, const std::vector<Binding>& outputs) override;
    void synchronize() override;

private:
    void load(const TrtOptions& options);
    void release() noexcept;
    Buffer& get(BufferHandle h);
    Context& context_for(Engine& e, const std::map<std::string, BufferHandle>& bound);
    void destroy_context(Context& c);
    void launch(Engine& e, Context& c);
    PinnedChunk take_chunk(size_t bytes);
    void finish_download(PendingDownload& d);
    std::string rebuild() const { return manifest_.rebuild_command(precision_flags_ + (profile_args_.empty() ? "" : " " + profile_args_)); }
    void trt_fail(const std::string& what) const {
        throw Error(Status::runner, what + (logger_.last_error.empty() ? "" : " (TensorRT: " + logger_.last_error + ")") + ".");
    }

    Manifest manifest_;
    TrtOptions options_;
    Logger logger_;
    nvinfer1::IRuntime* runtime_ = nullptr;
    std::map<std::string, Engine> engines_;
    std::string precision_flags_, profile_args_;
    void* scratch_ = nullptr;
    int64_t scratch_bytes_ = 0;
    cudaStream_t compute_ = nullptr, copy_ = nullptr;
    std::map<BufferHandle, Buffer> buffers_;
    BufferHandle next_handle_ = 1;
    std::multimap<size_t, PinnedChunk> free_chunks_;
    std::deque<PendingDownload> pending_;
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
    std::string gpu_name(prop.name);
    while (!gpu_name.empty() && gpu_name.back() == ' ') gpu_name.pop_back();
    const std::string capability = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    const int32_t lib = getInferLibVersion();  // major * 10000 + minor * 100 + patch (TensorRT 10+)
    const std::string trt_version = std::to_string(lib / 10000) + "." + std::to_string((lib / 100) % 100) + "." + std::to_string(lib % 100);
    const std::string trt_build = std::to_string(getInferLibBuildVersion());

    // precision per graph: fixed, or auto = the first of fp16, bf16, fp32 with an engine
    std::map<std::string, std::string> chosen;
    for (const char* graph : kGraphNames) {
        std::string p = options.precision;
        if (p == "auto") {
            p.clear();
            for (const char* cand : {"fp16", "bf16", "fp32"})
                if (p.empty() && m.engines.count(std::string(graph) + "." + cand)) p = cand;
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
    if (chosen["guide"] != unet_p || vae_p != unet_p) precision_flags_ += " --vae-precision " + vae_p;
    if (flow_p != unet_p) precision_flags_ += " --flow-precision " + flow_p;
    for (const char* graph : kGraphNames) {
        auto it = m.engines.find(std::string(graph) + "." + chosen[graph]);
        if (it != m.engines.end() && profile_args_.empty()) profile_args_ = it->second.profile_args;
    }
    for (const char* graph : kGraphNames) {
        if (!m.engines.count(std::string(graph) + "." + chosen[graph]))
            throw Error(Status::manifest, m.build_dir + " has no " + chosen[graph] + " TensorRT engine for the " + graph +
                                              " graph; build it with: " + rebuild());
    }

    runtime_ = nvinfer1::createInferRuntime(logger_);
    if (!runtime_) trt_fail("TensorRT could not create a runtime");
    for (const char* graph : kGraphNames) {
        const EngineRecord& r = m.engines.at(std::string(graph) + "." + chosen[graph]);
        const std::string where = "the " + r.graph + " " + r.precision + " engine in " + m.build_dir;
        // the record against this machine (svsr.contract.engine_records.check_record)
        const std::vector<std::string> parts = split(r.tensorrt_version, '.');
        const std::string built = parts.size() >= 3 ? parts[0] + "." + parts[1] + "." + parts[2] : r.tensorrt_version;
        if (built != trt_version || (parts.size() >= 4 && parts[3] != trt_build))
            throw Error(Status::manifest, where + " was built with TensorRT " + r.tensorrt_version + " but this machine has TensorRT " +
                                              trt_version + "." + trt_build + "; rebuild it with: " + rebuild());
        if ((!r.gpu_name.empty() && r.gpu_name != gpu_name) || (!r.compute_capability.empty() && r.compute_capability != capability))
            throw Error(Status::manifest, where + " was built for " + r.gpu_name + " (compute capability " + r.compute_capability +
                                              ") but this machine has " + gpu_name + " (compute capability " + capability +
                                              "); rebuild it with: " + rebuild());
        const std::string file = join_path(m.build_dir, r.file);
        std::ifstream in(file, std::ios::binary);
        if (!in) throw Error(Status::manifest, where + " (" + file + ") is missing; rebuild it with: " + rebuild());
        const std::vector<char> plan((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (options.check_files && sha256_hex(plan.data(), plan.size()) != r.sha256)
            throw Error(Status::manifest, where + " (" + file + ") does not match its sha256 in the manifest; rebuild it with: " + rebuild());

        Engine& e = engines_[graph];  // owned from here on, so release() frees it whatever fails below
        e.graph = graph;
        e.precision = r.precision;
        e.file = file;
        e.profile_summary = r.profile_summary;
        e.engine = runtime_->deserializeCudaEngine(plan.data(), plan.size());
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
        e.scratch = e.engine->getDeviceMemorySizeV2();
        scratch_bytes_ = std::max(scratch_bytes_, e.scratch);
    }
    cuda_check(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda_check(cudaStreamCreateWithFlags(&copy_, cudaStreamNonBlocking), "cudaStreamCreate");
    scratch_bytes_ = (scratch_bytes_ + 255) / 256 * 256;
    if (scratch_bytes_ > 0) cuda_check(cudaMalloc(&scratch_, size_t(scratch_bytes_)), "cudaMalloc (TensorRT scratch)");
}

void TrtRunner::release() noexcept {
    if (compute_) cudaStreamSynchronize(compute_);
    if (copy_) cudaStreamSynchronize(copy_);
    for (auto& kv : engines_) {
        for (auto& c : kv.second.contexts) destroy_context(*c);
        delete kv.second.engine;
    }
    engines_.clear();
    std::vector<BufferHandle> handles;
    for (auto& kv : buffers_) handles.push_back(kv.first);
    for (BufferHandle h : handles) free(h);
    for (auto& d : pending_) free_chunks_.emplace(d.chunk.bytes, d.chunk);
    pending_.clear();
    for (auto& kv : free_chunks_) {
        cudaFreeHost(kv.second.ptr);
        cudaEventDestroy(kv.second.done);
    }
    free_chunks_.clear();
    if (scratch_) cudaFree(scratch_);
    if (compute_) cudaStreamDestroy(compute_);
    if (copy_) cudaStreamDestroy(copy_);
    scratch_ = nullptr;
    compute_ = copy_ = nullptr;
    delete runtime_;
    runtime_ = nullptr;
}

Buffer& TrtRunner::get(BufferHandle h) {
    auto it = buffers_.find(h);
    if (it == buffers_.end()) throw Error(Status::internal, "unknown buffer handle " + std::to_string(h) + ".");
    return it->second;
}

BufferHandle TrtRunner::allocate(const std::string& label, const std::vector<int64_t>& shape) {
    Buffer b;
    b.label = label;
    b.shape = shape;
    b.bytes = size_t(element_count(shape)) * sizeof(float);
    const BufferHandle h = next_handle_++;
    try {
        cuda_check(cudaMalloc(&b.ptr, b.bytes), ("cudaMalloc (" + label + ")").c_str());
        cuda_check(cudaMemset(b.ptr, 0, b.bytes), "cudaMemset");
        for (cudaEvent_t* ev : {&b.ready, &b.used, &b.downloaded, &b.staged[0], &b.staged[1]})
            cuda_check(cudaEventCreateWithFlags(ev, cudaEventDisableTiming), "cudaEventCreate");
    } catch (...) {
        buffers_[h] = b;
        free(h);
        throw;
    }
    buffers_[h] = b;
    return h;
}

void TrtRunner::destroy_context(Context& c) {
    if (c.graph) cudaGraphExecDestroy(c.graph);
    c.graph = nullptr;
    delete c.context;
    c.context = nullptr;
}

void TrtRunner::free(BufferHandle h) {
    auto it = buffers_.find(h);
    if (it == buffers_.end()) return;
    cudaStreamSynchronize(compute_);
    cudaStreamSynchronize(copy_);
    // contexts bound to it go with it (they are bound once)
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
    }
    Buffer& b = it->second;
    if (b.ptr) cudaFree(b.ptr);
    for (void* s : b.staging)
        if (s) cudaFreeHost(s);
    for (cudaEvent_t ev : {b.ready, b.used, b.downloaded, b.staged[0], b.staged[1]})
        if (ev) cudaEventDestroy(ev);
    buffers_.erase(it);
}

void TrtRunner::upload(BufferHandle h, const void* host, size_t bytes) {
    Buffer& b = get(h);
    if (bytes != b.bytes)
        throw Error(Status::internal, "upload of " + std::to_string(bytes) + " bytes into " + b.label + " of " + std::to_string(b.bytes) + " bytes.");
    const int slot = b.next_staging;
    b.next_staging ^= 1;
    if (!b.staging[slot])  // pinned staging only for buffers that are uploaded into
        cuda_check(cudaHostAlloc(&b.staging[slot], b.bytes, cudaHostAllocDefault), "cudaHostAlloc (upload staging)");
    if (b.staged_valid[slot]) cuda_check(cudaEventSynchronize(b.staged[slot]), "cudaEventSynchronize");  // two uploads back
    std::memcpy(b.staging[slot], host, bytes);
    if (b.used_valid) cuda_check(cudaStreamWaitEvent(copy_, b.used, 0), "cudaStreamWaitEvent");  // compute done with it
    cuda_check(cudaMemcpyAsync(b.ptr, b.staging[slot], bytes, cudaMemcpyHostToDevice, copy_), "cudaMemcpyAsync (upload)");
    cuda_check(cudaEventRecord(b.staged[slot], copy_), "cudaEventRecord");
    b.staged_valid[slot] = true;
    cuda_check(cudaEventRecord(b.ready, copy_), "cudaEventRecord");
    b.upload_pending = true;
}

PinnedChunk TrtRunner::take_chunk(size_t bytes) {
    size_t in_flight = 0;
    for (const auto& d : pending_) in_flight += d.chunk.bytes == bytes;
    if (in_flight >= kMaxDownloadsInFlight) {  // deliver the oldest download of this size early
        for (auto it = pending_.begin(); it != pending_.end(); ++it)
            if (it->chunk.bytes == bytes) {
                PendingDownload d = *it;
                pending_.erase(it);
                finish_download(d);
                break;
            }
    }
    auto it = free_chunks_.find(bytes);
    if (it != free_chunks_.end()) {
        PinnedChunk c = it->second;
        free_chunks_.erase(it);
        return c;
    }
    PinnedChunk c;
    c.bytes = bytes;
    cuda_check(cudaHostAlloc(&c.ptr, bytes, cudaHostAllocDefault), "cudaHostAlloc (download staging)");
    cuda_check(cudaEventCreateWithFlags(&c.done, cudaEventDisableTiming), "cudaEventCreate");
    return c;
}

void TrtRunner::finish_download(PendingDownload& d) {
    cuda_check(cudaEventSynchronize(d.chunk.done), "cudaEventSynchronize (download)");
    std::memcpy(d.host, d.chunk.ptr, d.bytes);
    free_chunks_.emplace(d.chunk.bytes, d.chunk);
}

void TrtRunner::download(BufferHandle h, void* host, size_t bytes) {
    Buffer& b = get(h);
    if (bytes != b.bytes)
        throw Error(Status::internal, "download of " + std::to_string(bytes) + " bytes from " + b.label + " of " + std::to_string(b.bytes) + " bytes.");
    PendingDownload d;
    d.chunk = take_chunk(bytes);
    d.host = host;
    d.bytes = bytes;
    if (b.used_valid) cuda_check(cudaStreamWaitEvent(copy_, b.used, 0), "cudaStreamWaitEvent");  // written by compute
    cuda_check(cudaMemcpyAsync(d.chunk.ptr, b.ptr, bytes, cudaMemcpyDeviceToHost, copy_), "cudaMemcpyAsync (download)");
    cuda_check(cudaEventRecord(d.chunk.done, copy_), "cudaEventRecord");
    cuda_check(cudaEventRecord(b.downloaded, copy_), "cudaEventRecord");
    b.download_pending = true;
    pending_.push_back(d);
}

Context& TrtRunner::context_for(Engine& e, const std::map<std::string, BufferHandle>& bound) {
    for (auto& c : e.contexts)
        if (c->bound == bound) return *c;
    if (e.contexts.size() >= 16)
        throw Error(Status::internal, "more than 16 binding sets for the " + e.graph + " engine: the schedule does not reuse its slots.");
    auto c = std::make_unique<Context>();
    c->bound = bound;
    c->context = e.engine->createExecutionContext(nvinfer1::ExecutionContextAllocationStrategy::kUSER_MANAGED);
    if (!c->context) trt_fail("TensorRT could not create an execution context for the " + e.graph + " engine");
    c->context->setDeviceMemoryV2(scratch_, scratch_bytes_);
    for (const std::string& name : e.inputs) {
        const Buffer& b = get(bound.at(name));
        const nvinfer1::Dims declared = e.engine->getTensorShape(name.c_str());
        bool dynamic = false;
        for (int32_t i = 0; i < declared.nbDims; ++i) dynamic = dynamic || declared.d[i] < 0;
        if (dynamic) {
            nvinfer1::Dims dims{};
            dims.nbDims = int32_t(b.shape.size());
            for (size_t i = 0; i < b.shape.size(); ++i) dims.d[i] = b.shape[i];
            if (!c->context->setInputShape(name.c_str(), dims)) {
                destroy_context(*c);
                throw Error(Status::input, "the " + e.graph + " engine does not accept " + name + " of shape " + shape_text(b.shape) +
                                               (e.profile_summary.empty() ? "" : " (its profile is " + e.profile_summary + ")") +
                                               "; rebuild the engines for this size with: " + rebuild());
            }
        } else {
            bool same = declared.nbDims == int32_t(b.shape.size());
            for (int32_t i = 0; same && i < declared.nbDims; ++i) same = declared.d[i] == b.shape[size_t(i)];
            if (!same) {
                destroy_context(*c);
                throw Error(Status::input, "the " + e.graph + " engine was built for a fixed " + name + " shape other than " + shape_text(b.shape) +
                                               "; rebuild the engines for this size with: " + rebuild());
            }
        }
    }
    for (const std::string& name : e.outputs) {
        const Buffer& b = get(bound.at(name));
        const nvinfer1::Dims got = c->context->getTensorShape(name.c_str());
        bool same = got.nbDims == int32_t(b.shape.size());
        for (int32_t i = 0; same && i < got.nbDims; ++i) same = got.d[i] == b.shape[size_t(i)];
        if (!same) {
            destroy_context(*c);
            throw Error(Status::runner, "the " + e.graph + " engine makes " + name + " of another shape than its buffer " + shape_text(b.shape) + ".");
        }
    }
    for (const auto& kv : bound)
        if (!c->context->setTensorAddress(kv.first.c_str(), get(kv.second).ptr)) {
            destroy_context(*c);
            trt_fail("TensorRT refused the address of " + e.graph + "." + kv.first);
        }
    e.contexts.push_back(std::move(c));
    return *e.contexts.back();
}

void TrtRunner::launch(Engine& e, Context& c) {
    if (options_.cuda_graphs && c.runs >= 1 && !c.capture_failed && !c.graph) {
        // capture this context's launch once its first (eager) run has settled TensorRT's state
        cudaGraph_t graph = nullptr;
        bool ok = cudaStreamBeginCapture(compute_, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
        if (ok) {
            const bool enqueued = c.context->enqueueV3(compute_);
            ok = cudaStreamEndCapture(compute_, &graph) == cudaSuccess && enqueued && graph;
        }
        if (ok) ok = cudaGraphInstantiate(&c.graph, graph, 0) == cudaSuccess;
        if (graph) cudaGraphDestroy(graph);
        if (!ok) {
            cudaGetLastError();  // clear the capture error; this context runs eagerly from now on
            c.graph = nullptr;
            c.capture_failed = true;
            if (!warned_capture_)
                std::fprintf(stderr, "svsr: could not capture the %s engine into a CUDA graph; running it without CUDA graphs.\n", e.graph.c_str());
            warned_capture_ = true;
        }
    }
    if (c.graph) {
        cuda_check(cudaGraphLaunch(c.graph, compute_), "cudaGraphLaunch");
    } else if (!c.context->enqueueV3(compute_)) {
        trt_fail("TensorRT could not enqueue the " + e.graph + " engine");
    }
    ++c.runs;
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
    // order against the copy stream: uploads into its buffers, downloads of the buffers it overwrites
    for (const auto& kv : bound) {
        Buffer& b = get(kv.second);
        if (b.upload_pending) {
            cuda_check(cudaStreamWaitEvent(compute_, b.ready, 0), "cudaStreamWaitEvent");
            b.upload_pending = false;
        }
        if (b.download_pending) {
            cuda_check(cudaStreamWaitEvent(compute_, b.downloaded, 0), "cudaStreamWaitEvent");
            b.download_pending = false;
        }
    }
    launch(e, c);
    for (const auto& kv : bound) {
        Buffer& b = get(kv.second);
        cuda_check(cudaEventRecord(b.used, compute_), "cudaEventRecord");
        b.used_valid = true;
    }
}

void TrtRunner::synchronize() {
    cuda_check(cudaStreamSynchronize(compute_), "cudaStreamSynchronize");
    cuda_check(cudaStreamSynchronize(copy_), "cudaStreamSynchronize");
    while (!pending_.empty()) {
        PendingDownload d = pending_.front();
        pending_.pop_front();
        finish_download(d);
    }
}

}  // namespace

std::unique_ptr<Runner> open_tensorrt_runner(const Manifest& manifest, const TrtOptions& options) {
    return std::make_unique<TrtRunner>(manifest, options);
}

}  // namespace svsr
