// The C ABI (include/svsr.h) over svsr::Upscaler, and the runner made of C callbacks.
#include <cstddef>
#include <sys/stat.h>

#include <cstring>
#include <new>

#include "svsr.h"
#include "svsr/host.hpp"
#include "svsr/trt_runner.hpp"

using svsr::Error;
using svsr::Status;

struct svsr_upscaler {
    std::unique_ptr<svsr::Upscaler> upscaler;
    std::string error;
    std::string runner_name;
    svsr_progress_fn progress = nullptr;
    void* progress_user = nullptr;
};

namespace {

thread_local std::string g_last_error;

// A Runner made of the caller's C callbacks.
class CallbackRunner final : public svsr::Runner {
public:
    explicit CallbackRunner(const svsr_runner_callbacks& cb) : cb_(cb) {}
    ~CallbackRunner() override {
        if (cb_.destroy) cb_.destroy(cb_.user);
    }
    const char* name() const override { return "callbacks"; }

    svsr::BufferHandle allocate(const std::string& label, const std::vector<int64_t>& shape) override {
        svsr_buffer out = 0;
        check(cb_.allocate(cb_.user, label.c_str(), shape.data(), int(shape.size()), SVSR_FLOAT32, &out), "allocate", label);
        if (out == 0) throw Error(Status::runner, "the runner's allocate callback returned a zero handle for " + label + ".");
        return out;
    }
    void free(svsr::BufferHandle buffer) override {
        if (cb_.free) cb_.free(cb_.user, buffer);
    }
    void upload(svsr::BufferHandle buffer, const void* host, size_t bytes) override {
        check(cb_.upload(cb_.user, buffer, host, bytes), "upload", "");
    }
    void download(svsr::BufferHandle buffer, void* host, size_t bytes) override {
        check(cb_.download(cb_.user, buffer, host, bytes), "download", "");
    }
    void run(const std::string& graph, const std::vector<svsr::Binding>& inputs, const std::vector<svsr::Binding>& outputs) override {
        in_names_.clear(); in_bufs_.clear(); out_names_.clear(); out_bufs_.clear();
        for (const auto& b : inputs) { in_names_.push_back(b.name); in_bufs_.push_back(b.buffer); }
        for (const auto& b : outputs) { out_names_.push_back(b.name); out_bufs_.push_back(b.buffer); }
        check(cb_.run(cb_.user, graph.c_str(), in_names_.data(), in_bufs_.data(), int(in_bufs_.size()), out_names_.data(),
                      out_bufs_.data(), int(out_bufs_.size())),
              "run", graph);
    }
    void synchronize() override { check(cb_.synchronize(cb_.user), "synchronize", ""); }
    void copy_region(svsr::BufferHandle source, svsr::BufferHandle target, int64_t source_y, int64_t source_x, int64_t target_y,
                     int64_t target_x, int64_t rows, int64_t cols) override {
        if (!cb_.copy_region) return Runner::copy_region(source, target, source_y, source_x, target_y, target_x, rows, cols);
        check(cb_.copy_region(cb_.user, source, target, source_y, source_x, target_y, target_x, rows, cols), "copy_region", "");
    }
    void zero(svsr::BufferHandle buffer) override {
        if (!cb_.zero) return Runner::zero(buffer);
        check(cb_.zero(cb_.user, buffer), "zero", "");
    }

private:
    void check(int rc, const char* what, const std::string& about) {
        if (rc == 0) return;
        std::string msg = std::string("the runner's ") + what + " callback" + (about.empty() ? "" : " (" + about + ")") +
                          " failed with code " + std::to_string(rc);
        if (cb_.last_error) {
            const char* detail = cb_.last_error(cb_.user);
            if (detail && *detail) msg += ": " + std::string(detail);
        }
        throw Error(Status::runner, msg + ".");
    }

    svsr_runner_callbacks cb_;
    std::vector<const char*> in_names_, out_names_;
    std::vector<svsr_buffer> in_bufs_, out_bufs_;
};

svsr_status fail(svsr_upscaler* up, svsr_status status, const std::string& message) {
    if (up) up->error = message;
    g_last_error = message;
    return status;
}

template <typename F>
svsr_status guarded(svsr_upscaler* up, F&& body) {
    try {
        body();
        if (up) up->error.clear();
        return SVSR_OK;
    } catch (const Error& e) {
        return fail(up, static_cast<svsr_status>(e.status()), e.what());
    } catch (const std::bad_alloc&) {
        return fail(up, SVSR_ERROR_OUT_OF_MEMORY, "out of host memory.");
    } catch (const std::exception& e) {
        return fail(up, SVSR_ERROR_INTERNAL, std::string("internal error: ") + e.what());
    } catch (...) {
        return fail(up, SVSR_ERROR_INTERNAL, "internal error.");
    }
}

}  // namespace

extern "C" {

svsr_status svsr_open(const char* build_dir, const svsr_runner_callbacks* runner, svsr_upscaler** out) {
    return svsr_open_ex(build_dir, runner, nullptr, out);
}

svsr_status svsr_open_ex(const char* build_dir, const svsr_runner_callbacks* runner, const svsr_open_options* options,
                         svsr_upscaler** out) {
    if (!out) return fail(nullptr, SVSR_ERROR_INVALID_ARGUMENT, "svsr_open: out is NULL.");
    *out = nullptr;
    if (!build_dir) return fail(nullptr, SVSR_ERROR_INVALID_ARGUMENT, "svsr_open: build_dir is NULL.");
    svsr_open_options opts{};
    opts.struct_size = sizeof(opts);
    opts.cuda_graphs = 1;
    if (options) {
        if (options->struct_size < sizeof(uint32_t) || options->struct_size > sizeof(svsr_open_options))
            return fail(nullptr, SVSR_ERROR_INVALID_ARGUMENT, "svsr_open_ex: options->struct_size must be sizeof(svsr_open_options).");
        std::memcpy(&opts, options, options->struct_size);
    }
    std::unique_ptr<svsr_upscaler> handle(new (std::nothrow) svsr_upscaler);
    if (!handle) return fail(nullptr, SVSR_ERROR_OUT_OF_MEMORY, "out of host memory.");
    const svsr_status status = guarded(nullptr, [&] {
        svsr::Manifest manifest = svsr::load_manifest(build_dir);
        std::unique_ptr<svsr::Runner> r;
        if (runner) {
            if (runner->abi_version < 1 || runner->abi_version > SVSR_ABI_VERSION)
                throw Error(Status::invalid_argument, "svsr_open: the runner callbacks have abi_version " + std::to_string(runner->abi_version) +
                                                          "; this library expects 1 to " + std::to_string(SVSR_ABI_VERSION) + ".");
            // a version 1 table ends before the tile callbacks: read no further than it goes
            svsr_runner_callbacks table{};
            std::memcpy(&table, runner, runner->abi_version == 1 ? offsetof(svsr_runner_callbacks, copy_region) : sizeof(table));
            if (!table.allocate || !table.upload || !table.download || !table.run || !table.synchronize)
                throw Error(Status::invalid_argument, "svsr_open: the runner needs allocate, upload, download, run and synchronize callbacks.");
            if (!opts.skip_file_checks) svsr::check_graph_files(manifest, false);
            r.reset(new CallbackRunner(table));
        } else {
#if defined(SVSR_HAVE_TENSORRT)
            svsr::TrtOptions trt;
            if (opts.precision) trt.precision = opts.precision;
            trt.cuda_graphs = opts.cuda_graphs != 0;
            trt.device = opts.device;
            trt.check_files = !opts.skip_file_checks;
            if (opts.lean_runtime) trt.lean_runtime = opts.lean_runtime;
            r = svsr::open_tensorrt_runner(manifest, trt);
#else
            throw Error(Status::unsupported,
                        "this svsr_host library was built without TensorRT, so it has no built-in runner; pass runner callbacks, "
                        "or rebuild it with -DSVSR_WITH_TENSORRT=ON (see cpp/README.md).");
#endif
        }
        handle->runner_name = r->name();
        handle->upscaler.reset(new svsr::Upscaler(std::move(manifest), std::move(r)));
    });
    if (status != SVSR_OK) return status;
    *out = handle.release();
    return SVSR_OK;
}

svsr_status svsr_set_progress(svsr_upscaler* up, svsr_progress_fn fn, void* user) {
    if (!up) return fail(nullptr, SVSR_ERROR_INVALID_ARGUMENT, "svsr_set_progress: upscaler is NULL.");
    up->progress = fn;
    up->progress_user = user;
    if (fn)
        up->upscaler->set_progress([up](const char* phase, int done, int total) {
            return up->progress(up->progress_user, phase, done, total) == 0;
        });
    else
        up->upscaler->set_progress(nullptr);
    up->error.clear();
    return SVSR_OK;
}

static svsr_status upscale(svsr_upscaler* up, const uint8_t* frames, int n, int h, int w, int steps, uint64_t seed, float* f32,
                           uint8_t* u8) {
    if (!up) return fail(nullptr, SVSR_ERROR_INVALID_ARGUMENT, "svsr_upscale: upscaler is NULL.");
    if (!frames) return fail(up, SVSR_ERROR_INVALID_ARGUMENT, "svsr_upscale: frames is NULL.");
    if (!f32 && !u8) return fail(up, SVSR_ERROR_INVALID_ARGUMENT, "svsr_upscale: out is NULL.");
    return guarded(up, [&] { up->upscaler->upscale(frames, n, h, w, steps, seed, f32, u8); });
}

svsr_status svsr_upscale_f32(svsr_upscaler* up, const uint8_t* frames, int n, int h, int w, int steps, uint64_t seed, float* out) {
    return upscale(up, frames, n, h, w, steps, seed, out, nullptr);
}

svsr_status svsr_upscale_u8(svsr_upscaler* up, const uint8_t* frames, int n, int h, int w, int steps, uint64_t seed, uint8_t* out) {
    return upscale(up, frames, n, h, w, steps, seed, nullptr, out);
}

svsr_status svsr_upscale_stream_u8(svsr_upscaler* up, int h, int w, int steps, uint64_t seed, svsr_read_frame_fn read,
                                   svsr_write_frame_fn write, void* user) {
    if (!up) return fail(nullptr, SVSR_ERROR_INVALID_ARGUMENT, "svsr_upscale_stream_u8: upscaler is NULL.");
    if (!read || !write) return fail(up, SVSR_ERROR_INVALID_ARGUMENT, "svsr_upscale_stream_u8: read or write is NULL.");
    return guarded(up, [&] {
        std::vector<uint8_t> frame;
        auto source = [&](int k) -> const uint8_t* {
            frame.resize(size_t(h) * size_t(w) * 3);  // once: h and w were checked before the first read
            const int rc = read(user, k, frame.data());
            if (rc == 0) return nullptr;
            if (rc != 1) throw Error(Status::input, "the read callback failed with code " + std::to_string(rc) + " at frame " + std::to_string(k) + ".");
            return frame.data();
        };
        auto sink = [&](int k, const uint8_t* out) {
            const int rc = write(user, k, out);
            if (rc != 0) throw Error(Status::cancelled, "the write callback stopped with code " + std::to_string(rc) + " at frame " + std::to_string(k) + ".");
        };
        up->upscaler->upscale_stream(h, w, steps, seed, source, sink);
    });
}

svsr_status svsr_set_host_memory(svsr_upscaler* up, uint64_t budget, const char* work_dir) {
    if (!up) return fail(nullptr, SVSR_ERROR_INVALID_ARGUMENT, "svsr_set_host_memory: upscaler is NULL.");
    if (work_dir) {
        struct stat st;
        if (!*work_dir || ::stat(work_dir, &st) != 0 || !S_ISDIR(st.st_mode))
            return fail(up, SVSR_ERROR_INVALID_ARGUMENT, std::string("the work folder ") + work_dir + " does not exist; create it or choose another one.");
    }
    svsr::HostMemoryOptions options;
    options.budget = budget;
    options.work_dir = work_dir ? work_dir : "";
    up->upscaler->set_host_memory(options);
    up->error.clear();
    return SVSR_OK;
}

svsr_status svsr_set_scheduler(svsr_upscaler* up, const char* scheduler, double eta) {
    if (!up) return fail(nullptr, SVSR_ERROR_INVALID_ARGUMENT, "svsr_set_scheduler: upscaler is NULL.");
    return guarded(up, [&] {
        svsr::Schedule schedule;
        schedule.scheduler = scheduler ? scheduler : svsr::kDefaultScheduler;
        schedule.eta = eta;
        up->upscaler->set_schedule(schedule);
    });
}

svsr_status svsr_set_tiles(svsr_upscaler* up, int tile_height, int tile_width, int overlap) {
    if (!up) return fail(nullptr, SVSR_ERROR_INVALID_ARGUMENT, "svsr_set_tiles: upscaler is NULL.");
    return guarded(up, [&] { up->upscaler->set_tiles(tile_height, tile_width, overlap); });
}

svsr_status svsr_set_flow_scale(svsr_upscaler* up, int scale) {
    if (!up) return fail(nullptr, SVSR_ERROR_INVALID_ARGUMENT, "svsr_set_flow_scale: upscaler is NULL.");
    return guarded(up, [&] { up->upscaler->set_flow_scale(scale); });
}

svsr_status svsr_host_memory_used(svsr_upscaler* up, uint64_t* in_ram, uint64_t* in_files) {
    if (!up || !in_ram || !in_files) return fail(up, SVSR_ERROR_INVALID_ARGUMENT, "svsr_host_memory_used: NULL argument.");
    const svsr::HostMemoryUse use = up->upscaler->host_memory_use();
    *in_ram = use.in_ram;
    *in_files = use.in_files;
    return SVSR_OK;
}

svsr_status svsr_buffer_bytes(svsr_upscaler* up, uint64_t* out) {
    if (!up || !out) return fail(up, SVSR_ERROR_INVALID_ARGUMENT, "svsr_buffer_bytes: NULL argument.");
    *out = up->upscaler->buffer_bytes();
    return SVSR_OK;
}

const char* svsr_runner_name(svsr_upscaler* up) { return up ? up->runner_name.c_str() : ""; }

void svsr_close(svsr_upscaler* up) {
    if (!up) return;
    try {
        up->upscaler.reset();
    } catch (...) {
    }
    delete up;
}

const char* svsr_last_error(const svsr_upscaler* up) { return up ? up->error.c_str() : g_last_error.c_str(); }

const char* svsr_status_name(svsr_status status) {
    switch (status) {
        case SVSR_OK: return "ok";
        case SVSR_ERROR_INVALID_ARGUMENT: return "invalid argument";
        case SVSR_ERROR_MANIFEST: return "manifest error";
        case SVSR_ERROR_INPUT: return "input error";
        case SVSR_ERROR_UNSUPPORTED: return "unsupported";
        case SVSR_ERROR_RUNNER: return "runner error";
        case SVSR_ERROR_OUT_OF_MEMORY: return "out of memory";
        case SVSR_ERROR_CANCELLED: return "cancelled";
        case SVSR_ERROR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

svsr_status svsr_philox_normal(uint64_t seed, uint32_t draw, uint32_t frame, float* out, uint64_t n) {
    if (!out && n) return fail(nullptr, SVSR_ERROR_INVALID_ARGUMENT, "svsr_philox_normal: out is NULL.");
    return guarded(nullptr, [&] { svsr::philox_normal(seed, draw, frame, out, n); });
}

int svsr_has_tensorrt(void) {
#if defined(SVSR_HAVE_TENSORRT)
    return 1;
#else
    return 0;
#endif
}

const char* svsr_version(void) { return "0.2.0"; }

}  // extern "C"
