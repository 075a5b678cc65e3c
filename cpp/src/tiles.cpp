// Tiles in the latent plane, by the rules of svsr/contract/tiles.py: positions and blend weights.
//
// The weights are computed as numpy computes them: each window in float64 (a raised cosine,
// 0.5 - 0.5 * cos(pi * (k + 0.5) / ramp)), their outer products summed per position in tile order,
// each window divided by that sum, then rounded to float32.
#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "svsr/host.hpp"

namespace svsr {

namespace {

constexpr double kPi = 3.141592653589793;  // np.pi

// tiles._window_1d: ramps of `ramp` samples on the sides that are not the frame's border; > 0 everywhere
std::vector<double> window_1d(int start, int size, int length, int ramp) {
    std::vector<double> w(size_t(size), 1.0);
    if (ramp <= 0) return w;
    const int m = std::min(ramp, size);
    std::vector<double> rise(static_cast<size_t>(m));
    for (int k = 0; k < m; ++k) rise[size_t(k)] = 0.5 - 0.5 * std::cos(kPi * (double(k) + 0.5) / double(ramp));
    if (start > 0)
        for (int k = 0; k < m; ++k) w[size_t(k)] *= rise[size_t(k)];
    if (start + size < length)
        for (int k = 0; k < m; ++k) w[size_t(size - m + k)] *= rise[size_t(m - 1 - k)];
    return w;
}

}  // namespace

std::vector<int> tile_starts(int length, int tile, int overlap) {
    if (tile >= length) return {0};
    const int stride = tile - overlap;
    if (stride < 1) throw Error(Status::invalid_argument, "a tile overlap of " + std::to_string(overlap) + " leaves no stride for tiles of " +
                                                             std::to_string(tile) + "; use an overlap below half a tile.");
    const int count = (length - tile + stride - 1) / stride + 1;  // ceil((length - tile) / stride) + 1
    std::set<int> starts;
    for (int i = 0; i < count; ++i) starts.insert(std::min(i * stride, length - tile));
    return std::vector<int>(starts.begin(), starts.end());
}

TileLayout plan_tiles(int frame_height, int frame_width, int tile_height, int tile_width, int overlap) {
    TileLayout layout;
    layout.frame_height = frame_height;
    layout.frame_width = frame_width;
    if (tile_height <= 0 || tile_width <= 0) {
        layout.tile_height = frame_height;
        layout.tile_width = frame_width;
        layout.tiles.push_back(Tile{0, 0, frame_height, frame_width});
        return layout;
    }
    const int th = std::min(tile_height, frame_height), tw = std::min(tile_width, frame_width);
    for (int top : tile_starts(frame_height, th, overlap))
        for (int left : tile_starts(frame_width, tw, overlap)) layout.tiles.push_back(Tile{top, left, th, tw});
    layout.tile_height = th;
    layout.tile_width = tw;
    layout.overlap = layout.tiles.size() > 1 ? overlap : 0;
    return layout;
}

std::vector<std::vector<float>> TileLayout::weights(int scale) const {
    const int height = frame_height * scale, width = frame_width * scale, ramp = overlap * scale;
    std::vector<double> total(size_t(height) * size_t(width), 0.0);
    std::vector<std::vector<double>> raw;
    for (const Tile& tile : tiles) {
        const Tile t{tile.top * scale, tile.left * scale, tile.height * scale, tile.width * scale};
        const std::vector<double> rows = window_1d(t.top, t.height, height, ramp), cols = window_1d(t.left, t.width, width, ramp);
        std::vector<double> w(size_t(t.height) * size_t(t.width));
        for (int y = 0; y < t.height; ++y)
            for (int x = 0; x < t.width; ++x) {
                const double v = rows[size_t(y)] * cols[size_t(x)];
                w[size_t(y) * t.width + x] = v;
                total[size_t(t.top + y) * width + size_t(t.left + x)] += v;
            }
        raw.push_back(std::move(w));
    }
    std::vector<std::vector<float>> out;
    for (size_t i = 0; i < tiles.size(); ++i) {
        const Tile t{tiles[i].top * scale, tiles[i].left * scale, tiles[i].height * scale, tiles[i].width * scale};
        std::vector<float> w(raw[i].size());
        for (int y = 0; y < t.height; ++y)
            for (int x = 0; x < t.width; ++x)
                w[size_t(y) * t.width + x] = static_cast<float>(raw[i][size_t(y) * t.width + x] / total[size_t(t.top + y) * width + size_t(t.left + x)]);
        out.push_back(std::move(w));
    }
    return out;
}

void check_tile(int tile_height, int tile_width, int overlap) {
    const std::string tile = std::to_string(tile_height) + "x" + std::to_string(tile_width);
    for (int side : {tile_height, tile_width}) {
        if (side < kMinTile)
            throw Error(Status::invalid_argument, "--tile " + tile + " is below the smallest tile of " + std::to_string(kMinTile) + "x" +
                                                      std::to_string(kMinTile) + " LR pixels; use " + std::to_string(kMinTile) + " or more per side.");
        if (side % kTileMultiple) {
            const int up = (side + kTileMultiple - 1) / kTileMultiple * kTileMultiple;
            throw Error(Status::invalid_argument, "--tile " + tile + " has a side that is not a multiple of " + std::to_string(kTileMultiple) +
                                                      "; use " + std::to_string(up) + " instead of " + std::to_string(side) + ".");
        }
    }
    if (overlap < 0)
        throw Error(Status::invalid_argument, "--tile-overlap " + std::to_string(overlap) + " is not a whole number of LR pixels >= 0; use e.g. " +
                                                  std::to_string(kDefaultOverlap) + ".");
    const int half = std::min(tile_height, tile_width) / 2;
    if (overlap >= half)
        throw Error(Status::invalid_argument, "--tile-overlap " + std::to_string(overlap) + " is half a tile or more for --tile " + tile +
                                                  "; use less than " + std::to_string(half) + " (the default is " + std::to_string(kDefaultOverlap) + ").");
}

}  // namespace svsr
