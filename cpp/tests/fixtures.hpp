// Test fixtures: a valid manifest (as JSON), cheap deterministic stand-ins for the graphs, a
// recording Runner that executes them, and a direct (slot-free) implementation of the algorithm
// to compare the Upscaler's slot schedule with.
#pragma once

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "check.hpp"

namespace fixtures {

using json = nlohmann::json;

inline json tensor(const char* name, std::vector<json> shape) { return {{"name", name}, {"dtype", "float32"}, {"shape", shape}}; }

inline json graph(const char* file, std::vector<json> inputs, std::vector<json> outputs) {
    return {{"file", file},
            {"sha256", std::string(64, '0')},
            {"external_data", nullptr},
            {"inputs", inputs},
            {"outputs", outputs},
            {"flops", {{"per_call", 1}, {"lr_height", 36}, {"lr_width", 44}}}};
}

inline std::vector<double> scaled_linear_acp(int total) {
    std::vector<double> acp;
    float prod = 1.0f;
    for (int i = 0; i < total; ++i) {
        const float b = float(0.01 + (0.1414 - 0.01) * i / (total > 1 ? total - 1 : 1));
        prod = prod * (1.0f - b * b);
        acp.push_back(prod);
    }
    return acp;
}

// The stand-ins' statistics lengths: denoise_stats records 4 latent means and 4 conditioning terms,
// decode_stats 4 latent means and 2 mean squares (the real graphs: a mean and a variance per group).
constexpr int kDenoiseStats = 8, kDecodeStats = 6;

// A manifest like svsr-export writes for the tiny preset (graph files named but not present).
inline json valid_manifest(int train_timesteps = 1000) {
    const json b = "batch", h = "height", w = "width", h4 = "height4", w4 = "width4", ch = "channels";
    json m;
    m["schema_version"] = 3;
    m["svsr_version"] = "0.1.0";
    m["checkpoint"] = {{"fingerprint", "abc"}, {"source", "/ckpt"}, {"preset", "tiny"}};
    m["exporter"] = {{"method", "torch.onnx.export"}, {"opset", 17}};
    const json sd = kDenoiseStats, sv = kDecodeStats;  // statistics lengths: integers in the manifest's shapes
    auto flow = [&](const char* file) {
        return graph(file, {tensor("frame", {b, 3, h, w}), tensor("previous", {b, 3, h, w})}, {tensor("flow", {b, 2, h4, w4})});
    };
    m["graphs"] = {
        {"flow", flow("flow.onnx")},
        {"flow_x2", flow("flow_x2.onnx")},
        {"flow_x1", flow("flow_x1.onnx")},
        {"denoise", graph("denoise.onnx",
                          {tensor("z", {b, 4, h, w}), tensor("lr", {b, 3, h, w}), tensor("guidance", {b, 3, h4, w4}), tensor("tcm_scale", {1}),
                           tensor("timestep", {1}), tensor("step_coeffs", {8}), tensor("noise", {b, 4, h, w}), tensor("x0_history", {b, 4, h, w}),
                           tensor("norm_stats", {b, sd}), tensor("shared_norm", {1})},
                          {tensor("z_prev", {b, 4, h, w}), tensor("x0", {b, 4, h, w})})},
        {"denoise_stats", graph("denoise_stats.onnx",
                                {tensor("z", {b, 4, h, w}), tensor("lr", {b, 3, h, w}), tensor("guidance", {b, 3, h4, w4}),
                                 tensor("tcm_scale", {1}), tensor("timestep", {1})},
                                {tensor("norm_stats", {b, sd})})},
        {"guide_decode", graph("guide_decode.onnx", {tensor("x0", {b, 4, h, w}), tensor("norm_stats", {b, sv}), tensor("shared_norm", {1})},
                               {tensor("image", {b, 3, h4, w4})})},
        {"decode_stats", graph("decode_stats.onnx", {tensor("latent", {b, 4, h, w})}, {tensor("norm_stats", {b, sv})})},
        {"warp", graph("warp.onnx", {tensor("image", {b, 3, h4, w4}), tensor("flow", {b, 2, h4, w4})}, {tensor("guidance", {b, 3, h4, w4})})},
        {"decode", graph("decode.onnx", {tensor("z", {b, 4, h, w}), tensor("norm_stats", {b, sv}), tensor("shared_norm", {1})},
                         {tensor("rgb", {b, 3, h4, w4})})},
        {"blend", graph("blend.onnx", {tensor("acc", {b, ch, h, w}), tensor("tile", {b, ch, h, w}), tensor("weight", {1, 1, h, w})},
                        {tensor("out", {b, ch, h, w})})},
    };
    m["norm_stats"] = {{"denoise_stats", {{"size", kDenoiseStats}, {"stride", 2}}}, {"decode_stats", {{"size", kDecodeStats}, {"stride", 2}}}};
    m["scheduler"] = {{"config",
                       {{"num_train_timesteps", train_timesteps},
                        {"beta_schedule", "scaled_linear"},
                        {"variance_type", "fixed_small"},
                        {"clip_sample", false},
                        {"prediction_type", "v_prediction"},
                        {"thresholding", false},
                        {"clip_sample_range", 1.0},
                        {"timestep_spacing", "leading"},
                        {"steps_offset", 1}}},
                      {"alphas_cumprod", scaled_linear_acp(train_timesteps)},
                      {"init_noise_sigma", 1.0}};
    m["vae_scaling_factor"] = 0.08333;
    m["latent_channels"] = 4;
    m["sizes"] = {{"min_side", 32}, {"pad_multiple", 4}, {"scale", 4}};
    m["engines"] = json::object();
    return m;
}

// ---------------------------------------------------------------------------------------------
// stand-in graphs: every output depends on every input, so a wrong binding changes the result
struct Tensor {
    std::vector<int64_t> shape;
    std::vector<float> data;
};

// scale: the flow graph's (flow 4, flow_x2 2, flow_x1 1): each gives other flows, so the graph run shows
inline void fake_flow(const Tensor& frame, const Tensor& previous, Tensor& flow, int scale = 4) {
    const int64_t H = flow.shape[2], W = flow.shape[3], h = frame.shape[2], w = frame.shape[3];
    for (int64_t c = 0; c < 2; ++c)
        for (int64_t y = 0; y < H; ++y)
            for (int64_t x = 0; x < W; ++x) {
                const float a = frame.data[(c % 3) * h * w + (y / 4) * w + x / 4];
                const float b = previous.data[((c + 1) % 3) * h * w + (y / 4) * w + x / 4];
                flow.data[(c * H + y) * W + x] = a * 0.5f - b * 0.25f + float(c) * 0.1f + float(x % 4) * 0.01f + float(4 - scale) * 0.07f;
            }
}

// The stand-ins' "GroupNorm": a statistic of what the graph sees (its own) mixed with the given one by
// shared_norm, as every GroupNorm of the real graphs does: own + shared * (given - own). Means in
// double, so a whole frame's mean and the mean of its pooled frame agree far below the tests' tolerance.
inline double plane_mean(const Tensor& t, int64_t c, int pool = 1, bool squared = false) {
    const int64_t H = t.shape[2], W = t.shape[3];
    double total = 0.0;
    for (int64_t Y = 0; Y < H / pool; ++Y)
        for (int64_t X = 0; X < W / pool; ++X) {
            double cell = 0.0;  // the pool x pool average (avg_pool2d), as the stats graphs pool the frame
            for (int64_t y = Y * pool; y < (Y + 1) * pool; ++y)
                for (int64_t x = X * pool; x < (X + 1) * pool; ++x) {
                    const double v = t.data[size_t((c * H + y) * W + x)];
                    cell += squared ? v * v : v;
                }
            total += cell / double(pool * pool);
        }
    return total / double((H / pool) * (W / pool));
}

inline std::vector<double> denoise_statistics(const Tensor& z, const Tensor& lr, const Tensor& guidance, const Tensor& tcm, const Tensor& t,
                                              int pool) {
    std::vector<double> s(fixtures::kDenoiseStats);
    for (int64_t c = 0; c < 4; ++c) {
        s[size_t(c)] = plane_mean(z, c, pool);
        s[size_t(4 + c)] = plane_mean(lr, c % 3, pool) + double(tcm.data[0]) * plane_mean(guidance, c % 3, pool) + double(t.data[0]) * 1e-4;
    }
    return s;
}

inline std::vector<double> decode_statistics(const Tensor& latent, int pool) {
    std::vector<double> s(fixtures::kDecodeStats);
    for (int64_t c = 0; c < 4; ++c) s[size_t(c)] = plane_mean(latent, c, pool);
    for (int64_t c = 0; c < 2; ++c) s[size_t(4 + c)] = plane_mean(latent, c, pool, true);
    return s;
}

// own + shared * (given - own), per statistic
inline std::vector<double> mixed(const std::vector<double>& own, const Tensor& given, const Tensor& shared) {
    std::vector<double> out(own.size());
    for (size_t i = 0; i < own.size(); ++i) out[i] = own[i] + double(shared.data[0]) * (double(given.data[i]) - own[i]);
    return out;
}

inline void fake_denoise_stats(const Tensor& z, const Tensor& lr, const Tensor& guidance, const Tensor& tcm, const Tensor& t, Tensor& stats) {
    const std::vector<double> s = denoise_statistics(z, lr, guidance, tcm, t, 2);
    for (size_t i = 0; i < s.size(); ++i) stats.data[i] = float(s[i]);
}

inline void fake_decode_stats(const Tensor& latent, Tensor& stats) {
    const std::vector<double> s = decode_statistics(latent, 4);
    for (size_t i = 0; i < s.size(); ++i) stats.data[i] = float(s[i]);
}

inline void fake_guide_decode(const Tensor& x0, const Tensor& stats, const Tensor& shared, Tensor& image) {
    const int64_t H = image.shape[2], W = image.shape[3], h = x0.shape[2], w = x0.shape[3];
    const std::vector<double> m = mixed(decode_statistics(x0, 1), stats, shared);
    for (int64_t c = 0; c < 3; ++c) {
        const float norm = float(0.02 * m[size_t(c)] + 0.01 * m[size_t(4 + c % 2)]);
        for (int64_t y = 0; y < H; ++y)
            for (int64_t x = 0; x < W; ++x)
                image.data[(c * H + y) * W + x] = x0.data[c * h * w + (y / 4) * w + x / 4] * 0.3f + x0.data[3 * h * w + (y / 4) * w + x / 4] * 0.05f +
                                                  0.01f * float(c) + 0.002f * float(y % 4) + norm;
    }
}

inline void fake_warp(const Tensor& image, const Tensor& flow, Tensor& guidance) {
    const int64_t H = guidance.shape[2], W = guidance.shape[3];
    for (int64_t c = 0; c < 3; ++c)
        for (int64_t y = 0; y < H; ++y)
            for (int64_t x = 0; x < W; ++x) {
                // a pointwise stand-in that still reads a neighbour (as a warp moves pixels)
                const int64_t xs = (x + 1) % W;
                guidance.data[(c * H + y) * W + x] = image.data[(c * H + y) * W + xs] * 0.9f + flow.data[((c % 2) * H + y) * W + x] * 0.2f;
            }
}

inline void fake_denoise(const Tensor& z, const Tensor& lr, const Tensor& guidance, const Tensor& tcm, const Tensor& t,
                         const Tensor& coeffs, const Tensor& noise, const Tensor& history, const Tensor& stats, const Tensor& shared,
                         Tensor& z_prev, Tensor& x0) {
    const int64_t h = z.shape[2], w = z.shape[3], W = guidance.shape[3], H = guidance.shape[2];
    const float* c = coeffs.data.data();
    const std::vector<double> m = mixed(denoise_statistics(z, lr, guidance, tcm, t, 1), stats, shared);
    for (int64_t ch = 0; ch < 4; ++ch)
        for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < w; ++x) {
                const int64_t i = (ch * h + y) * w + x;
                const float g = guidance.data[((ch % 3) * H + 4 * y + 1) * W + 4 * x + 2];
                const float out = lr.data[((ch % 3) * h + y) * w + x] + tcm.data[0] * g + t.data[0] * 1e-4f +
                                  float(0.05 * m[size_t(ch)] + 0.03 * m[size_t(4 + ch)]);
                float v = c[0] * z.data[i] + c[1] * out;
                v = std::min(std::max(v, -c[5]), c[5]);
                x0.data[i] = v;
                z_prev.data[i] = c[2] * v + c[3] * z.data[i] + c[4] * noise.data[i] + c[6] * out + c[7] * history.data[i];
            }
}

inline void fake_blend(const Tensor& acc, const Tensor& tile, const Tensor& weight, Tensor& out) {
    const size_t plane = weight.data.size();
    for (size_t i = 0; i < out.data.size(); ++i) out.data[i] = acc.data[i] + tile.data[i] * weight.data[i % plane];
}

inline void fake_decode(const Tensor& z, const Tensor& stats, const Tensor& shared, Tensor& rgb) {
    const int64_t H = rgb.shape[2], W = rgb.shape[3], h = z.shape[2], w = z.shape[3];
    const std::vector<double> m = mixed(decode_statistics(z, 1), stats, shared);
    for (int64_t c = 0; c < 3; ++c) {
        const float norm = float(0.04 * m[size_t(c)] - 0.02 * m[size_t(4 + c % 2)]);
        for (int64_t y = 0; y < H; ++y)
            for (int64_t x = 0; x < W; ++x) {
                const float v = z.data[c * h * w + (y / 4) * w + x / 4] * 0.5f + 0.5f + float(y % 4) * 0.01f + float(x % 4) * 0.001f + norm;
                rgb.data[(c * H + y) * W + x] = std::min(std::max(v, 0.0f), 1.0f);
            }
    }
}

// ---------------------------------------------------------------------------------------------
// A Runner over host vectors: uploads copy at once, downloads are delivered at synchronize()
// (as an asynchronous runner would; at once with deliver_at_once), every call is recorded.
class FakeRunner : public svsr::Runner {
public:
    struct Call {
        std::string graph;
        std::map<std::string, svsr::BufferHandle> bound;
    };

    const char* name() const override { return "fake"; }
    svsr::BufferHandle allocate(const std::string& label, const std::vector<int64_t>& shape) override {
        const svsr::BufferHandle h = ++next_;
        buffers_[h] = Tensor{shape, std::vector<float>(size_t(svsr::element_count(shape)), 0.0f)};
        labels_[h] = label;
        ++allocations;
        return h;
    }
    void free(svsr::BufferHandle b) override {
        buffers_.erase(b);
        ++frees;
    }
    void upload(svsr::BufferHandle b, const void* host, size_t bytes) override {
        Tensor& t = get(b);
        CHECK_MSG(bytes == t.data.size() * sizeof(float), "upload size of " + labels_[b]);
        std::memcpy(t.data.data(), host, std::min(bytes, t.data.size() * sizeof(float)));
        ++uploads;
    }
    void download(svsr::BufferHandle b, void* host, size_t bytes) override {
        const Tensor& t = get(b);
        CHECK_MSG(bytes == t.data.size() * sizeof(float), "download size of " + labels_[b]);
        if (deliver_at_once)
            std::memcpy(host, t.data.data(), std::min(bytes, t.data.size() * sizeof(float)));
        else
            pending_.push_back({host, t.data});
    }
    void run(const std::string& graph, const std::vector<svsr::Binding>& in, const std::vector<svsr::Binding>& out) override {
        Call call{graph, {}};
        for (const auto& b : in) call.bound[std::string("in:") + b.name] = b.buffer;
        for (const auto& b : out) call.bound[std::string("out:") + b.name] = b.buffer;
        if (record_calls) calls.push_back(call);
        auto I = [&](const char* n) -> const Tensor& { return get(call.bound.at(std::string("in:") + n)); };
        auto O = [&](const char* n) -> Tensor& { return get(call.bound.at(std::string("out:") + n)); };
        if (graph == "flow" || graph == "flow_x2" || graph == "flow_x1") {
            fake_flow(I("frame"), I("previous"), O("flow"), graph == "flow" ? 4 : graph == "flow_x2" ? 2 : 1);
        } else if (graph == "denoise_stats") {
            fake_denoise_stats(I("z"), I("lr"), I("guidance"), I("tcm_scale"), I("timestep"), O("norm_stats"));
        } else if (graph == "decode_stats") {
            fake_decode_stats(I("latent"), O("norm_stats"));
        } else if (graph == "guide_decode") {
            fake_guide_decode(I("x0"), I("norm_stats"), I("shared_norm"), O("image"));
        } else if (graph == "warp") {
            fake_warp(I("image"), I("flow"), O("guidance"));
        } else if (graph == "blend") {
            fake_blend(I("acc"), I("tile"), I("weight"), O("out"));
        } else if (graph == "denoise") {
            CHECK(call.bound.count("out:z_prev") && call.bound.at("in:z") != call.bound.at("out:z_prev"));
            fake_denoise(I("z"), I("lr"), I("guidance"), I("tcm_scale"), I("timestep"), I("step_coeffs"), I("noise"), I("x0_history"),
                         I("norm_stats"), I("shared_norm"), O("z_prev"), O("x0"));
        } else if (graph == "decode") {
            fake_decode(I("z"), I("norm_stats"), I("shared_norm"), O("rgb"));
        } else {
            CHECK_MSG(false, "unknown graph " + graph);
        }
    }
    void copy_region(svsr::BufferHandle source, svsr::BufferHandle target, int64_t sy, int64_t sx, int64_t ty, int64_t tx, int64_t rows,
                     int64_t cols) override {
        const Tensor& a = get(source);
        Tensor& b = get(target);
        const size_t nd = a.shape.size();
        CHECK_MSG(nd >= 2 && b.shape.size() == nd, "copy_region ranks of " + labels_[source] + " and " + labels_[target]);
        const int64_t ah = a.shape[nd - 2], aw = a.shape[nd - 1], bh = b.shape[nd - 2], bw = b.shape[nd - 1];
        const int64_t planes = svsr::element_count(a.shape) / (ah * aw);
        CHECK_MSG(planes == svsr::element_count(b.shape) / (bh * bw), "copy_region leading dims of " + labels_[source] + " and " + labels_[target]);
        CHECK_MSG(sy >= 0 && sx >= 0 && ty >= 0 && tx >= 0 && sy + rows <= ah && sx + cols <= aw && ty + rows <= bh && tx + cols <= bw,
                  "copy_region window outside " + labels_[source] + " or " + labels_[target]);
        for (int64_t p = 0; p < planes; ++p)
            for (int64_t y = 0; y < rows; ++y)
                std::memcpy(&b.data[size_t((p * bh + ty + y) * bw + tx)], &a.data[size_t((p * ah + sy + y) * aw + sx)], size_t(cols) * sizeof(float));
        ++copies;
    }
    void zero(svsr::BufferHandle buffer) override {
        Tensor& t = get(buffer);
        std::fill(t.data.begin(), t.data.end(), 0.0f);
        ++zeros;
    }
    void synchronize() override {
        for (auto& p : pending_) std::memcpy(p.host, p.data.data(), p.data.size() * sizeof(float));
        pending_.clear();
        ++syncs;
    }

    size_t live_buffers() const { return buffers_.size(); }
    uint64_t live_bytes() const {
        uint64_t n = 0;
        for (const auto& kv : buffers_) n += kv.second.data.size() * sizeof(float);
        return n;
    }
    // distinct binding sets per graph (a runner that binds once per set needs one context each)
    std::map<std::string, size_t> binding_sets() const {
        std::map<std::string, std::set<std::map<std::string, svsr::BufferHandle>>> sets;
        for (const auto& c : calls) sets[c.graph].insert(c.bound);
        std::map<std::string, size_t> out;
        for (const auto& kv : sets) out[kv.first] = kv.second.size();
        return out;
    }

    std::vector<Call> calls;
    bool record_calls = true;     // false: keep no call log (long clips)
    bool deliver_at_once = false;  // a synchronous runner
    int allocations = 0, frees = 0, uploads = 0, syncs = 0, copies = 0, zeros = 0;

private:
    Tensor& get(svsr::BufferHandle b) {
        auto it = buffers_.find(b);
        if (it == buffers_.end()) {
            CHECK_MSG(false, "unknown buffer " + std::to_string(b));
            static Tensor none;
            return none;
        }
        return it->second;
    }
    struct Pending {
        void* host;
        std::vector<float> data;
    };
    std::map<svsr::BufferHandle, Tensor> buffers_;
    std::map<svsr::BufferHandle, std::string> labels_;
    std::vector<Pending> pending_;
    svsr::BufferHandle next_ = 100;
};

// ---------------------------------------------------------------------------------------------
// The algorithm written directly over per-frame arrays (no slots, no runner): the specification.
inline std::vector<float> reference_upscale(const svsr::Manifest& m, const std::vector<uint8_t>& frames, int n, int h, int w,
                                            int num_steps, uint64_t seed, const svsr::Schedule& schedule = svsr::Schedule(),
                                            int flow_scale = 4) {
    const svsr::PaddingPlan p = svsr::padding_plan(h, w, m.min_side, m.pad_multiple, m.scale);
    const int64_t ph = p.padded_height, pw = p.padded_width;
    auto make = [](std::vector<int64_t> shape) { return Tensor{shape, std::vector<float>(size_t(svsr::element_count(shape)))}; };
    std::vector<Tensor> lr, z, fwd, bwd;
    for (int k = 0; k < n; ++k) {
        lr.push_back(make({1, 3, ph, pw}));
        svsr::to_model_input(frames.data() + size_t(k) * h * w * 3, p, lr.back().data.data());
    }
    for (int i = 0; i + 1 < n; ++i) {
        fwd.push_back(make({1, 2, 4 * ph, 4 * pw}));
        bwd.push_back(make({1, 2, 4 * ph, 4 * pw}));
    }
    for (int i = 1; i < n; ++i) {
        fake_flow(lr[i], lr[i - 1], fwd[i - 1], flow_scale);
        fake_flow(lr[i - 1], lr[i], bwd[n - 1 - i], flow_scale);
    }
    for (int k = 0; k < n; ++k) {
        z.push_back(make({1, 4, ph, pw}));
        svsr::philox_normal(seed, 0, k, z.back().data.data(), z.back().data.size());
        for (float& v : z.back().data) v = v * m.init_noise_sigma;
    }
    // per frame: its x0 of the previous step (the multistep schedule's history; zeros before the first)
    std::vector<Tensor> history(size_t(n), make({1, 4, ph, pw}));
    Tensor x0 = make({1, 4, ph, pw}), image = make({1, 3, 4 * ph, 4 * pw}), guidance = make({1, 3, 4 * ph, 4 * pw});
    Tensor zero_guidance = make({1, 3, 4 * ph, 4 * pw}), zero_latent = make({1, 4, ph, pw});
    Tensor noise = make({1, 4, ph, pw}), z_prev = make({1, 4, ph, pw});
    Tensor tcm_on{{1}, {1.0f}}, tcm_off{{1}, {0.0f}}, t{{1}, {0.0f}}, coeffs{{svsr::kNumStepCoeffs}, std::vector<float>(svsr::kNumStepCoeffs)};
    // whole frames: every GroupNorm keeps its own statistics (shared_norm 0; the given ones are not read)
    Tensor own{{1}, {0.0f}}, denoise_none = make({1, kDenoiseStats}), decode_none = make({1, kDecodeStats});
    const std::vector<svsr::Step> steps = svsr::step_coefficients(m.scheduler, m.alphas_cumprod, num_steps, schedule);
    for (const svsr::FrameCall& call : svsr::frame_calls(n, num_steps)) {
        const svsr::Step& step = steps[size_t(call.step)];
        t.data[0] = float(step.timestep);
        std::copy(step.coeffs.begin(), step.coeffs.end(), coeffs.data.begin());
        if (step.has_noise)
            svsr::philox_normal(seed, uint32_t(call.step + 1), uint32_t(call.frame), noise.data.data(), noise.data.size());
        else
            std::fill(noise.data.begin(), noise.data.end(), 0.0f);
        const int k = call.frame;
        const Tensor& x0_history = svsr::needs_history(schedule.scheduler) ? history[size_t(k)] : zero_latent;
        if (call.uses_tcm()) {
            fake_guide_decode(x0, decode_none, own, image);
            fake_warp(image, (call.forward ? fwd : bwd)[call.flow_index], guidance);
            fake_denoise(z[k], lr[k], guidance, tcm_on, t, coeffs, noise, x0_history, denoise_none, own, z_prev, x0);
        } else {
            fake_denoise(z[k], lr[k], zero_guidance, tcm_off, t, coeffs, noise, x0_history, denoise_none, own, z_prev, x0);
        }
        z[k].data = z_prev.data;
        history[size_t(k)].data = x0.data;
    }
    std::vector<float> out;
    Tensor rgb = make({1, 3, 4 * ph, 4 * pw});
    std::vector<float> frame(size_t(p.out_height()) * p.out_width() * 3);
    for (int k = 0; k < n; ++k) {
        fake_decode(z[k], decode_none, own, rgb);
        svsr::rgb_to_hwc(rgb.data.data(), p, frame.data());
        out.insert(out.end(), frame.begin(), frame.end());
    }
    return out;
}

inline std::vector<uint8_t> random_frames(int n, int h, int w, uint32_t seed) {
    std::vector<uint8_t> f(size_t(n) * h * w * 3);
    uint32_t s = seed * 2654435761u + 12345u;
    for (auto& v : f) {
        s = s * 1664525u + 1013904223u;
        v = uint8_t(s >> 24);
    }
    return f;
}

}  // namespace fixtures
