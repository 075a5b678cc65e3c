// The TensorRT runner's device work over DeviceApi (see device_queue.hpp).
#include "device_queue.hpp"

#include <cstring>

namespace svsr {
namespace device {

namespace {

constexpr size_t kMaxDownloadsInFlight = 4;  // per size: bounds pinned memory whatever the clip length

}  // namespace

DeviceQueue::DeviceQueue(DeviceApi& api) : api_(api) {
    try {
        compute_ = api_.create_stream();
        copy_ = api_.create_stream();
    } catch (...) {
        if (compute_) api_.destroy_stream(compute_);
        throw;
    }
}

DeviceQueue::~DeviceQueue() {
    drain();
    for (auto& kv : buffers_) release(kv.second);
    buffers_.clear();
    for (auto& d : pending_) free_chunks_.emplace(d.chunk.bytes, d.chunk);
    pending_.clear();
    for (auto& kv : free_chunks_) {
        api_.free_pinned(kv.second.ptr);
        api_.destroy_event(kv.second.done);
    }
    if (scratch_) api_.free_device(scratch_);
    api_.destroy_stream(compute_);
    api_.destroy_stream(copy_);
}

void DeviceQueue::drain() noexcept {
    for (Stream s : {compute_, copy_}) {
        try {
            api_.sync_stream(s);
        } catch (...) {
        }
    }
}

DeviceQueue::Buffer& DeviceQueue::get(BufferHandle h) {
    auto it = buffers_.find(h);
    if (it == buffers_.end()) throw Error(Status::internal, "unknown buffer handle " + std::to_string(h) + ".");
    return it->second;
}

void DeviceQueue::release(Buffer& b) noexcept {
    if (b.ptr) api_.free_device(b.ptr);
    for (void* s : b.staging)
        if (s) api_.free_pinned(s);
    for (Event ev : {b.ready, b.used, b.downloaded, b.staged[0], b.staged[1]})
        if (ev) api_.destroy_event(ev);
    b = Buffer{};
}

BufferHandle DeviceQueue::allocate(const std::string& label, const std::vector<int64_t>& shape) {
    Buffer b;
    b.label = label;
    b.shape = shape;
    b.bytes = size_t(element_count(shape)) * sizeof(float);
    try {
        b.ptr = api_.alloc_device(b.bytes, label);
        for (Event* ev : {&b.ready, &b.used, &b.downloaded, &b.staged[0], &b.staged[1]}) *ev = api_.create_event();
        // zero-filled on the copy stream, so the uploads that follow on that stream come after it,
        // and a run binding the buffer before any upload waits for it (`ready`)
        api_.zero_async(b.ptr, b.bytes, copy_);
        api_.record(b.ready, copy_);
    } catch (...) {
        release(b);
        throw;
    }
    b.upload_pending = true;
    const BufferHandle h = next_handle_++;
    buffers_[h] = b;
    return h;
}

void DeviceQueue::free(BufferHandle h) {
    auto it = buffers_.find(h);
    if (it == buffers_.end()) return;
    drain();
    release(it->second);
    buffers_.erase(it);
}

void DeviceQueue::upload(BufferHandle h, const void* host, size_t bytes) {
    Buffer& b = get(h);
    if (bytes != b.bytes)
        throw Error(Status::internal, "upload of " + std::to_string(bytes) + " bytes into " + b.label + " of " + std::to_string(b.bytes) + " bytes.");
    const int slot = b.next_staging;
    b.next_staging ^= 1;
    if (!b.staging[slot]) b.staging[slot] = api_.alloc_pinned(b.bytes, "upload staging");  // only for buffers uploaded into
    if (b.staged_valid[slot]) api_.sync_event(b.staged[slot]);  // the upload two back has left this staging area
    std::memcpy(b.staging[slot], host, bytes);
    if (b.used_valid) api_.wait(copy_, b.used);  // compute is done with the old contents
    api_.copy_async(b.ptr, b.staging[slot], bytes, true, copy_);
    api_.record(b.staged[slot], copy_);
    b.staged_valid[slot] = true;
    api_.record(b.ready, copy_);
    b.upload_pending = true;
}

DeviceQueue::Chunk DeviceQueue::take_chunk(size_t bytes) {
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
        Chunk c = it->second;
        free_chunks_.erase(it);
        return c;
    }
    Chunk c;
    c.bytes = bytes;
    c.ptr = api_.alloc_pinned(bytes, "download staging");
    try {
        c.done = api_.create_event();
    } catch (...) {
        api_.free_pinned(c.ptr);
        throw;
    }
    return c;
}

void DeviceQueue::finish_download(PendingDownload& d) {
    api_.sync_event(d.chunk.done);
    std::memcpy(d.host, d.chunk.ptr, d.bytes);
    free_chunks_.emplace(d.chunk.bytes, d.chunk);
}

void DeviceQueue::download(BufferHandle h, void* host, size_t bytes) {
    Buffer& b = get(h);
    if (bytes != b.bytes)
        throw Error(Status::internal, "download of " + std::to_string(bytes) + " bytes from " + b.label + " of " + std::to_string(b.bytes) + " bytes.");
    PendingDownload d;
    d.chunk = take_chunk(bytes);
    d.host = host;
    d.bytes = bytes;
    try {
        if (b.used_valid) api_.wait(copy_, b.used);  // written by compute
        api_.copy_async(d.chunk.ptr, b.ptr, bytes, false, copy_);
        api_.record(d.chunk.done, copy_);
        api_.record(b.downloaded, copy_);
    } catch (...) {
        free_chunks_.emplace(d.chunk.bytes, d.chunk);
        throw;
    }
    pending_.push_back(d);
    b.download_pending = true;
}

bool DeviceQueue::capture(GraphLaunch& g, const std::function<bool(Stream)>& enqueue) {
    api_.sync_stream(compute_);  // the first (eager) run has finished before the capture starts, as in trtexec
    Graph graph = nullptr;
    bool ok = api_.begin_capture(compute_);
    if (ok) {
        bool enqueued = false;
        try {
            enqueued = enqueue(compute_);  // captured, not run
        } catch (...) {
        }
        ok = api_.end_capture(compute_, &graph) && enqueued && graph;  // ends the capture whatever happened
    }
    ok = api_.clear_last_error() && ok;  // after every capture: a failed one leaves its error behind
    if (ok) {
        g.exec = api_.instantiate(graph);
        ok = g.exec != nullptr;
        if (!ok) api_.clear_last_error();
    }
    if (graph) api_.destroy_graph(graph);  // instantiated, or the graph of a failed capture
    g.capture_failed = !ok;  // then this context runs eagerly
    return ok;
}

bool DeviceQueue::run(const std::vector<BufferHandle>& bound, GraphLaunch& g, bool cuda_graphs, const std::function<bool(Stream)>& enqueue) {
    for (BufferHandle h : bound) {
        Buffer& b = get(h);
        if (b.upload_pending) {
            api_.wait(compute_, b.ready);
            b.upload_pending = false;
        }
        if (b.download_pending) {
            api_.wait(compute_, b.downloaded);
            b.download_pending = false;
        }
    }
    if (cuda_graphs && g.runs >= 1 && !g.capture_failed && !g.exec) capture(g, enqueue);
    if (g.exec) {
        api_.launch_graph(g.exec, compute_);
    } else if (!enqueue(compute_)) {
        return false;
    }
    ++g.runs;
    for (BufferHandle h : bound) {
        Buffer& b = get(h);
        api_.record(b.used, compute_);
        b.used_valid = true;
    }
    return true;
}

void DeviceQueue::copy_region(BufferHandle source, BufferHandle target, int64_t sy, int64_t sx, int64_t ty, int64_t tx, int64_t rows,
                              int64_t cols) {
    Buffer& a = get(source);
    Buffer& b = get(target);
    if (a.shape.size() < 2 || b.shape.size() != a.shape.size())
        throw Error(Status::internal, "copy_region between " + a.label + " and " + b.label + " of other ranks.");
    const size_t nd = a.shape.size();
    const int64_t ah = a.shape[nd - 2], aw = a.shape[nd - 1], bh = b.shape[nd - 2], bw = b.shape[nd - 1];
    const int64_t planes = element_count(a.shape) / (ah * aw);
    if (planes != element_count(b.shape) / (bh * bw) || sy < 0 || sx < 0 || ty < 0 || tx < 0 || rows < 1 || cols < 1 || sy + rows > ah ||
        sx + cols > aw || ty + rows > bh || tx + cols > bw)
        throw Error(Status::internal, "copy_region window outside " + a.label + " or " + b.label + ".");
    GraphLaunch eager;
    char* src = static_cast<char*>(a.ptr);
    char* dst = static_cast<char*>(b.ptr);
    run({source, target}, eager, false, [&](Stream stream) {
        for (int64_t p = 0; p < planes; ++p)
            api_.copy_2d_async(dst + size_t((p * bh + ty) * bw + tx) * sizeof(float), size_t(bw) * sizeof(float),
                               src + size_t((p * ah + sy) * aw + sx) * sizeof(float), size_t(aw) * sizeof(float), size_t(cols) * sizeof(float),
                               size_t(rows), stream);
        return true;
    });
}

void DeviceQueue::zero(BufferHandle h) {
    Buffer& b = get(h);
    GraphLaunch eager;
    run({h}, eager, false, [&](Stream stream) {
        api_.zero_async(b.ptr, b.bytes, stream);
        return true;
    });
}

void DeviceQueue::drop_graph(GraphLaunch& g) noexcept {
    if (g.exec) api_.destroy_graph_exec(g.exec);
    g.exec = nullptr;
    g.runs = 0;
}

void DeviceQueue::synchronize() {
    api_.sync_stream(compute_);
    api_.sync_stream(copy_);
    while (!pending_.empty()) {
        PendingDownload d = pending_.front();
        pending_.pop_front();
        finish_download(d);
    }
}

bool DeviceQueue::reserve_scratch(int64_t bytes) {
    bytes = (bytes + 255) / 256 * 256;
    if (bytes <= scratch_bytes_) return false;
    if (scratch_) {
        api_.sync_stream(compute_);  // queued runs may still use it
        api_.free_device(scratch_);
        scratch_ = nullptr;
        scratch_bytes_ = 0;
    }
    scratch_ = api_.alloc_device(size_t(bytes), "TensorRT scratch");
    scratch_bytes_ = bytes;
    return true;
}

void DeviceQueue::release_scratch() {
    if (!scratch_) return;
    api_.sync_stream(compute_);
    api_.free_device(scratch_);
    scratch_ = nullptr;
    scratch_bytes_ = 0;
}

}  // namespace device
}  // namespace svsr
