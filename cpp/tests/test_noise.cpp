// Philox noise against the test vectors of docs/noise.md (bit for bit) and Random123's known answers.
//   test_noise [docs/noise.md]
#include <cinttypes>
#include <vector>

#include "check.hpp"

namespace {

uint32_t float_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// "philox4x32-10  c0 c1 c2 c3  k0 k1  ->  x0 x1 x2 x3" lines
int check_kat_lines(const std::string& doc) {
    std::istringstream in(doc);
    std::string line;
    int count = 0;
    while (std::getline(in, line)) {
        if (line.rfind("philox4x32-10 ", 0) != 0) continue;
        std::istringstream f(line.substr(14));
        uint32_t c[4], k[2], x[4];
        std::string arrow;
        f >> std::hex >> c[0] >> c[1] >> c[2] >> c[3] >> k[0] >> k[1] >> arrow >> x[0] >> x[1] >> x[2] >> x[3];
        if (!f || arrow != "->") continue;
        const svsr::PhiloxCounter got = svsr::philox4x32_10({c[0], c[1], c[2], c[3]}, k[0], k[1]);
        CHECK_MSG(got[0] == x[0] && got[1] == x[1] && got[2] == x[2] && got[3] == x[3], line);
        ++count;
    }
    return count;
}

// "seed d frame index 0xbits value" lines of the test-vector block
int check_vectors(const std::string& doc) {
    std::istringstream in(doc);
    std::string line;
    int count = 0;
    bool in_block = false;
    while (std::getline(in, line)) {
        if (line.rfind("# seed d frame index", 0) == 0) {
            in_block = true;
            continue;
        }
        if (!in_block) continue;
        if (line.rfind("```", 0) == 0) break;
        std::istringstream f(line);
        unsigned long long seed;
        unsigned d, frame, index;
        std::string hex;
        if (!(f >> seed >> d >> frame >> index >> hex)) continue;
        const uint32_t want = uint32_t(std::stoul(hex, nullptr, 16));
        std::vector<float> out(index + 1);
        svsr::philox_normal(seed, d, frame, out.data(), out.size());
        CHECK_MSG(float_bits(out[index]) == want, line);
        ++count;
    }
    return count;
}

}  // namespace

int main(int argc, char** argv) {
    // Random123 kat_vectors (philox4x32 10) and this scheme's worked example
    {
        auto x = svsr::philox4x32_10({0, 0, 0, 0}, 0, 0);
        CHECK(x[0] == 0x6627e8d5u && x[1] == 0xe169c58du && x[2] == 0xbc57ac4cu && x[3] == 0x9b00dbd8u);
        x = svsr::philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, 0xffffffffu, 0xffffffffu);
        CHECK(x[0] == 0x408f276du && x[1] == 0x41c83b0eu && x[2] == 0xa20bc7c6u && x[3] == 0x6d5451fdu);
        x = svsr::philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, 0xa4093822u, 0x299f31d0u);
        CHECK(x[0] == 0xd16cfe09u && x[1] == 0x94fdccebu && x[2] == 0x5001e420u && x[3] == 0x24126ea1u);
        float z[2];
        svsr::philox_normal(1, 1, 7, z, 2);  // worked example: seed 1, d 1, frame 7
        CHECK(float_bits(z[0]) == 0xbed747c7u);
        CHECK(float_bits(z[1]) == 0xbcf8375bu);
    }
    // element i depends only on (seed, d, frame, i): prefixes agree whatever the length
    {
        std::vector<float> a(13), b(7);
        svsr::philox_normal(42, 3, 5, a.data(), a.size());
        svsr::philox_normal(42, 3, 5, b.data(), b.size());
        bool same = true;
        for (size_t i = 0; i < b.size(); ++i) same = same && float_bits(a[i]) == float_bits(b[i]);
        CHECK(same);
        std::vector<float> c(13);
        svsr::philox_normal(42, 4, 5, c.data(), c.size());
        CHECK(float_bits(a[0]) != float_bits(c[0]));
        // seed 2^64-1: key words all ones
        std::vector<float> e(8);
        svsr::philox_normal(UINT64_MAX, 0, 0, e.data(), e.size());
        CHECK(float_bits(e[0]) == 0x3f8c9ec9u);
    }
    // statistics of a larger tensor: mean ~ 0, variance ~ 1
    {
        std::vector<float> v(1 << 16);
        svsr::philox_normal(0, 1, 0, v.data(), v.size());
        double mean = 0, var = 0;
        for (float f : v) mean += f;
        mean /= v.size();
        for (float f : v) var += (f - mean) * (f - mean);
        var /= v.size();
        CHECK(mean > -0.02 && mean < 0.02);
        CHECK(var > 0.97 && var < 1.03);
    }
    if (argc > 1) {
        std::ifstream probe(argv[1]);
        if (!probe) {
            std::printf("%s not found: the docs/noise.md test vectors were not checked\n", argv[1]);
        } else {
            const std::string doc = check::read_file(argv[1]);
            const int kats = check_kat_lines(doc);
            const int vectors = check_vectors(doc);
            std::printf("docs/noise.md: %d Philox known answers, %d test vectors\n", kats, vectors);
            CHECK(kats >= 5);
            CHECK(vectors >= 144);
        }
    }
    return check::finish("test_noise");
}
