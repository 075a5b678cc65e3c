// The StableVSR schedule over a Runner (svsr/runtime/sampling/sampler.py), with the slot design:
// per-frame clip state (LR input, latest latent, flows) lives in the host clip store (RAM up to a
// budget, then files: clip_store.hpp); the runner holds two slot sets of buffers, allocated once per
// frame size, and every graph call binds the same slot buffers each time. Call c of a phase uses
// slot set c % 2, so a runner that queues work can upload call c + 1 into one set while call c
// computes on the other; the guide_decode of call c reads x0 from the other set (the previous frame
// of the sweep), and the warp turns its image into the call's guidance. The denoise graph's
// x0_history is the frame's x0 of the previous step for dpmpp-2m (from the clip store's history
// planes), a zero buffer for the single-step schedules. The graph launches of one frame-step and of
// one final decode, whole-frame or per tile, and the slots they bind are in frame_step.cpp.
#include <sstream>

#include "clip_store.hpp"
#include "svsr/host.hpp"

namespace svsr {

namespace {

size_t bytes_of(const std::vector<float>& v) { return v.size() * sizeof(float); }

}  // namespace

Upscaler::Upscaler(Manifest manifest, std::unique_ptr<Runner> runner)
    : manifest_(std::move(manifest)), runner_(std::move(runner)) {
    if (!runner_) throw Error(Status::invalid_argument, "the upscaler needs a runner.");
}

Upscaler::~Upscaler() {
    try {
            release_slots();
    } catch (...) {
    }
}

bool Upscaler::report(const char* phase, int done, int total) {
    if (!progress_) return true;
    return progress_(phase, done, total);
}

void Upscaler::set_schedule(Schedule schedule) {
    check_schedule(schedule);
    schedule_ = std::move(schedule);
}

void Upscaler::set_flow_scale(int scale) {
    flow_graph(scale);  // Error(invalid_argument) for a scale other than 4, 2, 1
    flow_scale_ = scale;
}

PaddingPlan Upscaler::check_clip(int n, int h, int w, int steps) const {
    if (n < 1) throw Error(Status::invalid_argument, "the clip has no frames; give at least one frame.");
    const PaddingPlan plan = padding_plan(h, w, manifest_.min_side, manifest_.pad_multiple, manifest_.scale);
    // refused for every clip, one frame too (no flow then), as the Python sampler does: the answer does not depend on the length
    const std::string flow = flow_scale_problem(flow_scale_, plan.padded_height, plan.padded_width);
    if (!flow.empty()) throw Error(Status::input, flow);
    const std::string tiles = runner_->tile_problem(tile_h_, tile_w_, plan.padded_height, plan.padded_width);
    if (!tiles.empty()) throw Error(Status::input, tiles);
    // the graphs this clip runs beyond those every clip runs: its flow graph, and the stats graphs when tiled
    std::vector<std::string> graphs = {flow_graph(flow_scale_)};
    if (tile_h_ > 0 && !plan_tiles(plan.padded_height, plan.padded_width, tile_h_, tile_w_, tile_overlap_).single())
        graphs.insert(graphs.end(), {"denoise_stats", "decode_stats"});
    for (const std::string& graph : graphs) {
        const std::string missing = runner_->graph_problem(graph);
        if (!missing.empty()) throw Error(Status::manifest, missing);
    }
    step_coefficients(manifest_.scheduler, manifest_.alphas_cumprod, steps, schedule_);  // validates the step count
    return plan;
}

void Upscaler::upscale(const uint8_t* frames, int n, int h, int w, int num_steps, uint64_t seed, float* out_f32,
                       uint8_t* out_u8) {
    if (!frames) throw Error(Status::invalid_argument, "frames is NULL.");
    if (!out_f32 && !out_u8) throw Error(Status::invalid_argument, "no output buffer was given.");
    const PaddingPlan plan = check_clip(n, h, w, num_steps);
    const size_t frame_bytes = size_t(h) * w * 3, out_n = size_t(plan.out_height()) * plan.out_width() * 3;
    run_clip(
        plan, num_steps, seed, [&](int k) { return k < n ? frames + size_t(k) * frame_bytes : nullptr; },
        [&](int k, const float* rgb) {
            if (out_f32) rgb_to_hwc(rgb, plan, out_f32 + size_t(k) * out_n);
            if (out_u8) rgb_to_hwc_u8(rgb, plan, out_u8 + size_t(k) * out_n);
        });
}

void Upscaler::upscale_stream(int h, int w, int num_steps, uint64_t seed, const FrameSource& source, const FrameSink& sink) {
    if (!source || !sink) throw Error(Status::invalid_argument, "the frame source or sink is missing.");
    const PaddingPlan plan = check_clip(1, h, w, num_steps);
    std::vector<uint8_t> frame(size_t(plan.out_height()) * plan.out_width() * 3);
    run_clip(plan, num_steps, seed, source, [&](int k, const float* rgb) {
        rgb_to_hwc_u8(rgb, plan, frame.data());
        sink(k, frame.data());
    });
}

void Upscaler::run_clip(const PaddingPlan& plan, int num_steps, uint64_t seed, const FrameSource& source, const EmitFn& emit) {
    const std::vector<Step> steps = step_coefficients(manifest_.scheduler, manifest_.alphas_cumprod, num_steps, schedule_);
    const bool history = needs_history(schedule_.scheduler);
    const int ph = plan.padded_height, pw = plan.padded_width;
    const size_t lr_n = size_t(element_count(resolve_shape(manifest_.tensor("denoise", "lr"), 1, ph, pw)));
    const size_t z_n = size_t(element_count(resolve_shape(manifest_.tensor("denoise", "z"), 1, ph, pw)));
    const size_t noise_n = size_t(element_count(resolve_shape(manifest_.tensor("denoise", "noise"), 1, ph, pw)));
    const size_t flow_n = size_t(element_count(resolve_shape(manifest_.tensor("flow", "flow"), 1, ph, pw)));
    const size_t rgb_n = size_t(element_count(resolve_shape(manifest_.tensor("decode", "rgb"), 1, ph, pw)));
    if (rgb_n != size_t(3) * ph * 4 * pw * 4 || lr_n != size_t(3) * ph * pw)
        throw Error(Status::unsupported, "the manifest's lr/rgb shapes are not (1, 3, h, w) / (1, 3, 4h, 4w).");
    if (noise_n != z_n) throw Error(Status::unsupported, "the manifest's denoise noise and z shapes differ.");
    if (size_t(element_count(resolve_shape(manifest_.tensor("denoise", "x0_history"), 1, ph, pw))) != z_n)
        throw Error(Status::unsupported, "the manifest's denoise x0_history and z shapes differ.");
    const size_t lr_bytes = lr_n * sizeof(float), z_bytes = z_n * sizeof(float), flow_bytes = flow_n * sizeof(float);

    // the clip store: the LR frames as they are read, then the latents and flows (declared before any
    // runner call: queued downloads target it, so on failure the runner is drained below before it goes)
    host_memory_use_ = HostMemoryUse{};
    ClipStore store(host_memory_, lr_n, z_n, flow_n);
    int n = 0;
    for (const uint8_t* frame; (frame = source(n)) != nullptr; ++n) {
        if (n == (1 << 30)) throw Error(Status::invalid_argument, "the clip has more than 2^30 frames; cut it into clips.");
        to_model_input(frame, plan, store.lr.write_target(n));
        store.lr.commit();
    }
    if (n < 1) throw Error(Status::invalid_argument, "the clip has no frames; give at least one frame.");
    store.frames_known(n, history);
    host_memory_use_ = store.use();

    ensure_slots(ph, pw, tile_h_ > 0 ? plan_tiles(ph, pw, tile_h_, tile_w_, tile_overlap_) : plan_tiles(ph, pw, 0, 0));
    Runner& r = *runner_;
    // where a download into item k lands; with every pending slot of a spilled array taken, the
    // queued downloads are delivered and written out first
    auto target = [&](ClipArray& a, int k) {
        float* p = a.write_target(k);
        if (!p) {
            r.synchronize();
            store.commit();
            p = a.write_target(k);
        }
        return p;
    };
    std::vector<float> rgb[2];
    try {
        const int total_flow = 2 * (n - 1), total_denoise = n * int(steps.size());
        auto cancel = []() { throw Error(Status::cancelled, "cancelled by the progress callback."); };

        // flows: fwd[i-1] = flow(lr[i] -> lr[i-1]); bwd[n-1-i] = flow(lr[i-1] -> lr[i]), by the flow graph of the flow scale
        const std::string flow = flow_graph(flow_scale_);
        int call = 0;
        for (int i = 1; i < n; ++i) {
            const struct { int frame, previous; ClipArray* out; int index; } pairs[2] = {{i, i - 1, &store.fwd, i - 1},
                                                                                         {i - 1, i, &store.bwd, n - 1 - i}};
            for (const auto& p : pairs) {
                const SlotSet& s = sets_[call % 2];
                r.upload(s.lr, store.lr.read(p.frame), lr_bytes);
                r.upload(s.lr_prev, store.lr.read(p.previous), lr_bytes);
                r.run(flow, {{"frame", s.lr}, {"previous", s.lr_prev}}, {{"flow", s.flow}});
                r.download(s.flow, target(*p.out, p.index), flow_bytes);
                ++call;
                if (!report("flow", call, total_flow)) cancel();
            }
        }

        // initial latents: philox draw 0, times init_noise_sigma (float32); no download targets the
        // latents yet, so each is committed at once
        const float sigma = manifest_.init_noise_sigma;
        for (int k = 0; k < n; ++k) {
            float* zk = store.z.write_target(k);
            philox_normal(seed, 0, uint32_t(k), zk, z_n);
            if (sigma != 1.0f)
                for (size_t i = 0; i < z_n; ++i) zk[i] = zk[i] * sigma;
            store.z.commit();
        }
        r.synchronize();  // flows are in the host store
        store.commit();

        // the sweeps
        std::vector<float> noise(noise_n), zero_noise(noise_n, 0.0f);
        int done = 0;
        for (const Step& step : steps) {
            const float t = static_cast<float>(step.timestep);
            r.upload(timestep_, &t, sizeof(t));
            r.upload(coeffs_, step.coeffs.data(), sizeof(float) * step.coeffs.size());
            const std::vector<int> order = sweep_order(n, step.index);
            ClipArray& flows = sweep_forward(step.index) ? store.fwd : store.bwd;
            // dpmpp-2m: step s reads the history plane s % 2 and writes x0 into plane (s + 1) % 2
            ClipArray& history_in = store.history[step.index % 2];
            ClipArray& history_out = store.history[(step.index + 1) % 2];
            const bool keep_x0 = history && size_t(step.index) + 1 < steps.size();
            for (int j = 0; j < n; ++j) {
                const int k = order[j];
                const SlotSet& s = sets_[j % 2];
                const SlotSet& other = sets_[(j + 1) % 2];
                r.upload(s.z_in, store.z.read(k), z_bytes);
                r.upload(s.lr, store.lr.read(k), lr_bytes);
                if (step.has_noise) {
                    philox_normal(seed, uint32_t(step.index) + 1u, uint32_t(k), noise.data(), noise_n);
                    r.upload(s.noise, noise.data(), bytes_of(noise));
                } else {
                    r.upload(s.noise, zero_noise.data(), bytes_of(zero_noise));
                }
                // the multistep schedule binds its per-set history buffer at every step (one binding per
                // set); a step that does not read it (the first) gets zeros there
                if (history) r.upload(s.x0_history, step.reads_history() ? history_in.read(k) : zero_noise.data(), z_bytes);
                if (j > 0) r.upload(s.flow, flows.read(j - 1), flow_bytes);
                frame_step(s, other, j > 0, history);
                r.download(s.z_out, target(store.z, k), z_bytes);
                if (keep_x0) r.download(s.x0, target(history_out, k), z_bytes);
                if (!report("denoise", ++done, total_denoise)) cancel();
            }
            r.synchronize();  // the latents hold this step's values before the next step reads them
            store.commit();
        }

        // decode: frame k on set k % 2; the host crops frame k-1 while frame k decodes
        rgb[0].resize(rgb_n);
        rgb[1].resize(rgb_n);
        for (int k = 0; k < n; ++k) {
            const SlotSet& s = sets_[k % 2];
            r.upload(s.z_in, store.z.read(k), z_bytes);
            decode(s);
            r.download(s.rgb, rgb[k % 2].data(), bytes_of(rgb[k % 2]));
            if (k > 0) emit(k - 1, rgb[(k - 1) % 2].data());
            r.synchronize();
            if (!report("decode", k + 1, n)) cancel();
        }
        emit(n - 1, rgb[(n - 1) % 2].data());
    } catch (...) {
        try {
            r.synchronize();  // no queued download may land in the clip store after it is freed
        } catch (...) {
        }
        throw;
    }
}

}  // namespace svsr
