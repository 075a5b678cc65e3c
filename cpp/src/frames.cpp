// Frame sizes, padding and pixel conversions (svsr/contract/sizes.py, frames.py; the LR input
// convention of svsr/runtime/sampling/sampler.py; uint8 output as svsr/runtime/jobs/job.py's to_uint8).
#include <cmath>
#include <sstream>

#include "svsr/host.hpp"

namespace svsr {

PaddingPlan padding_plan(int height, int width, int min_side, int pad_multiple, int scale) {
    if (height < min_side || width < min_side) {
        std::ostringstream msg;
        msg << "frames of " << width << "x" << height << " px are too small: StableVSR needs at least " << min_side
            << " px on each side (RAFT works on the 4x frames), so upscale or pad the input first.";
        throw Error(Status::input, msg.str());
    }
    if (pad_multiple < 1) pad_multiple = 1;
    auto up = [&](int v) { return (v + pad_multiple - 1) / pad_multiple * pad_multiple; };
    PaddingPlan plan;
    plan.height = height;
    plan.width = width;
    plan.padded_height = up(height);
    plan.padded_width = up(width);
    plan.scale = scale;
    return plan;
}

void to_model_input(const uint8_t* frame, const PaddingPlan& p, float* out) {
    // (x.astype(float32) / 255) * 2 - 1, each a float32 operation; edge replication bottom/right
    const size_t plane = size_t(p.padded_height) * p.padded_width;
    for (int y = 0; y < p.padded_height; ++y) {
        const int sy = y < p.height ? y : p.height - 1;
        for (int x = 0; x < p.padded_width; ++x) {
            const int sx = x < p.width ? x : p.width - 1;
            const uint8_t* px = frame + (size_t(sy) * p.width + sx) * 3;
            for (int c = 0; c < 3; ++c) {
                const float v = static_cast<float>(px[c]) / 255.0f;
                const float v2 = v * 2.0f;
                out[c * plane + size_t(y) * p.padded_width + x] = v2 - 1.0f;
            }
        }
    }
}

uint8_t to_uint8(float x) {
    // (np.clip(x, 0, 1) * 255.0 + 0.5).astype(uint8), in float32; NaN -> 0
    if (!(x == x)) return 0;
    float v = x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x);
    v = v * 255.0f;
    v = v + 0.5f;
    return static_cast<uint8_t>(v);
}

void rgb_to_hwc(const float* rgb, const PaddingPlan& p, float* out) {
    const size_t W = size_t(p.padded_width) * p.scale, H = size_t(p.padded_height) * p.scale;
    const size_t plane = W * H;
    const int oh = p.out_height(), ow = p.out_width();
    for (int y = 0; y < oh; ++y)
        for (int x = 0; x < ow; ++x)
            for (int c = 0; c < 3; ++c) out[(size_t(y) * ow + x) * 3 + c] = rgb[c * plane + size_t(y) * W + x];
}

void rgb_to_hwc_u8(const float* rgb, const PaddingPlan& p, uint8_t* out) {
    const size_t W = size_t(p.padded_width) * p.scale, H = size_t(p.padded_height) * p.scale;
    const size_t plane = W * H;
    const int oh = p.out_height(), ow = p.out_width();
    for (int y = 0; y < oh; ++y)
        for (int x = 0; x < ow; ++x)
            for (int c = 0; c < 3; ++c) out[(size_t(y) * ow + x) * 3 + c] = to_uint8(rgb[c * plane + size_t(y) * W + x]);
}

}  // namespace svsr
