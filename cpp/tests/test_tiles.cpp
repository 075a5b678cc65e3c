// Tile layouts and blend weights (svsr/contract/tiles.py rules, tiles.cpp) against golden/tiles.json,
// written by make_golden.py from the Python contract: positions exactly, latent weights bit for bit,
// pixel (4x) weights by an FNV-1a hash of their bits; and the sentences for bad tiles and overlaps.
#include <nlohmann/json.hpp>

#include "check.hpp"

using json = nlohmann::json;

namespace {

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

uint64_t fnv1a(const std::vector<float>& values) {
    uint64_t digest = 0xCBF29CE484222325ull;
    for (float v : values) {
        const uint32_t u = bits(v);
        for (int b = 0; b < 4; ++b) digest = (digest ^ ((u >> (8 * b)) & 0xFF)) * 0x100000001B3ull;
    }
    return digest;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: test_tiles tiles.json\n");
        return 2;
    }
    const json golden = json::parse(check::read_file(argv[1]));
    int cases = 0;
    for (const json& c : golden.at("cases")) {
        const int h = c.at("height").get<int>(), w = c.at("width").get<int>(), overlap = c.at("overlap").get<int>();
        const bool tiled = !c.at("tile").is_null();
        const svsr::TileLayout layout =
            svsr::plan_tiles(h, w, tiled ? c.at("tile")[0].get<int>() : 0, tiled ? c.at("tile")[1].get<int>() : 0, overlap);
        const std::string label = std::to_string(h) + "x" + std::to_string(w) + " tile " + c.at("tile").dump() + " overlap " + std::to_string(overlap);
        CHECK_MSG(layout.tile_height == c.at("tile_shape")[0].get<int>() && layout.tile_width == c.at("tile_shape")[1].get<int>() &&
                      layout.overlap == c.at("layout_overlap").get<int>(),
                  label + ": tile shape / overlap");
        const json& tiles = c.at("tiles");
        bool same = layout.tiles.size() == tiles.size();
        for (size_t i = 0; same && i < tiles.size(); ++i)
            same = layout.tiles[i].top == tiles[i][0].get<int>() && layout.tiles[i].left == tiles[i][1].get<int>() &&
                   layout.tiles[i].height == tiles[i][2].get<int>() && layout.tiles[i].width == tiles[i][3].get<int>();
        CHECK_MSG(same, label + ": tile positions");
        CHECK_MSG(layout.single() == (tiles.size() == 1), label);
        const std::vector<std::vector<float>> weights = layout.weights(1), pixels = layout.weights(4);
        bool weights_same = weights.size() == tiles.size();
        std::string first;
        for (size_t i = 0; weights_same && i < weights.size(); ++i) {
            weights_same = std::to_string(fnv1a(weights[i])) == c.at("weights_fnv1a")[i].get<std::string>();
            if (c.at("weights").is_null()) continue;
            const json& want = c.at("weights")[i];
            for (size_t j = 0; j < want.size() && j < weights[i].size(); ++j)
                if (first.empty() && bits(weights[i][j]) != want[j].get<uint32_t>())
                    first = " (tile " + std::to_string(i) + " weight " + std::to_string(j) + ": " + std::to_string(weights[i][j]) + ")";
        }
        CHECK_MSG(weights_same, label + ": latent weights differ from Python's" + first);
        bool pixels_same = pixels.size() == tiles.size();
        for (size_t i = 0; pixels_same && i < pixels.size(); ++i)
            pixels_same = std::to_string(fnv1a(pixels[i])) == c.at("pixel_weights_fnv1a")[i].get<std::string>();
        CHECK_MSG(pixels_same, label + ": pixel weights differ from Python's");
        // the weights sum to one at every position (to float32 rounding)
        std::vector<double> total(size_t(h) * w, 0.0);
        for (size_t i = 0; i < weights.size(); ++i) {
            const svsr::Tile& t = layout.tiles[i];
            for (int y = 0; y < t.height; ++y)
                for (int x = 0; x < t.width; ++x) total[size_t(t.top + y) * w + size_t(t.left + x)] += weights[i][size_t(y) * t.width + x];
        }
        bool ones = true;
        for (double v : total) ones = ones && std::fabs(v - 1.0) < 1e-6;
        CHECK_MSG(ones, label + ": weights do not sum to one");
        ++cases;
    }
    CHECK(cases >= 5);

    // bad tiles and overlaps: one sentence each (tiles.parse_tile / overlap_problem)
    CHECK_THROWS(svsr::check_tile(8, 8, 0), svsr::Status::invalid_argument, "--tile 8x8 is below the smallest tile of 32x32 LR pixels");
    CHECK_THROWS(svsr::check_tile(64, 50, 8), svsr::Status::invalid_argument, "not a multiple of 4; use 52 instead of 50");
    CHECK_THROWS(svsr::check_tile(64, 64, 32), svsr::Status::invalid_argument, "--tile-overlap 32 is half a tile or more for --tile 64x64; use less than 32");
    CHECK_THROWS(svsr::check_tile(64, 64, -1), svsr::Status::invalid_argument, "--tile-overlap -1 is not a whole number");
    svsr::check_tile(64, 96, 31);
    std::printf("tiles golden: %d layouts compared\n", cases);
    return check::finish("test_tiles");
}
