// DeviceApi over the CUDA runtime (compiled with the TensorRT runner).
#include <cuda_runtime_api.h>

#include "cuda_api.hpp"

namespace svsr {
namespace device {

namespace {

void check(cudaError_t status, const std::string& what) {
    if (status != cudaSuccess)
        throw Error(status == cudaErrorMemoryAllocation ? Status::out_of_memory : Status::runner,
                    "CUDA " + what + " failed: " + cudaGetErrorString(status) + ".");
}

cudaStream_t S(Stream s) { return static_cast<cudaStream_t>(s); }
cudaEvent_t E(Event e) { return static_cast<cudaEvent_t>(e); }

class CudaApi final : public DeviceApi {
public:
    void* alloc_device(size_t bytes, const std::string& what) override {
        void* p = nullptr;
        check(cudaMalloc(&p, bytes), "cudaMalloc (" + what + ")");
        return p;
    }
    void free_device(void* ptr) noexcept override { cudaFree(ptr); }
    void* alloc_pinned(size_t bytes, const std::string& what) override {
        void* p = nullptr;
        check(cudaHostAlloc(&p, bytes, cudaHostAllocDefault), "cudaHostAlloc (" + what + ")");
        return p;
    }
    void free_pinned(void* ptr) noexcept override { cudaFreeHost(ptr); }
    Stream create_stream() override {
        cudaStream_t s = nullptr;
        check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
        return s;
    }
    void destroy_stream(Stream stream) noexcept override {
        if (stream) cudaStreamDestroy(S(stream));
    }
    Event create_event() override {
        cudaEvent_t e = nullptr;
        check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags");
        return e;
    }
    void destroy_event(Event event) noexcept override {
        if (event) cudaEventDestroy(E(event));
    }
    void zero_async(void* dst, size_t bytes, Stream stream) override {
        check(cudaMemsetAsync(dst, 0, bytes, S(stream)), "cudaMemsetAsync");
    }
    void copy_async(void* dst, const void* src, size_t bytes, bool to_device, Stream stream) override {
        check(cudaMemcpyAsync(dst, src, bytes, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost, S(stream)),
              to_device ? "cudaMemcpyAsync (upload)" : "cudaMemcpyAsync (download)");
    }
    void copy_2d_async(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes, size_t rows, Stream stream) override {
        check(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows, cudaMemcpyDeviceToDevice, S(stream)),
              "cudaMemcpy2DAsync (tile region)");
    }
    void record(Event event, Stream stream) override { check(cudaEventRecord(E(event), S(stream)), "cudaEventRecord"); }
    void wait(Stream stream, Event event) override { check(cudaStreamWaitEvent(S(stream), E(event), 0), "cudaStreamWaitEvent"); }
    void sync_event(Event event) override { check(cudaEventSynchronize(E(event)), "cudaEventSynchronize"); }
    void sync_stream(Stream stream) override { check(cudaStreamSynchronize(S(stream)), "cudaStreamSynchronize"); }
    bool begin_capture(Stream stream) override {
        return cudaStreamBeginCapture(S(stream), cudaStreamCaptureModeThreadLocal) == cudaSuccess;
    }
    bool end_capture(Stream stream, Graph* graph) override {
        cudaGraph_t g = nullptr;
        const bool ok = cudaStreamEndCapture(S(stream), &g) == cudaSuccess;
        *graph = g;  // may be set even when the capture failed: the caller destroys it
        return ok;
    }
    GraphExec instantiate(Graph graph) override {
        cudaGraphExec_t exec = nullptr;
        if (cudaGraphInstantiate(&exec, static_cast<cudaGraph_t>(graph), 0) != cudaSuccess) return nullptr;
        return exec;
    }
    void destroy_graph(Graph graph) noexcept override { cudaGraphDestroy(static_cast<cudaGraph_t>(graph)); }
    void destroy_graph_exec(GraphExec exec) noexcept override { cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec)); }
    void launch_graph(GraphExec exec, Stream stream) override {
        check(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), S(stream)), "cudaGraphLaunch");
    }
    bool clear_last_error() noexcept override { return cudaGetLastError() == cudaSuccess; }
};

}  // namespace

std::unique_ptr<DeviceApi> make_cuda_api() { return std::make_unique<CudaApi>(); }

}  // namespace device
}  // namespace svsr
