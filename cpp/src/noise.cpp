// Philox4x32-10 + Box-Muller Gaussian noise, bit for bit as docs/noise.md specifies
// (svsr/contract/noise.py, PhiloxNoise): a pure function of (seed, draw, frame, element index).
//
// Exactness: Box-Muller runs in binary64 with the double-precision log/sqrt/cos/sin, each
// operation rounded to binary64 (SSE2, no x87, no fast-math, no FMA contraction), and only the
// final values are rounded to float32.
#include <cmath>

#include "svsr/host.hpp"

namespace svsr {

namespace {

constexpr uint32_t kM0 = 0xD2511F53u;
constexpr uint32_t kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u;
constexpr uint32_t kW1 = 0xBB67AE85u;
constexpr double kTwoPi = 6.283185307179586;  // docs/noise.md fixes this literal (0x1.921fb54442d18p+2)
constexpr double kTwoPow24Inv = 5.9604644775390625e-08;  // 2^-24, exact

inline PhiloxCounter round_(const PhiloxCounter& c, uint32_t k0, uint32_t k1) {
    const uint64_t p0 = uint64_t(kM0) * c[0];
    const uint64_t p1 = uint64_t(kM1) * c[2];
    return PhiloxCounter{uint32_t(p1 >> 32) ^ c[1] ^ k0, uint32_t(p1), uint32_t(p0 >> 32) ^ c[3] ^ k1, uint32_t(p0)};
}

inline void box_muller(uint32_t w1, uint32_t w2, float* z0, float* z1) {
    const double u1 = double((w1 >> 8) + 1u) * kTwoPow24Inv;  // (0, 1]
    const double u2 = double(w2 >> 8) * kTwoPow24Inv;         // [0, 1)
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = kTwoPi * u2;
    *z0 = static_cast<float>(r * std::cos(theta));
    *z1 = static_cast<float>(r * std::sin(theta));
}

}  // namespace

PhiloxCounter philox4x32_10(PhiloxCounter c, uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += kW0;
            k1 += kW1;
        }
        c = round_(c, k0, k1);
    }
    return c;
}

void philox_normal(uint64_t seed, uint32_t draw, uint32_t frame, float* out, uint64_t n) {
    const uint32_t k0 = uint32_t(seed & 0xFFFFFFFFu), k1 = uint32_t(seed >> 32);
    if ((n + 3) / 4 > (uint64_t(1) << 32))
        throw Error(Status::invalid_argument, "philox noise supports at most 2**34 elements per tensor.");
    for (uint64_t b = 0; 4 * b < n; ++b) {
        const PhiloxCounter x = philox4x32_10(PhiloxCounter{uint32_t(b), frame, draw, 0u}, k0, k1);
        float z[4];
        box_muller(x[0], x[1], &z[0], &z[1]);
        box_muller(x[2], x[3], &z[2], &z[3]);
        for (uint64_t j = 0; j < 4 && 4 * b + j < n; ++j) out[4 * b + j] = z[j];
    }
}

}  // namespace svsr
