// The TensorRT runner's device work (DeviceQueue) over a recording DeviceApi double: zero-fills on
// the copy stream before the uploads and before the compute that reads them, nothing on the legacy
// default stream, CUDA-graph capture only after the warm-up run has finished with the error state
// cleared after every capture and the graph of a failed capture destroyed, and a scratch area
// that grows to the size asked for (not more) after the compute stream is idle.
#include <cstdlib>
#include <cstring>

#include "check.hpp"
#include "device_queue.hpp"

namespace {

using svsr::device::Event;
using svsr::device::Graph;
using svsr::device::GraphExec;
using svsr::device::Stream;

struct Op {
    std::string name;
    Stream stream = nullptr;
    const void* a = nullptr;  // the pointer, event or graph it acts on
};

// A DeviceApi test double: host memory for device memory, copies done at once, every call recorded;
// the capture steps can be made to fail.
class RecordingDevice final : public svsr::device::DeviceApi {
public:
    std::vector<Op> ops;
    bool fail_begin = false, fail_end = false, fail_instantiate = false, end_returns_graph = true;
    bool error_pending = false;  // what cudaGetLastError would return next
    bool capturing = false;
    int live_allocations = 0;

    void* alloc_device(size_t bytes, const std::string&) override { return add("alloc_device", nullptr, alloc(bytes)); }
    void free_device(void* p) noexcept override { add("free_device", nullptr, p), dealloc(p); }
    void* alloc_pinned(size_t bytes, const std::string&) override { return add("alloc_pinned", nullptr, alloc(bytes)); }
    void free_pinned(void* p) noexcept override { add("free_pinned", nullptr, p), dealloc(p); }
    Stream create_stream() override { return add("create_stream", nullptr, new char(0)); }
    void destroy_stream(Stream s) noexcept override { add("destroy_stream", s, nullptr), delete static_cast<char*>(s); }
    Event create_event() override { return add("create_event", nullptr, new char(0)); }
    void destroy_event(Event e) noexcept override { add("destroy_event", nullptr, e), delete static_cast<char*>(e); }
    void zero_async(void* dst, size_t bytes, Stream s) override {
        std::memset(dst, 0, bytes);
        add("zero", s, dst);
    }
    void copy_async(void* dst, const void* src, size_t bytes, bool to_device, Stream s) override {
        std::memcpy(dst, src, bytes);
        add(to_device ? "upload" : "download", s, to_device ? dst : src);
    }
    void copy_2d_async(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t row_bytes, size_t rows, Stream s) override {
        for (size_t r = 0; r < rows; ++r)
            std::memcpy(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch, row_bytes);
        add("copy_2d", s, dst);
    }
    void record(Event e, Stream s) override { add("record", s, e); }
    void wait(Stream s, Event e) override { add("wait", s, e); }
    void sync_event(Event e) override { add("sync_event", nullptr, e); }
    void sync_stream(Stream s) override { add("sync_stream", s, nullptr); }
    bool begin_capture(Stream s) override {
        add("begin_capture", s, nullptr);
        if (fail_begin) error_pending = true;
        capturing = !fail_begin;
        return !fail_begin;
    }
    bool end_capture(Stream s, Graph* graph) override {
        add("end_capture", s, nullptr);
        capturing = false;
        *graph = end_returns_graph ? new char(0) : nullptr;
        graphs += end_returns_graph;
        if (fail_end) error_pending = true;
        return !fail_end;
    }
    GraphExec instantiate(Graph g) override {
        add("instantiate", nullptr, g);
        return fail_instantiate ? nullptr : new char(0);
    }
    void destroy_graph(Graph g) noexcept override { add("destroy_graph", nullptr, g), delete static_cast<char*>(g), --graphs; }
    void destroy_graph_exec(GraphExec g) noexcept override { add("destroy_graph_exec", nullptr, g), delete static_cast<char*>(g); }
    void launch_graph(GraphExec g, Stream s) override { add("launch_graph", s, g); }
    bool clear_last_error() noexcept override {
        add("clear_last_error", nullptr, nullptr);
        const bool none = !error_pending;
        error_pending = false;
        return none;
    }

    // the enqueue of an execution context (TensorRT's enqueueV3): recorded; fails inside a capture when asked to
    bool fail_enqueue_in_capture = false;
    bool enqueue(Stream s) {
        add(capturing ? "enqueue_captured" : "enqueue", s, nullptr);
        return !(capturing && fail_enqueue_in_capture);
    }

    int graphs = 0;  // graphs made by end_capture and not destroyed
    size_t index(const std::string& name, const void* a, size_t from = 0) const {
        for (size_t i = from; i < ops.size(); ++i)
            if (ops[i].name == name && (a == nullptr || ops[i].a == a)) return i;
        return size_t(-1);
    }
    size_t count(const std::string& name) const {
        size_t n = 0;
        for (const Op& op : ops) n += op.name == name;
        return n;
    }
    std::string names(size_t from) const {
        std::string s;
        for (size_t i = from; i < ops.size(); ++i) s += (s.empty() ? "" : " ") + ops[i].name;
        return s;
    }

private:
    void* add(const char* name, Stream s, const void* a) {
        ops.push_back({name, s, a});
        return const_cast<void*>(a);
    }
    void* alloc(size_t bytes) {
        ++live_allocations;
        return std::calloc(bytes ? bytes : 1, 1);
    }
    void dealloc(void* p) {
        --live_allocations;
        std::free(p);
    }
};

}  // namespace

int main() {
    RecordingDevice dev;
    {
        svsr::device::DeviceQueue q(dev);
        const Stream compute = q.compute_stream(), copy = q.copy_stream();
        CHECK(compute && copy && compute != copy);

        // zero-fill: on the copy stream, before the first upload into the buffer, and waited for by
        // the compute stream before a run that reads a buffer nobody uploaded into
        const svsr::BufferHandle in = q.allocate("in", {1, 4, 2, 2}), out = q.allocate("out", {1, 4, 2, 2});
        void* in_ptr = q.pointer(in);
        void* out_ptr = q.pointer(out);
        const size_t zero_in = dev.index("zero", in_ptr), zero_out = dev.index("zero", out_ptr);
        CHECK(zero_in != size_t(-1) && dev.ops[zero_in].stream == copy);
        CHECK(zero_out != size_t(-1) && dev.ops[zero_out].stream == copy);
        std::vector<float> host(16);
        for (size_t i = 0; i < host.size(); ++i) host[i] = float(i) + 0.5f;
        q.upload(in, host.data(), host.size() * sizeof(float));
        const size_t upload_in = dev.index("upload", in_ptr);
        CHECK(upload_in != size_t(-1) && zero_in < upload_in && dev.ops[upload_in].stream == copy);
        CHECK(std::memcmp(in_ptr, host.data(), 64) == 0);

        svsr::device::GraphLaunch g;
        size_t mark = dev.ops.size();
        CHECK(q.run({in, out}, g, true, [&](Stream s) { return dev.enqueue(s); }));
        const size_t run1 = dev.index("enqueue", nullptr, mark);
        // the compute stream waits for the buffer's `ready` event, recorded on the copy stream after its
        // zero-fill (out) and again after its upload (in)
        for (const size_t zeroed : {zero_in, zero_out}) {
            const void* ready = dev.ops[zeroed + 1].a;
            CHECK(dev.ops[zeroed + 1].name == "record" && dev.ops[zeroed + 1].stream == copy);
            const size_t waited = dev.index("wait", ready, mark);
            CHECK_MSG(waited < run1 && dev.ops[waited].stream == compute, "the run waits for the copies into its buffers: " + dev.names(mark));
            if (zeroed == zero_in) {
                const size_t again = dev.index("record", ready, upload_in);
                CHECK(again < mark && dev.ops[again].stream == copy);
            }
        }
        CHECK(dev.ops[run1].stream == compute);

        // download: waits for the run, lands in host memory at synchronize()
        std::vector<float> back(16, -1.0f);
        mark = dev.ops.size();
        q.download(in, back.data(), 64);
        CHECK(dev.index("wait", nullptr, mark) < dev.index("download", in_ptr, mark) && back[0] == -1.0f);
        q.synchronize();
        CHECK(back == host);

        // CUDA graphs: run 2 (after waiting for the download of `in`, which it overwrites) synchronises
        // the stream (the warm-up run has finished), captures, clears the error state, instantiates,
        // destroys the captured graph and launches the instance
        mark = dev.ops.size();
        CHECK(q.run({in, out}, g, true, [&](Stream s) { return dev.enqueue(s); }));
        CHECK_MSG(dev.names(mark) ==
                      "wait sync_stream begin_capture enqueue_captured end_capture clear_last_error instantiate destroy_graph launch_graph "
                      "record record",
                  dev.names(mark));
        CHECK(dev.ops[mark + 1].stream == compute && g.exec && !g.capture_failed && dev.graphs == 0);
        mark = dev.ops.size();
        CHECK(q.run({in, out}, g, true, [&](Stream s) { return dev.enqueue(s); }));
        CHECK_MSG(dev.names(mark) == "launch_graph record record", dev.names(mark));
        // dropped (e.g. the scratch area moved): one eager run, then captured again
        q.drop_graph(g);
        CHECK(dev.count("destroy_graph_exec") == 1 && !g.exec);
        mark = dev.ops.size();
        q.run({in, out}, g, true, [&](Stream s) { return dev.enqueue(s); });
        q.run({in, out}, g, true, [&](Stream s) { return dev.enqueue(s); });
        CHECK_MSG(dev.names(mark) == "enqueue record record sync_stream begin_capture enqueue_captured end_capture clear_last_error "
                                     "instantiate destroy_graph launch_graph record record",
                  dev.names(mark));

        // failed captures: the graph (if any) destroyed, the error cleared, the work run eagerly, no further capture
        struct Failure {
            const char* what;
            bool begin, end, instantiate, enqueue, graph;
            const char* ops;
        };
        const Failure failures[] = {
            {"enqueue refused in the capture", false, false, false, true, true,
             "sync_stream begin_capture enqueue_captured end_capture clear_last_error destroy_graph enqueue record record"},
            {"capture invalidated", false, true, false, false, false,
             "sync_stream begin_capture enqueue_captured end_capture clear_last_error enqueue record record"},
            {"capture ended in error with a graph", false, true, false, false, true,
             "sync_stream begin_capture enqueue_captured end_capture clear_last_error destroy_graph enqueue record record"},
            {"capture could not begin", true, false, false, false, false, "sync_stream begin_capture clear_last_error enqueue record record"},
            {"instantiate failed", false, false, true, false, true,
             "sync_stream begin_capture enqueue_captured end_capture clear_last_error instantiate clear_last_error destroy_graph enqueue "
             "record record"},
        };
        for (const Failure& f : failures) {
            svsr::device::GraphLaunch h;
            q.run({in, out}, h, true, [&](Stream s) { return dev.enqueue(s); });
            dev.fail_begin = f.begin;
            dev.fail_end = f.end;
            dev.fail_instantiate = f.instantiate;
            dev.fail_enqueue_in_capture = f.enqueue;
            dev.end_returns_graph = f.graph;
            mark = dev.ops.size();
            CHECK_MSG(q.run({in, out}, h, true, [&](Stream s) { return dev.enqueue(s); }), f.what);
            CHECK_MSG(dev.names(mark) == f.ops, std::string(f.what) + ": " + dev.names(mark));
            CHECK_MSG(h.capture_failed && !h.exec && dev.graphs == 0 && !dev.error_pending, f.what);
            dev.fail_begin = dev.fail_end = dev.fail_instantiate = dev.fail_enqueue_in_capture = false;
            dev.end_returns_graph = true;
            mark = dev.ops.size();
            q.run({in, out}, h, true, [&](Stream s) { return dev.enqueue(s); });
            CHECK_MSG(dev.names(mark) == "enqueue record record", std::string(f.what) + ", next run: " + dev.names(mark));
        }
        // without CUDA graphs: always eager; an enqueue that fails is reported
        svsr::device::GraphLaunch eager;
        mark = dev.ops.size();
        for (int i = 0; i < 3; ++i) q.run({in}, eager, false, [&](Stream s) { return dev.enqueue(s); });
        CHECK(dev.count("begin_capture") == 7 && dev.names(mark) == "enqueue record enqueue record enqueue record");
        CHECK(!q.run({in}, eager, false, [](Stream) { return false; }));

        // no work on the legacy default stream (nullptr) ever
        bool default_stream = false;
        for (const Op& op : dev.ops)
            for (const char* name : {"zero", "upload", "download", "record", "wait", "enqueue", "launch_graph", "begin_capture", "sync_stream"})
                default_stream = default_stream || (op.name == name && op.stream == nullptr);
        CHECK(!default_stream);

        // downloads in flight are bounded per size: the fifth delivers the first early
        std::vector<std::vector<float>> five(5, std::vector<float>(16, 0.0f));
        mark = dev.ops.size();
        for (auto& v : five) q.download(in, v.data(), 64);
        CHECK(dev.count("alloc_pinned") <= 2 + 4 + 1 && five[0] == host && five[4][0] == 0.0f);
        q.synchronize();
        CHECK(five[4] == host);

        // scratch: the size asked for (rounded to 256), grown only when the compute stream is idle
        CHECK(q.reserve_scratch(1000) && q.scratch_bytes() == 1024 && q.scratch());
        CHECK(!q.reserve_scratch(1024) && !q.reserve_scratch(10));
        void* first = q.scratch();
        mark = dev.ops.size();
        CHECK(q.reserve_scratch(3000) && q.scratch_bytes() == 3072);
        CHECK_MSG(dev.names(mark) == "sync_stream free_device alloc_device" && dev.ops[mark].stream == compute && dev.ops[mark + 1].a == first,
                  dev.names(mark));
        q.release_scratch();
        CHECK(!q.scratch() && q.scratch_bytes() == 0);

        mark = dev.ops.size();
        q.free(out);
        CHECK(dev.index("sync_stream", nullptr, mark) < dev.index("free_device", out_ptr, mark));
    }
    CHECK_MSG(dev.live_allocations == 0, std::to_string(dev.live_allocations) + " allocations left");
    // tiles: copy_region moves a window of every plane device to device, zero fills; both on the compute
    // stream after the uploads into what they read, never on the copy stream
    {
        RecordingDevice tiles;
        svsr::device::DeviceQueue q(tiles);
        const Stream compute = q.compute_stream();
        const svsr::BufferHandle whole = q.allocate("whole", {1, 2, 4, 6}), part = q.allocate("part", {1, 2, 2, 3});
        std::vector<float> host(48);
        for (size_t i = 0; i < host.size(); ++i) host[i] = float(i);
        q.upload(whole, host.data(), host.size() * sizeof(float));
        const size_t uploaded = tiles.index("upload", q.pointer(whole));
        const size_t mark = tiles.ops.size();
        q.copy_region(whole, part, 1, 2, 0, 0, 2, 3);
        const float* got = static_cast<const float*>(q.pointer(part));
        // plane p, rows 1..2, columns 2..4 of the 4x6 planes
        const float want[12] = {8, 9, 10, 14, 15, 16, 32, 33, 34, 38, 39, 40};
        CHECK(std::memcmp(got, want, sizeof(want)) == 0);
        const size_t first = tiles.index("copy_2d", nullptr, mark);
        CHECK(first != size_t(-1) && tiles.ops[first].stream == compute && tiles.count("copy_2d") == 2);
        CHECK(tiles.index("wait", nullptr, mark) < first && uploaded < mark);
        q.copy_region(part, whole, 0, 0, 2, 3, 2, 3);  // back into another window
        CHECK(static_cast<const float*>(q.pointer(whole))[(0 * 4 + 2) * 6 + 3] == 8.0f && static_cast<const float*>(q.pointer(whole))[(1 * 4 + 3) * 6 + 5] == 40.0f);
        const size_t before_zero = tiles.ops.size();
        q.zero(whole);
        const size_t zeroed = tiles.index("zero", q.pointer(whole), before_zero);
        CHECK(zeroed != size_t(-1) && tiles.ops[zeroed].stream == compute);
        bool all_zero = true;
        for (int i = 0; i < 48; ++i) all_zero = all_zero && static_cast<const float*>(q.pointer(whole))[i] == 0.0f;
        CHECK(all_zero);
        CHECK_THROWS(q.copy_region(whole, part, 3, 0, 0, 0, 2, 3), svsr::Status::internal, "window outside");
        q.synchronize();
    }
    return check::finish("test_device_queue");
}
