// The device work of the TensorRT runner over an abstract DeviceApi: the CUDA runtime in
// cuda_api.cpp, a recording double in tests/test_device_queue.cpp, so that the order of zero-fills,
// copies, compute and CUDA-graph captures is checked without a GPU.
//
// * Two non-blocking streams: compute (TensorRT) and copy (zero-fills, uploads, downloads). No work
//   goes to the legacy default stream, which is not ordered with non-blocking streams.
// * Events per buffer: `ready` (copy stream: its last zero-fill or upload), `used` (compute stream:
//   the last run binding it), `downloaded` (copy stream: its last download). A run waits for
//   `ready` and `downloaded` of the buffers it binds; a copy waits for `used` of its buffer.
// * Uploads go through two pinned staging areas per buffer; downloads through pinned chunks that
//   are copied into the caller's memory at synchronize() (earlier when too many of a size are queued).
// * CUDA graphs: a context's second run is captured (once its first, eager, run has finished: the
//   stream is synchronised first, as trtexec does) and replayed from then on.
// * One scratch area for TensorRT's execution contexts, as large as the largest one in use needs.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "svsr/host.hpp"

namespace svsr {
namespace device {

using Stream = void*;
using Event = void*;
using Graph = void*;
using GraphExec = void*;

// The CUDA runtime calls the runner makes. Failures throw svsr::Error; the noexcept ones are for cleanup.
class DeviceApi {
public:
    virtual ~DeviceApi() = default;
    virtual void* alloc_device(size_t bytes, const std::string& what) = 0;
    virtual void free_device(void* ptr) noexcept = 0;
    virtual void* alloc_pinned(size_t bytes, const std::string& what) = 0;
    virtual void free_pinned(void* ptr) noexcept = 0;
    virtual Stream create_stream() = 0;  // non-blocking
    virtual void destroy_stream(Stream stream) noexcept = 0;
    virtual Event create_event() = 0;
    virtual void destroy_event(Event event) noexcept = 0;
    virtual void zero_async(void* dst, size_t bytes, Stream stream) = 0;  // cudaMemsetAsync(dst, 0, ...)
    virtual void copy_async(void* dst, const void* src, size_t bytes, bool to_device, Stream stream) = 0;
    // device to device, `rows` rows of `row_bytes` (cudaMemcpy2DAsync): tile regions
    virtual void copy_2d_async(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes, size_t rows,
                               Stream stream) = 0;
    virtual void record(Event event, Stream stream) = 0;
    virtual void wait(Stream stream, Event event) = 0;
    virtual void sync_event(Event event) = 0;
    virtual void sync_stream(Stream stream) = 0;
    // CUDA graphs: false or nullptr where the capture did not work
    virtual bool begin_capture(Stream stream) = 0;
    virtual bool end_capture(Stream stream, Graph* graph) = 0;
    virtual GraphExec instantiate(Graph graph) = 0;
    virtual void destroy_graph(Graph graph) noexcept = 0;
    virtual void destroy_graph_exec(GraphExec exec) noexcept = 0;
    virtual void launch_graph(GraphExec exec, Stream stream) = 0;
    virtual bool clear_last_error() noexcept = 0;  // cudaGetLastError: true when there was none
};

// The CUDA-graph state of one execution context.
struct GraphLaunch {
    int runs = 0;
    GraphExec exec = nullptr;
    bool capture_failed = false;
};

class DeviceQueue {
public:
    explicit DeviceQueue(DeviceApi& api);
    ~DeviceQueue();
    DeviceQueue(const DeviceQueue&) = delete;
    DeviceQueue& operator=(const DeviceQueue&) = delete;

    Stream compute_stream() const { return compute_; }
    Stream copy_stream() const { return copy_; }

    // A zero-filled float32 buffer: the zero-fill is queued on the copy stream, before any upload.
    BufferHandle allocate(const std::string& label, const std::vector<int64_t>& shape);
    void free(BufferHandle h);  // waits for both streams first
    void* pointer(BufferHandle h) { return get(h).ptr; }
    const std::vector<int64_t>& shape(BufferHandle h) { return get(h).shape; }
    void upload(BufferHandle h, const void* host, size_t bytes);
    void download(BufferHandle h, void* host, size_t bytes);
    // A run binding `bound`: ordered after the copies into and out of them, enqueued (replaying or
    // capturing a CUDA graph when `cuda_graphs`), then marked as using them. False when `enqueue`
    // failed outside a capture.
    bool run(const std::vector<BufferHandle>& bound, GraphLaunch& graph, bool cuda_graphs, const std::function<bool(Stream)>& enqueue);
    void drop_graph(GraphLaunch& graph) noexcept;  // (captured again after the next eager run)
    // Tiles: the rows x cols window of the last two dims, every leading index alike, source -> target
    // (device to device), and a zero-fill; both on the compute stream, ordered like a run over the
    // buffers they touch (eager: never captured).
    void copy_region(BufferHandle source, BufferHandle target, int64_t source_y, int64_t source_x, int64_t target_y, int64_t target_x,
                     int64_t rows, int64_t cols);
    void zero(BufferHandle h);
    void synchronize();
    void drain() noexcept;  // synchronize both streams, ignoring errors (cleanup)

    // Grows the scratch area to `bytes` (rounded up to 256); true when it moved (or was made), so
    // every context must be pointed at it again.
    bool reserve_scratch(int64_t bytes);
    void release_scratch();
    void* scratch() const { return scratch_; }
    int64_t scratch_bytes() const { return scratch_bytes_; }

private:
    struct Buffer {
        std::string label;
        std::vector<int64_t> shape;
        size_t bytes = 0;
        void* ptr = nullptr;
        Event ready = nullptr, used = nullptr, downloaded = nullptr;
        bool upload_pending = false, used_valid = false, download_pending = false;
        void* staging[2] = {nullptr, nullptr};  // pinned upload slots, each guarded by an event
        Event staged[2] = {nullptr, nullptr};
        bool staged_valid[2] = {false, false};
        int next_staging = 0;
    };
    struct Chunk {
        void* ptr = nullptr;
        size_t bytes = 0;
        Event done = nullptr;
    };
    struct PendingDownload {
        Chunk chunk;
        void* host = nullptr;
        size_t bytes = 0;
    };

    Buffer& get(BufferHandle h);
    void release(Buffer& b) noexcept;
    bool capture(GraphLaunch& graph, const std::function<bool(Stream)>& enqueue);
    Chunk take_chunk(size_t bytes);
    void finish_download(PendingDownload& d);

    DeviceApi& api_;
    Stream compute_ = nullptr, copy_ = nullptr;
    std::map<BufferHandle, Buffer> buffers_;
    BufferHandle next_handle_ = 1;
    std::multimap<size_t, Chunk> free_chunks_;
    std::deque<PendingDownload> pending_;
    void* scratch_ = nullptr;
    int64_t scratch_bytes_ = 0;
};

}  // namespace device
}  // namespace svsr
