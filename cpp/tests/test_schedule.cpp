// The Upscaler's slot schedule against the direct implementation of the algorithm, over stand-in
// graphs: same frames bit for bit, fixed runner memory whatever the clip length, bind-once slots.
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

}  // namespace

int main() {
    struct Case { int n, h, w, steps; uint64_t seed; double sigma; };
    const Case cases[] = {{4, 32, 48, 3, 0, 1.0}, {3, 36, 41, 2, 7, 1.0}, {1, 33, 32, 3, 1, 1.0}, {2, 32, 32, 1, 5, 1.0},
                          {5, 34, 38, 4, UINT64_MAX, 0.5}};
    for (const Case& c : cases) {
        const svsr::Manifest m = manifest(c.sigma);
        auto runner = std::make_unique<fixtures::FakeRunner>();
        fixtures::FakeRunner* fake = runner.get();
        svsr::Upscaler up(m, std::move(runner));
        const std::vector<uint8_t> frames = fixtures::random_frames(c.n, c.h, c.w, uint32_t(c.n * 7 + c.h));
        const size_t out_n = size_t(c.n) * 16 * c.h * c.w * 3;
        std::vector<float> out(out_n, -1.0f);
        std::vector<uint8_t> out_u8(out_n, 0);
        up.upscale(frames.data(), c.n, c.h, c.w, c.steps, c.seed, out.data(), nullptr);
        const std::vector<float> want = fixtures::reference_upscale(m, frames, c.n, c.h, c.w, c.steps, c.seed);
        const std::string label = "n=" + std::to_string(c.n) + " " + std::to_string(c.w) + "x" + std::to_string(c.h) +
                                  " steps=" + std::to_string(c.steps);
        CHECK_MSG(same_bits(out, want), label + ": slot schedule differs from the direct algorithm");

        // calls: 2(n-1) flows, n*S denoise, (n-1)*S guide, n decode
        std::map<std::string, int> count;
        for (const auto& call : fake->calls) ++count[call.graph];
        CHECK_MSG(count["flow"] == 2 * (c.n - 1) && count["denoise"] == c.n * c.steps && count["guide"] == (c.n - 1) * c.steps &&
                      count["decode"] == c.n,
                  label);
        // bind once: at most two slot sets per graph (denoise: x {TCM on, off})
        const auto sets = fake->binding_sets();
        CHECK_MSG((c.n < 2 || sets.at("flow") <= 2) && sets.at("denoise") <= 4 && (c.n < 2 || sets.at("guide") <= 2) &&
                      sets.at("decode") <= 2,
                  label + ": more binding sets than slot sets");
        // runner memory depends on the frame size only: 9 buffers per slot set + 5 shared
        CHECK_MSG(fake->live_buffers() == 23, label + ": " + std::to_string(fake->live_buffers()) + " buffers");
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
        CHECK(fake->frees == 23);
        CHECK(fake->live_buffers() == 23);
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
    }
    return check::finish("test_schedule");
}
