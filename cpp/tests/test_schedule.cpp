// The Upscaler's slot schedule against the direct implementation of the algorithm, over stand-in
// graphs: same frames bit for bit for every schedule (ddpm, ddim with eta, dpmpp-2m with its per-frame
// x0 history in the clip store), fixed runner memory whatever the clip length, bind-once slots.
#include <cmath>

#include "fixtures.hpp"

namespace {

svsr::Manifest manifest(double sigma = 1.0) {
    fixtures::json j = fixtures::valid_manifest();
    j["scheduler"]["init_noise_sigma"] = sigma;
    return svsr::parse_manifest(j.dump(), "/nonexistent", "test manifest");
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A test double: the stand-in graphs with every GroupNorm on its own statistics (shared_norm bound to 0
// whatever the schedule binds), i.e. tiles as they were before statistics were shared.
class OwnStatisticsRunner : public fixtures::FakeRunner {
public:
    void run(const std::string& graph, const std::vector<svsr::Binding>& in, const std::vector<svsr::Binding>& out) override {
        if (!zero_) zero_ = allocate("own_statistics", {1});
        std::vector<svsr::Binding> rebound = in;
        for (auto& b : rebound)
            if (std::string(b.name) == "shared_norm") b.buffer = zero_;
        FakeRunner::run(graph, rebound, out);
    }

private:
    svsr::BufferHandle zero_ = 0;
};

// A test double: a runner that cannot run the flow_x1 graph (a TensorRT build without its engine).
class NoFlowX1Runner : public fixtures::FakeRunner {
public:
    std::string graph_problem(const std::string& graph) const override {
        return graph == "flow_x1" ? "the test build has no TensorRT engine for the flow_x1 graph (--flow-scale 1)." : std::string();
    }
};

}  // namespace

int main() {
    struct Case { int n, h, w, steps; uint64_t seed; double sigma; const char* scheduler; double eta; };
    const Case cases[] = {{4, 32, 48, 3, 0, 1.0, "ddpm", 0.0},      {3, 36, 41, 2, 7, 1.0, "ddpm", 0.0},
                          {1, 33, 32, 3, 1, 1.0, "ddpm", 0.0},      {2, 32, 32, 1, 5, 1.0, "ddpm", 0.0},
                          {5, 34, 38, 4, UINT64_MAX, 0.5, "ddpm", 0.0}, {4, 32, 40, 3, 2, 1.0, "ddim", 0.0},
                          {3, 36, 36, 4, 9, 1.0, "ddim", 0.5},      {4, 32, 44, 4, 3, 1.0, "dpmpp-2m", 0.0},
                          {1, 32, 32, 3, 4, 1.0, "dpmpp-2m", 0.0}};
    for (const Case& c : cases) {
        const svsr::Manifest m = manifest(c.sigma);
        auto runner = std::make_unique<fixtures::FakeRunner>();
        fixtures::FakeRunner* fake = runner.get();
        svsr::Upscaler up(m, std::move(runner));
        svsr::Schedule schedule;
        schedule.scheduler = c.scheduler;
        schedule.eta = c.eta;
        up.set_schedule(schedule);
        const std::vector<uint8_t> frames = fixtures::random_frames(c.n, c.h, c.w, uint32_t(c.n * 7 + c.h));
        const size_t out_n = size_t(c.n) * 16 * c.h * c.w * 3;
        std::vector<float> out(out_n, -1.0f);
        std::vector<uint8_t> out_u8(out_n, 0);
        up.upscale(frames.data(), c.n, c.h, c.w, c.steps, c.seed, out.data(), nullptr);
        const std::vector<float> want = fixtures::reference_upscale(m, frames, c.n, c.h, c.w, c.steps, c.seed, schedule);
        const std::string label = std::string(c.scheduler) + " n=" + std::to_string(c.n) + " " + std::to_string(c.w) + "x" +
                                  std::to_string(c.h) + " steps=" + std::to_string(c.steps);
        CHECK_MSG(same_bits(out, want), label + ": slot schedule differs from the direct algorithm");
        if (std::string(c.scheduler) != "ddpm") {  // the schedule matters: the frames differ from DDPM's
            const std::vector<float> ddpm = fixtures::reference_upscale(m, frames, c.n, c.h, c.w, c.steps, c.seed);
            CHECK_MSG(!same_bits(want, ddpm), label + ": the same frames as ddpm");
        }

        // calls: 2(n-1) flows, n*S denoise, (n-1)*S guide_decode and warp, n decode, no blend (untiled)
        std::map<std::string, int> count;
        for (const auto& call : fake->calls) ++count[call.graph];
        CHECK_MSG(count["flow"] == 2 * (c.n - 1) && count["denoise"] == c.n * c.steps && count["guide_decode"] == (c.n - 1) * c.steps &&
                      count["warp"] == (c.n - 1) * c.steps && count["decode"] == c.n && count["blend"] == 0,
                  label);
        // bind once: at most two slot sets per graph (denoise: x {TCM on, off})
        const auto sets = fake->binding_sets();
        CHECK_MSG((c.n < 2 || sets.at("flow") <= 2) && sets.at("denoise") <= 4 && (c.n < 2 || sets.at("guide_decode") <= 2) &&
                      (c.n < 2 || sets.at("warp") <= 2) && sets.at("decode") <= 2,
                  label + ": more binding sets than slot sets");
        // untiled: no stats graph runs; every GroupNorm keeps its own statistics (shared_norm 0, zero statistics)
        CHECK_MSG(count["denoise_stats"] == 0 && count["decode_stats"] == 0, label + ": stats graphs ran untiled");
        // runner memory depends on the frame size only: 10 buffers per slot set + 10 shared
        CHECK_MSG(fake->live_buffers() == 30, label + ": " + std::to_string(fake->live_buffers()) + " buffers");
        CHECK(fake->live_bytes() == up.buffer_bytes());

        // the uint8 output is the float output rounded as svsr's to_uint8
        const int allocations = fake->allocations;
        up.upscale(frames.data(), c.n, c.h, c.w, c.steps, c.seed, nullptr, out_u8.data());
        bool u8_ok = true;
        for (size_t i = 0; i < out_n; ++i) u8_ok = u8_ok && out_u8[i] == svsr::to_uint8(out[i]);
        CHECK_MSG(u8_ok, label + ": uint8 output");
        CHECK_MSG(fake->allocations == allocations, label + ": a second clip of the same size allocated buffers");
    }

    // a longer clip of the same size: no new buffers (memory does not grow with N)
    {
        auto runner = std::make_unique<fixtures::FakeRunner>();
        fixtures::FakeRunner* fake = runner.get();
        svsr::Upscaler up(manifest(), std::move(runner));
        std::vector<uint8_t> frames = fixtures::random_frames(2, 32, 32, 1);
        std::vector<float> out(size_t(9) * 16 * 32 * 32 * 3);
        up.upscale(frames.data(), 2, 32, 32, 2, 0, out.data(), nullptr);
        const uint64_t bytes2 = fake->live_bytes();
        const int alloc2 = fake->allocations;
        frames = fixtures::random_frames(9, 32, 32, 2);
        up.upscale(frames.data(), 9, 32, 32, 2, 0, out.data(), nullptr);
        CHECK(fake->live_bytes() == bytes2);
        CHECK(fake->allocations == alloc2);
        // another size: the old slots are freed, new ones allocated
        frames = fixtures::random_frames(2, 40, 36, 3);
        up.upscale(frames.data(), 2, 40, 36, 1, 0, out.data(), nullptr);
        CHECK(fake->frees == 30);
        CHECK(fake->live_buffers() == 30);
        CHECK(fake->live_bytes() > bytes2);
    }

    // the clip store: the same frames, bit for bit, with every part in RAM, every part in files,
    // and budgets that split an array between both; the runner delivers downloads only at
    // synchronize(), so a spilled item written out before its download landed would show
    {
        const int n = 10, h = 36, w = 34, steps = 3;
        const svsr::Manifest m = manifest();
        const std::vector<uint8_t> frames = fixtures::random_frames(n, h, w, 21);
        const std::vector<float> want = fixtures::reference_upscale(m, frames, n, h, w, steps, 3);
        const uint64_t lr_item = 3 * 36 * 36 * 4, z_item = 4 * 36 * 36 * 4, flow_item = 2 * 144 * 144 * 4;
        const uint64_t all = n * (lr_item + z_item) + 2 * (n - 1) * flow_item;
        struct Budget { uint64_t bytes; const char* what; };
        const Budget budgets[] = {{1, "everything in files"}, {3 * lr_item, "lr split"}, {n * lr_item + 2 * z_item, "latents split"},
                                  {n * (lr_item + z_item) + 3 * flow_item, "flows split"}, {all, "everything in RAM"}};
        for (const Budget& b : budgets) {
            auto runner = std::make_unique<fixtures::FakeRunner>();
            fixtures::FakeRunner* fake = runner.get();
            svsr::Upscaler up(m, std::move(runner));
            svsr::HostMemoryOptions options;
            options.budget = b.bytes;
            up.set_host_memory(options);
            std::vector<float> out(want.size(), -1.0f);
            up.upscale(frames.data(), n, h, w, steps, 3, out.data(), nullptr);
            CHECK_MSG(same_bits(out, want), std::string(b.what) + ": differs from the direct algorithm");
            const svsr::HostMemoryUse use = up.host_memory_use();
            CHECK_MSG(use.in_ram <= b.bytes && use.in_ram + use.in_files == all,
                      std::string(b.what) + ": " + std::to_string(use.in_ram) + " in RAM, " + std::to_string(use.in_files) + " in files");
            CHECK_MSG((use.in_files == 0) == (b.bytes >= all), b.what);
            // 9 flows per direction and 10 latents per step through 8 pending slots: one synchronize more
            // for the flows and per step than the schedule's own 1 + steps + n
            if (b.bytes == 1) CHECK_MSG(fake->syncs == 2 + 2 * steps + n, std::to_string(fake->syncs) + " synchronize calls");
        }
        // dpmpp-2m: the two x0 history planes spill like the latents (everything in files, split, in RAM)
        svsr::Schedule dpmpp;
        dpmpp.scheduler = "dpmpp-2m";
        const std::vector<float> want_dpmpp = fixtures::reference_upscale(m, frames, n, h, w, steps, 3, dpmpp);
        const uint64_t all_dpmpp = all + 2 * n * z_item;
        for (const uint64_t bytes : {uint64_t(1), n * (lr_item + z_item) + 3 * z_item, n * (lr_item + 2 * z_item) + 5 * z_item, all_dpmpp}) {
            svsr::Upscaler up(m, std::make_unique<fixtures::FakeRunner>());
            svsr::HostMemoryOptions options;
            options.budget = bytes;
            up.set_host_memory(options);
            up.set_schedule(dpmpp);
            std::vector<float> out(want_dpmpp.size(), -1.0f);
            up.upscale(frames.data(), n, h, w, steps, 3, out.data(), nullptr);
            const svsr::HostMemoryUse use = up.host_memory_use();
            const std::string what = "dpmpp-2m, budget " + std::to_string(bytes);
            CHECK_MSG(same_bits(out, want_dpmpp), what + ": differs from the direct algorithm");
            CHECK_MSG(use.in_ram <= bytes && use.in_ram + use.in_files == all_dpmpp && (use.in_files == 0) == (bytes >= all_dpmpp), what);
        }

        // streamed: frames from a source, output frames to a sink as they are decoded
        auto runner = std::make_unique<fixtures::FakeRunner>();
        svsr::Upscaler up(m, std::move(runner));
        svsr::HostMemoryOptions options;
        options.budget = 2 * lr_item;
        up.set_host_memory(options);
        const size_t out_n = size_t(16) * h * w * 3;
        std::vector<uint8_t> streamed;
        int read = 0, written = 0;
        up.upscale_stream(
            h, w, steps, 3,
            [&](int k) -> const uint8_t* {
                CHECK(k == read);
                ++read;
                return k < n ? frames.data() + size_t(k) * h * w * 3 : nullptr;
            },
            [&](int k, const uint8_t* frame) {
                CHECK(k == written++);
                streamed.insert(streamed.end(), frame, frame + out_n);
            });
        bool u8_ok = streamed.size() == want.size() && read == n + 1;
        for (size_t i = 0; u8_ok && i < want.size(); ++i) u8_ok = streamed[i] == svsr::to_uint8(want[i]);
        CHECK_MSG(u8_ok, "streamed clip");
        CHECK_THROWS(up.upscale_stream(h, w, steps, 3, [](int) { return nullptr; }, [](int, const uint8_t*) {}), svsr::Status::invalid_argument,
                     "no frames");
        options.work_dir = "/nonexistent-svsr-work";
        options.budget = 1;
        up.set_host_memory(options);
        std::vector<float> out(want.size());
        CHECK_THROWS(up.upscale(frames.data(), n, h, w, steps, 3, out.data(), nullptr), svsr::Status::input,
                     "in the work folder /nonexistent-svsr-work");
    }

    // tiles: the denoise, guide_decode and decode graphs per tile, blended into whole frames. The stand-in
    // graphs are pointwise per latent pixel (the warp, whole-frame, is not), so tiled equals untiled
    // up to the float32 rounding of the blend's weighted sums; a tile covering the frame is untiled exactly
    {
        struct TileCase { int n, h, w, steps, th, tw, overlap; const char* scheduler; };
        const TileCase tcases[] = {{3, 64, 72, 3, 32, 40, 8, "ddpm"}, {2, 50, 90, 2, 32, 48, 12, "dpmpp-2m"}, {3, 36, 44, 2, 32, 32, 4, "ddim"}};
        for (const TileCase& c : tcases) {
            const svsr::Manifest m = manifest();
            const std::vector<uint8_t> frames = fixtures::random_frames(c.n, c.h, c.w, uint32_t(c.h + c.w));
            svsr::Schedule schedule;
            schedule.scheduler = c.scheduler;
            const std::vector<float> want = fixtures::reference_upscale(m, frames, c.n, c.h, c.w, c.steps, 5, schedule);
            auto runner = std::make_unique<fixtures::FakeRunner>();
            fixtures::FakeRunner* fake = runner.get();
            svsr::Upscaler up(m, std::move(runner));
            up.set_schedule(schedule);
            up.set_tiles(c.th, c.tw, c.overlap);
            std::vector<float> out(want.size(), -1.0f);
            up.upscale(frames.data(), c.n, c.h, c.w, c.steps, 5, out.data(), nullptr);
            const std::string label = std::string("tiles ") + std::to_string(c.th) + "x" + std::to_string(c.tw) + " on " + std::to_string(c.w) +
                                      "x" + std::to_string(c.h) + " " + c.scheduler;
            double worst = 0.0;
            for (size_t i = 0; i < out.size(); ++i) worst = std::max(worst, double(std::fabs(out[i] - want[i])));
            CHECK_MSG(worst <= 2e-5, label + ": differs from untiled by " + std::to_string(worst));
            CHECK_MSG(!same_bits(out, want) || c.overlap == 0, label + ": bit-identical (were tiles used?)");
            const svsr::PaddingPlan pad = svsr::padding_plan(c.h, c.w);
            const svsr::TileLayout layout = svsr::plan_tiles(pad.padded_height, pad.padded_width, c.th, c.tw, c.overlap);
            const int tiles = int(layout.tiles.size());
            CHECK_MSG(tiles > 1, label);
            std::map<std::string, int> count;
            for (const auto& call : fake->calls) ++count[call.graph];
            // per frame-step: a tile's denoise each; per guided frame-step: a tile's guide_decode each and one
            // whole-frame warp; blends: 2 per tile per frame-step, 1 per tile per guide and per decode
            const int frame_steps = c.n * c.steps, guided = (c.n - 1) * c.steps;
            CHECK_MSG(count["denoise"] == frame_steps * tiles && count["guide_decode"] == guided * tiles && count["warp"] == guided &&
                          count["decode"] == c.n * tiles && count["blend"] == (2 * frame_steps + guided + c.n) * tiles,
                      label + ": graph calls");
            // the whole frame's statistics: denoise_stats once per frame-step, decode_stats once per guide and per final decode
            CHECK_MSG(count["denoise_stats"] == frame_steps && count["decode_stats"] == guided + c.n, label + ": stats graph calls");
            for (const auto& call : fake->calls)
                if (call.graph == "denoise" || call.graph == "guide_decode" || call.graph == "decode")
                    CHECK_MSG(call.bound.count("in:norm_stats") && call.bound.count("in:shared_norm"), label);
            CHECK_MSG(fake->zeros == 2 * frame_steps + guided + c.n, label + ": zero calls " + std::to_string(fake->zeros));
            // bind once: the tile buffers are shared by every tile, the blend weights too (each tile's own weight is
            // copied into one weight tile per scale), so 3 blend bindings whatever the tile count
            // (z_out and x0 tiles with the latent weight, pixels with the 4x weight)
            const auto sets = fake->binding_sets();
            CHECK_MSG(sets.at("denoise") <= 4 && sets.at("guide_decode") == 1 && sets.at("decode") == 1 && sets.at("warp") <= 2 &&
                          sets.at("blend") == 3 && sets.at("denoise_stats") <= 4 && sets.at("decode_stats") <= 4,
                      label + ": binding sets");
            // the stand-ins' statistics of a tile differ from the frame's: with each tile's own (shared_norm 0, the old
            // tiles) the frames move far from untiled, so the agreement above is the shared statistics' doing
            auto own = std::make_unique<OwnStatisticsRunner>();
            svsr::Upscaler unshared(m, std::move(own));
            unshared.set_schedule(schedule);
            unshared.set_tiles(c.th, c.tw, c.overlap);
            std::vector<float> apart(want.size());
            unshared.upscale(frames.data(), c.n, c.h, c.w, c.steps, 5, apart.data(), nullptr);
            double moved = 0.0;
            for (size_t i = 0; i < apart.size(); ++i) moved = std::max(moved, double(std::fabs(apart[i] - want[i])));
            CHECK_MSG(moved > 1e-3, label + ": tiles with their own statistics stay within " + std::to_string(moved) + " of untiled");
            // a tile covering the frame: the untiled path, bit for bit, with no tile buffer
            auto whole = std::make_unique<fixtures::FakeRunner>();
            fixtures::FakeRunner* plain = whole.get();
            svsr::Upscaler covering(m, std::move(whole));
            covering.set_schedule(schedule);
            covering.set_tiles(4 * c.h, 4 * c.w, c.overlap);
            covering.upscale(frames.data(), c.n, c.h, c.w, c.steps, 5, out.data(), nullptr);
            CHECK_MSG(same_bits(out, want) && plain->zeros == 0 && plain->live_buffers() == 30, label + ": a covering tile is not untiled");
        }
        // refusals: bad tiles, and a runner without copy_region/zero
        svsr::Upscaler up(manifest(), std::make_unique<fixtures::FakeRunner>());
        CHECK_THROWS(up.set_tiles(8, 8, 0), svsr::Status::invalid_argument, "--tile 8x8 is below the smallest tile");
        CHECK_THROWS(up.set_tiles(64, 64, 32), svsr::Status::invalid_argument, "--tile-overlap 32 is half a tile or more");
    }

    // flow scales: the flows come from flow_x2 / flow_x1 (other flows, so other frames); frames too small for
    // RAFT at the scale are refused before any work with sizes.flow_scale_problem's sentence
    {
        const svsr::Manifest m = manifest();
        const int n = 3, h = 64, w = 68, steps = 2;
        const std::vector<uint8_t> frames = fixtures::random_frames(n, h, w, 17);
        const std::vector<float> want4 = fixtures::reference_upscale(m, frames, n, h, w, steps, 8);
        for (int scale : {2, 1}) {
            auto runner = std::make_unique<fixtures::FakeRunner>();
            fixtures::FakeRunner* fake = runner.get();
            svsr::Upscaler up(m, std::move(runner));
            CHECK(up.flow_scale() == 4);
            up.set_flow_scale(scale);
            const int hh = scale == 1 ? 128 : h, ww = scale == 1 ? 132 : w;  // x1 needs 128 px per side
            const std::vector<uint8_t> clip = scale == 1 ? fixtures::random_frames(n, hh, ww, 17) : frames;
            std::vector<float> out(size_t(n) * 16 * hh * ww * 3);
            up.upscale(clip.data(), n, hh, ww, steps, 8, out.data(), nullptr);
            svsr::Schedule ddpm;
            const std::vector<float> want = fixtures::reference_upscale(m, clip, n, hh, ww, steps, 8, ddpm, scale);
            const std::string label = "flow scale " + std::to_string(scale);
            CHECK_MSG(same_bits(out, want), label + ": differs from the direct algorithm");
            if (scale == 2) CHECK_MSG(!same_bits(out, want4), label + ": the frames of flow scale 4");
            std::map<std::string, int> count;
            for (const auto& call : fake->calls) ++count[call.graph];
            CHECK_MSG(count[svsr::flow_graph(scale)] == 2 * (n - 1) && count["flow"] == 0, label + ": flow graph calls");
        }
        svsr::Upscaler up(m, std::make_unique<fixtures::FakeRunner>());
        CHECK_THROWS(up.set_flow_scale(3), svsr::Status::invalid_argument, "flow scale 3 is not a flow scale; use 4 (the original), 2 or 1.");
        up.set_flow_scale(1);
        std::vector<float> out(size_t(n) * 16 * h * w * 3);
        CHECK_THROWS(up.upscale(frames.data(), n, h, w, steps, 8, out.data(), nullptr), svsr::Status::input,
                     "--flow-scale 1 needs frames of at least 128 px per side (RAFT sees them at x1), but these are 68x64; use --flow-scale 4.");
        up.set_flow_scale(2);
        CHECK_THROWS(up.upscale(frames.data(), 1, 40, 70, steps, 8, out.data(), nullptr), svsr::Status::input,
                     "but these are 72x40; use --flow-scale 4.");  // padded size; one frame too (no flow, the same answer)
        // a runner without the flow graph of the scale: one sentence before any work
        svsr::Upscaler missing(m, std::make_unique<NoFlowX1Runner>());
        missing.set_flow_scale(1);
        const std::vector<uint8_t> big = fixtures::random_frames(2, 128, 128, 3);
        std::vector<float> big_out(size_t(2) * 16 * 128 * 128 * 3);
        CHECK_THROWS(missing.upscale(big.data(), 2, 128, 128, 1, 0, big_out.data(), nullptr), svsr::Status::manifest,
                     "no TensorRT engine for the flow_x1 graph (--flow-scale 1)");
        missing.set_flow_scale(4);
        missing.upscale(big.data(), 2, 128, 128, 1, 0, big_out.data(), nullptr);
    }

    // progress and cancellation
    {
        svsr::Upscaler up(manifest(), std::make_unique<fixtures::FakeRunner>());
        const std::vector<uint8_t> frames = fixtures::random_frames(3, 32, 32, 4);
        std::vector<float> out(size_t(3) * 16 * 32 * 32 * 3);
        std::map<std::string, int> last;
        up.set_progress([&](const char* phase, int done, int total) {
            last[phase] = done;
            CHECK(done <= total);
            return true;
        });
        up.upscale(frames.data(), 3, 32, 32, 2, 0, out.data(), nullptr);
        CHECK(last["flow"] == 4 && last["denoise"] == 6 && last["decode"] == 3);
        up.set_progress([](const char* phase, int done, int) { return !(std::string(phase) == "denoise" && done == 2); });
        CHECK_THROWS(up.upscale(frames.data(), 3, 32, 32, 2, 0, out.data(), nullptr), svsr::Status::cancelled, "cancelled");
        // refusals before any work
        up.set_progress(nullptr);
        CHECK_THROWS(up.upscale(frames.data(), 1, 31, 40, 2, 0, out.data(), nullptr), svsr::Status::input, "40x31 px are too small");
        CHECK_THROWS(up.upscale(frames.data(), 0, 32, 32, 2, 0, out.data(), nullptr), svsr::Status::invalid_argument, "no frames");
        CHECK_THROWS(up.upscale(frames.data(), 1, 32, 32, 0, 0, out.data(), nullptr), svsr::Status::invalid_argument, "num_inference_steps");
        CHECK_THROWS(up.upscale(frames.data(), 1, 32, 32, 2, 0, nullptr, nullptr), svsr::Status::invalid_argument, "no output");
        svsr::Schedule bad;
        bad.scheduler = "euler";
        CHECK_THROWS(up.set_schedule(bad), svsr::Status::invalid_argument, "scheduler 'euler' is not one of ddpm, ddim, dpmpp-2m");
        bad.scheduler = "ddim";
        bad.eta = 1.5;
        CHECK_THROWS(up.set_schedule(bad), svsr::Status::invalid_argument, "eta 1.5 is outside [0, 1]");
        bad.eta = std::nan("");
        CHECK_THROWS(up.set_schedule(bad), svsr::Status::invalid_argument, "is outside [0, 1]");
        CHECK(up.schedule().scheduler == "ddpm");
    }
    return check::finish("test_schedule");
}
