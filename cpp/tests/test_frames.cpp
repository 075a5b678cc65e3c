// Padding, the LR input convention and the output conversions (svsr/contract/sizes.py, frames.py,
// runtime/sampling/sampler.py to_model_input, runtime/jobs/job.py to_uint8).
#include <cmath>

#include "check.hpp"

int main() {
    const svsr::PaddingPlan p = svsr::padding_plan(33, 46);
    CHECK(p.padded_height == 36 && p.padded_width == 48 && p.out_height() == 132 && p.out_width() == 184);
    const svsr::PaddingPlan exact = svsr::padding_plan(32, 48);
    CHECK(exact.padded_height == 32 && exact.padded_width == 48);
    CHECK_THROWS(svsr::padding_plan(31, 100), svsr::Status::input, "100x31 px are too small");
    CHECK_THROWS(svsr::padding_plan(100, 12), svsr::Status::input, "at least 32 px");

    // edge replication bottom/right; x / 255 * 2 - 1 in float32
    std::vector<uint8_t> frame(size_t(33) * 46 * 3);
    for (size_t i = 0; i < frame.size(); ++i) frame[i] = uint8_t(i * 37 % 256);
    std::vector<float> lr(size_t(3) * 36 * 48);
    svsr::to_model_input(frame.data(), p, lr.data());
    auto pixel = [&](int y, int x, int c) { return frame[(size_t(y) * 46 + x) * 3 + c]; };
    auto model = [&](int y, int x, int c) { return lr[size_t(c) * 36 * 48 + size_t(y) * 48 + x]; };
    auto expect = [](uint8_t v) { return static_cast<float>(v) / 255.0f * 2.0f - 1.0f; };
    CHECK(model(0, 0, 0) == expect(pixel(0, 0, 0)));
    CHECK(model(10, 20, 2) == expect(pixel(10, 20, 2)));
    CHECK(model(35, 47, 1) == expect(pixel(32, 45, 1)));  // corner: last row and column replicated
    CHECK(model(34, 5, 0) == expect(pixel(32, 5, 0)));
    CHECK(model(7, 46, 2) == expect(pixel(7, 45, 2)));
    {
        std::vector<uint8_t> ends = {0, 255, 128};
        ends.resize(size_t(32) * 32 * 3, 0);
        std::vector<float> out(size_t(3) * 32 * 32);
        svsr::to_model_input(ends.data(), svsr::padding_plan(32, 32), out.data());
        CHECK(out[0] == -1.0f);
        CHECK(out[32 * 32] == 1.0f);
        uint32_t bits;
        std::memcpy(&bits, &out[2 * 32 * 32], 4);
        CHECK(bits == 0x3b808100u);  // numpy: float32(128) / 255 * 2 - 1
    }

    // output: crop 4x to (4h, 4w), CHW -> HWC; uint8 = uint8(clip(x,0,1)*255 + 0.5)
    std::vector<float> rgb(size_t(3) * 144 * 192);
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = float(i % 1000) / 999.0f;
    std::vector<float> hwc(size_t(132) * 184 * 3);
    std::vector<uint8_t> u8(hwc.size());
    svsr::rgb_to_hwc(rgb.data(), p, hwc.data());
    svsr::rgb_to_hwc_u8(rgb.data(), p, u8.data());
    CHECK(hwc[(size_t(131) * 184 + 183) * 3 + 2] == rgb[size_t(2) * 144 * 192 + size_t(131) * 192 + 183]);
    CHECK(hwc[(size_t(5) * 184 + 7) * 3 + 1] == rgb[size_t(1) * 144 * 192 + size_t(5) * 192 + 7]);
    CHECK(u8[(size_t(5) * 184 + 7) * 3 + 1] == svsr::to_uint8(hwc[(size_t(5) * 184 + 7) * 3 + 1]));
    CHECK(svsr::to_uint8(-0.5f) == 0 && svsr::to_uint8(2.0f) == 255 && svsr::to_uint8(0.5f) == 128);
    CHECK(svsr::to_uint8(1.0f / 255.0f * 0.5f) == 1);  // 0.5 -> rounds up, as (x*255 + 0.5) truncated
    CHECK(svsr::to_uint8(std::nanf("")) == 0);

    // flow scales (sizes.flow_scale_problem, word for word): RAFT needs >= 128 px of what it sees per side
    CHECK(svsr::flow_scale_min_side(4) == 32 && svsr::flow_scale_min_side(2) == 64 && svsr::flow_scale_min_side(1) == 128);
    CHECK(svsr::flow_scale_problem(4, 32, 32).empty() && svsr::flow_scale_problem(2, 64, 64).empty() && svsr::flow_scale_problem(1, 128, 132).empty());
    CHECK(svsr::flow_scale_problem(2, 60, 64) ==
          "--flow-scale 2 needs frames of at least 64 px per side (RAFT sees them at x2), but these are 64x60; use --flow-scale 4.");
    CHECK(svsr::flow_scale_problem(1, 124, 200) ==
          "--flow-scale 1 needs frames of at least 128 px per side (RAFT sees them at x1), but these are 200x124; use --flow-scale 4.");
    CHECK(svsr::flow_scale_problem(1, 36, 40, "flow scale") ==
          "flow scale 1 needs frames of at least 128 px per side (RAFT sees them at x1), but these are 40x36; use flow scale 4.");
    CHECK_THROWS(svsr::flow_scale_problem(3, 64, 64), svsr::Status::invalid_argument, "flow scale 3 is not a flow scale");
    return check::finish("test_frames");
}
