// The C ABI: open refusals, last-error messages, and a clip through a callback runner (the same
// stand-in graphs as test_schedule), compared with the direct algorithm.
//   test_c_api FIXTURE_DIR
#include <cmath>
#include <sys/stat.h>

#include "fixtures.hpp"
#include "svsr.h"

namespace {

struct Callbacks {
    fixtures::FakeRunner runner;
    int fail_run_at = -1;
    int runs = 0;
    bool destroyed = false;
};

int cb_allocate(void* u, const char* label, const int64_t* shape, int ndim, svsr_dtype dtype, svsr_buffer* out) {
    if (dtype != SVSR_FLOAT32) return 1;
    *out = static_cast<Callbacks*>(u)->runner.allocate(label, std::vector<int64_t>(shape, shape + ndim));
    return 0;
}
int cb_upload(void* u, svsr_buffer b, const void* host, size_t bytes) {
    static_cast<Callbacks*>(u)->runner.upload(b, host, bytes);
    return 0;
}
int cb_download(void* u, svsr_buffer b, void* host, size_t bytes) {
    static_cast<Callbacks*>(u)->runner.download(b, host, bytes);
    return 0;
}
int cb_run(void* u, const char* graph, const char* const* in_names, const svsr_buffer* in, int n_in, const char* const* out_names,
           const svsr_buffer* out, int n_out) {
    auto* c = static_cast<Callbacks*>(u);
    if (c->runs++ == c->fail_run_at) return 42;
    std::vector<svsr::Binding> i, o;
    for (int k = 0; k < n_in; ++k) i.push_back({in_names[k], in[k]});
    for (int k = 0; k < n_out; ++k) o.push_back({out_names[k], out[k]});
    c->runner.run(graph, i, o);
    return 0;
}
int cb_sync(void* u) {
    static_cast<Callbacks*>(u)->runner.synchronize();
    return 0;
}
void cb_free(void* u, svsr_buffer b) { static_cast<Callbacks*>(u)->runner.free(b); }
int cb_copy_region(void* u, svsr_buffer source, svsr_buffer target, int64_t sy, int64_t sx, int64_t ty, int64_t tx, int64_t rows, int64_t cols) {
    static_cast<Callbacks*>(u)->runner.copy_region(source, target, sy, sx, ty, tx, rows, cols);
    return 0;
}
int cb_zero(void* u, svsr_buffer b) {
    static_cast<Callbacks*>(u)->runner.zero(b);
    return 0;
}
const char* cb_error(void*) { return "the stand-in graph failed on purpose"; }
void cb_destroy(void* u) { static_cast<Callbacks*>(u)->destroyed = true; }

svsr_runner_callbacks table(Callbacks* c) {
    svsr_runner_callbacks t{};
    t.abi_version = SVSR_ABI_VERSION;
    t.user = c;
    t.allocate = cb_allocate;
    t.upload = cb_upload;
    t.download = cb_download;
    t.run = cb_run;
    t.synchronize = cb_sync;
    t.free = cb_free;
    t.last_error = cb_error;
    t.destroy = cb_destroy;
    t.copy_region = cb_copy_region;
    t.zero = cb_zero;
    return t;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    const std::string dir = argv[1];
    ::mkdir(dir.c_str(), 0755);
    const std::string build = dir + "/build";
    ::mkdir(build.c_str(), 0755);
    check::write_file(build + "/manifest.json", fixtures::valid_manifest().dump());
    for (const char* g : svsr::kGraphNames) ::remove((build + "/" + g + ".onnx").c_str());

    svsr_upscaler* up = nullptr;
    Callbacks cbs;
    svsr_runner_callbacks t = table(&cbs);

    // refusals, with the thread-local message
    CHECK(svsr_open(nullptr, &t, &up) == SVSR_ERROR_INVALID_ARGUMENT && up == nullptr);
    CHECK(svsr_open((dir + "/missing").c_str(), &t, &up) == SVSR_ERROR_MANIFEST);
    CHECK(std::string(svsr_last_error(nullptr)).find("does not exist") != std::string::npos);
    CHECK(svsr_open(build.c_str(), &t, &up) == SVSR_ERROR_MANIFEST);  // graph files missing
    CHECK(std::string(svsr_last_error(nullptr)).find("flow.onnx) named in the manifest is missing") != std::string::npos);
    svsr_runner_callbacks bad = t;
    bad.abi_version = 99;
    svsr_open_options opts{};
    opts.struct_size = sizeof(opts);
    opts.skip_file_checks = 1;
    CHECK(svsr_open_ex(build.c_str(), &bad, &opts, &up) == SVSR_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(svsr_last_error(nullptr)).find("abi_version 99; this library expects 1 to 3") != std::string::npos);
    bad = t;
    bad.run = nullptr;
    CHECK(svsr_open_ex(build.c_str(), &bad, &opts, &up) == SVSR_ERROR_INVALID_ARGUMENT);
    if (!svsr_has_tensorrt()) {
        CHECK(svsr_open(build.c_str(), nullptr, &up) == SVSR_ERROR_UNSUPPORTED);
        CHECK(std::string(svsr_last_error(nullptr)).find("built without TensorRT") != std::string::npos);
    }

    // a clip through the callbacks
    for (const char* g : svsr::kGraphNames) check::write_file(build + "/" + g + ".onnx", "stand-in");
    CHECK(svsr_open(build.c_str(), &t, &up) == SVSR_OK && up != nullptr);
    CHECK(std::string(svsr_runner_name(up)) == "callbacks");
    const int n = 3, h = 36, w = 34, steps = 2;
    const std::vector<uint8_t> frames = fixtures::random_frames(n, h, w, 9);
    std::vector<float> out(size_t(n) * 16 * h * w * 3);
    CHECK(svsr_upscale_f32(up, frames.data(), n, h, w, steps, 11, out.data()) == SVSR_OK);
    CHECK(std::string(svsr_last_error(up)).empty());
    const svsr::Manifest m = svsr::load_manifest(build);
    const std::vector<float> want = fixtures::reference_upscale(m, frames, n, h, w, steps, 11);
    CHECK(out.size() == want.size() && std::memcmp(out.data(), want.data(), out.size() * 4) == 0);
    uint64_t bytes = 0;
    CHECK(svsr_buffer_bytes(up, &bytes) == SVSR_OK && bytes == cbs.runner.live_bytes());

    // progress + cancel, input errors, runner failures: status and message
    int calls = 0;
    auto progress = [](void* u, const char*, int, int) -> int { return ++*static_cast<int*>(u) == 3 ? 1 : 0; };
    CHECK(svsr_set_progress(up, progress, &calls) == SVSR_OK);
    CHECK(svsr_upscale_f32(up, frames.data(), n, h, w, steps, 11, out.data()) == SVSR_ERROR_CANCELLED);
    CHECK(svsr_set_progress(up, nullptr, nullptr) == SVSR_OK);
    CHECK(svsr_upscale_f32(up, frames.data(), n, 20, w, steps, 11, out.data()) == SVSR_ERROR_INPUT);
    CHECK(std::string(svsr_last_error(up)).find("too small") != std::string::npos);
    CHECK(svsr_upscale_f32(up, frames.data(), n, h, w, 0, 11, out.data()) == SVSR_ERROR_INVALID_ARGUMENT);
    CHECK(svsr_upscale_f32(up, nullptr, n, h, w, steps, 11, out.data()) == SVSR_ERROR_INVALID_ARGUMENT);
    cbs.runs = 0;
    cbs.fail_run_at = 2;
    CHECK(svsr_upscale_f32(up, frames.data(), n, h, w, steps, 11, out.data()) == SVSR_ERROR_RUNNER);
    CHECK(std::string(svsr_last_error(up)).find("run callback (flow) failed with code 42: the stand-in graph failed on purpose") !=
          std::string::npos);
    cbs.fail_run_at = -1;
    std::vector<uint8_t> out_u8(out.size());
    CHECK(svsr_upscale_u8(up, frames.data(), n, h, w, steps, 11, out_u8.data()) == SVSR_OK);
    bool u8_ok = true;
    for (size_t i = 0; i < out.size(); ++i) u8_ok = u8_ok && out_u8[i] == svsr::to_uint8(want[i]);
    CHECK(u8_ok);

    // schedules: dpmpp-2m through the callbacks equals the direct algorithm; bad names and etas are refused
    CHECK(svsr_set_scheduler(up, "dpmpp-2m", 0.0) == SVSR_OK);
    CHECK(svsr_upscale_f32(up, frames.data(), n, h, w, 3, 11, out.data()) == SVSR_OK);
    svsr::Schedule dpmpp;
    dpmpp.scheduler = "dpmpp-2m";
    const std::vector<float> want_dpmpp = fixtures::reference_upscale(m, frames, n, h, w, 3, 11, dpmpp);
    CHECK(std::memcmp(out.data(), want_dpmpp.data(), out.size() * 4) == 0);
    CHECK(svsr_set_scheduler(up, "euler", 0.0) == SVSR_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(svsr_last_error(up)).find("scheduler 'euler' is not one of ddpm, ddim, dpmpp-2m") != std::string::npos);
    CHECK(svsr_set_scheduler(up, "ddim", 2.0) == SVSR_ERROR_INVALID_ARGUMENT);
    CHECK(svsr_set_scheduler(up, "ddpm", 0.5) == SVSR_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(svsr_last_error(up)).find("has no effect with the ddpm scheduler") != std::string::npos);
    CHECK(svsr_set_scheduler(nullptr, "ddim", 0.0) == SVSR_ERROR_INVALID_ARGUMENT);
    CHECK(svsr_set_scheduler(up, nullptr, 0.0) == SVSR_OK);  // back to ddpm
    // tiles through the callbacks' copy_region and zero: close to the untiled frames (the blend's rounding)
    CHECK(svsr_set_tiles(up, 32, 8, 8) == SVSR_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(svsr_last_error(up)).find("--tile 32x8 is below the smallest tile") != std::string::npos);
    CHECK(svsr_set_tiles(up, 32, 32, 8) == SVSR_OK);
    CHECK(svsr_upscale_f32(up, frames.data(), n, h, w, steps, 11, out.data()) == SVSR_OK);
    float worst = 0.0f;
    for (size_t i = 0; i < out.size(); ++i) worst = std::max(worst, std::fabs(out[i] - want[i]));
    CHECK_MSG(worst <= 2e-5f && cbs.runner.zeros > 0 && cbs.runner.copies > 0, "tiled through callbacks: " + std::to_string(worst));
    CHECK(svsr_set_tiles(up, 0, 0, 0) == SVSR_OK);
    CHECK(svsr_upscale_f32(up, frames.data(), n, h, w, steps, 11, out.data()) == SVSR_OK);
    CHECK(std::memcmp(out.data(), want.data(), out.size() * 4) == 0);
    // flow scales (ABI 3): flow_x2 runs the flows; frames too small for the scale are an input error in one sentence
    CHECK(svsr_set_flow_scale(up, 3) == SVSR_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(svsr_last_error(up)) == "flow scale 3 is not a flow scale; use 4 (the original), 2 or 1.");
    CHECK(svsr_set_flow_scale(nullptr, 2) == SVSR_ERROR_INVALID_ARGUMENT);
    CHECK(svsr_set_flow_scale(up, 2) == SVSR_OK);
    CHECK(svsr_upscale_f32(up, frames.data(), n, h, w, steps, 11, out.data()) == SVSR_ERROR_INPUT);
    CHECK(std::string(svsr_last_error(up)) ==
          "--flow-scale 2 needs frames of at least 64 px per side (RAFT sees them at x2), but these are 36x36; use --flow-scale 4.");
    const int h2 = 64, w2 = 68;
    const std::vector<uint8_t> frames2 = fixtures::random_frames(n, h2, w2, 10);
    std::vector<float> out2(size_t(n) * 16 * h2 * w2 * 3);
    CHECK(svsr_upscale_f32(up, frames2.data(), n, h2, w2, steps, 11, out2.data()) == SVSR_OK);
    const std::vector<float> want2 = fixtures::reference_upscale(m, frames2, n, h2, w2, steps, 11, svsr::Schedule(), 2);
    CHECK(std::memcmp(out2.data(), want2.data(), out2.size() * 4) == 0);
    CHECK(svsr_set_flow_scale(up, 4) == SVSR_OK);
    svsr_close(up);
    CHECK(cbs.destroyed && cbs.runner.live_buffers() == 0);

    // a version 2 table (the same layout) still opens
    {
        Callbacks v2cbs;
        svsr_runner_callbacks v2 = table(&v2cbs);
        v2.abi_version = 2;
        svsr_upscaler* older = nullptr;
        CHECK(svsr_open(build.c_str(), &v2, &older) == SVSR_OK);
        CHECK(svsr_upscale_f32(older, frames.data(), n, h, w, steps, 11, out.data()) == SVSR_OK);
        CHECK(std::memcmp(out.data(), want.data(), out.size() * 4) == 0);
        svsr_close(older);
    }

    // a version 1 table (no tile callbacks) still opens and runs whole frames; tiles then fail in a sentence
    {
        Callbacks v1cbs;
        svsr_runner_callbacks v1 = table(&v1cbs);
        v1.abi_version = 1;
        v1.copy_region = nullptr;  // a version 1 caller's struct ends before these
        v1.zero = nullptr;
        svsr_upscaler* old = nullptr;
        CHECK(svsr_open(build.c_str(), &v1, &old) == SVSR_OK);
        CHECK(svsr_upscale_f32(old, frames.data(), n, h, w, steps, 11, out.data()) == SVSR_OK);
        CHECK(std::memcmp(out.data(), want.data(), out.size() * 4) == 0);
        CHECK(svsr_set_tiles(old, 32, 32, 8) == SVSR_OK);
        CHECK(svsr_upscale_f32(old, frames.data(), n, h, w, steps, 11, out.data()) == SVSR_ERROR_UNSUPPORTED);
        CHECK(std::string(svsr_last_error(old)).find("the callbacks runner has no copy_region and zero to move tile regions") != std::string::npos);
        svsr_close(old);
    }

    // the noise entry point
    float z[2];
    CHECK(svsr_philox_normal(1, 1, 7, z, 2) == SVSR_OK);
    uint32_t b0;
    std::memcpy(&b0, &z[0], 4);
    CHECK(b0 == 0xbed747c7u);
    CHECK(std::string(svsr_status_name(SVSR_ERROR_RUNNER)) == "runner error");
    return check::finish("test_c_api");
}
