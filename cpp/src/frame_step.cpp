// The Upscaler's runner buffers (slots) and the graph launches of one frame-step and of one final
// decode, whole-frame or per tile, as svsr/runtime/sampling/frame_step.py enqueues them.
//
// Untiled (one tile covers the frame), frame-step on slot set s (p: the previous frame's set):
//   guide_decode(x0[p], decode_norm, shared_norm) -> image; warp(image, flow[s]) -> guidance[s]   (TCM: not the sweep's first frame)
//   denoise(z[s], lr[s], guidance[s] | zeros, tcm, t, coeffs, noise[s], x0_history[s] | zeros, denoise_norm, shared_norm)
//     -> z_out[s], x0[s]
// shared_norm is 0 untiled: every GroupNorm normalises with its own statistics (the paper's graphs; the
// statistics buffers hold zeros nothing writes), so the untiled path is the graphs' own arithmetic.
// Tiled: the same graphs, guide_decode, denoise and decode once per tile on one set of tile buffers. A
// tile's input is cut out of the whole-frame buffer (copy_region); its output is added into a zeroed
// whole-frame buffer with its weight by the blend graph (acc + tile * weight; the weights of all tiles
// sum to one), by the round trip whole -> acc, blend(acc, tile, weight) -> out, out -> whole. The warp
// always sees the whole frame (flows carry texture across tile borders). Every tile normalises with the
// whole frame's GroupNorm statistics (shared_norm is 1 tiled), recorded once per frame-step by the stats
// graphs on the whole frame (pooled inside the graph): decode_stats(x0[p]) -> decode_norm before the
// guide_decode tiles, denoise_stats(z[s], lr[s], guidance[s] | zeros, tcm, t) -> denoise_norm before the
// denoise tiles, decode_stats(z) -> decode_norm before the final decode's tiles. So tiles no longer
// differ from the whole frame by their own statistics.
#include "svsr/host.hpp"

namespace svsr {

namespace {

[[noreturn]] void no_tiles(const char* runner) {
    throw Error(Status::unsupported, std::string("the ") + runner +
                                         " runner has no copy_region and zero to move tile regions, so it runs whole frames only; "
                                         "leave tiles off (0 x 0).");
}

}  // namespace

void Runner::copy_region(BufferHandle, BufferHandle, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) { no_tiles(name()); }

void Runner::zero(BufferHandle) { no_tiles(name()); }

std::string Runner::tile_problem(int, int, int, int) const { return std::string(); }

std::string Runner::graph_problem(const std::string&) const { return std::string(); }

void Upscaler::set_tiles(int tile_height, int tile_width, int overlap) {
    if (tile_height == 0 && tile_width == 0) {
        tile_h_ = tile_w_ = 0;
        return;
    }
    check_tile(tile_height, tile_width, overlap);
    tile_h_ = tile_height;
    tile_w_ = tile_width;
    tile_overlap_ = overlap;
}

void Upscaler::release_slots() {
    for (BufferHandle b : owned_) runner_->free(b);
    owned_.clear();
    sets_[0] = sets_[1] = SlotSet{};
    image_ = zero_guidance_ = zero_latent_ = tcm_on_ = tcm_off_ = timestep_ = coeffs_ = 0;
    shared_norm_ = denoise_norm_ = decode_norm_ = 0;
    tile_ = TileBuffers{};
    layout_ = TileLayout{};
    tiled_ = false;
    slot_h_ = slot_w_ = 0;
    slot_bytes_ = 0;
}

void Upscaler::ensure_slots(int ph, int pw, const TileLayout& layout) {
    const bool tiled = !layout.single();
    auto same_layout = [&] {
        if (tiled != tiled_) return false;
        return !tiled || (layout.tile_height == layout_.tile_height && layout.tile_width == layout_.tile_width && layout.overlap == layout_.overlap);
    };
    if (slot_h_ == ph && slot_w_ == pw && same_layout()) return;
    if (!owned_.empty()) {
        runner_->synchronize();
        release_slots();
    }
    // a buffer of `graph`'s `tensor` at h x w (a frame or a tile); channels: the blend graph's
    auto alloc = [&](const std::string& label, const char* graph, const char* tensor, int h, int w, int channels = 4) {
        const std::vector<int64_t> shape = resolve_shape(manifest_.tensor(graph, tensor), 1, h, w, channels);
        const BufferHandle b = runner_->allocate(label, shape);
        if (b == 0) throw Error(Status::runner, "the runner returned no buffer for " + label + ".");
        owned_.push_back(b);
        slot_bytes_ += uint64_t(element_count(shape)) * sizeof(float);
        return b;
    };
    // allocate zero-fills, but a runner's zero-fill is not relied on for inputs
    auto upload_zeros = [&](BufferHandle b, const char* graph, const char* tensor, int h, int w) {
        const std::vector<float> zeros(size_t(element_count(resolve_shape(manifest_.tensor(graph, tensor), 1, h, w))), 0.0f);
        runner_->upload(b, zeros.data(), zeros.size() * sizeof(float));
    };
    for (int s = 0; s < 2; ++s) {
        const std::string n = std::to_string(s);
        SlotSet& set = sets_[s];
        set.z_in = alloc("z_in" + n, "denoise", "z", ph, pw);
        set.lr = alloc("lr" + n, "denoise", "lr", ph, pw);
        set.lr_prev = alloc("lr_prev" + n, "flow", "previous", ph, pw);
        set.flow = alloc("flow" + n, "flow", "flow", ph, pw);
        set.noise = alloc("noise" + n, "denoise", "noise", ph, pw);
        set.guidance = alloc("guidance" + n, "warp", "guidance", ph, pw);
        set.z_out = alloc("z_out" + n, "denoise", "z_prev", ph, pw);
        set.x0 = alloc("x0" + n, "denoise", "x0", ph, pw);
        set.x0_history = alloc("x0_history" + n, "denoise", "x0_history", ph, pw);
        set.rgb = alloc("rgb" + n, "decode", "rgb", ph, pw);
    }
    image_ = alloc("image", "guide_decode", "image", ph, pw);
    zero_guidance_ = alloc("zero_guidance", "denoise", "guidance", ph, pw);
    zero_latent_ = alloc("zero_latent", "denoise", "x0_history", ph, pw);
    tcm_on_ = alloc("tcm_on", "denoise", "tcm_scale", ph, pw);
    tcm_off_ = alloc("tcm_off", "denoise", "tcm_scale", ph, pw);
    timestep_ = alloc("timestep", "denoise", "timestep", ph, pw);
    coeffs_ = alloc("step_coeffs", "denoise", "step_coeffs", ph, pw);
    shared_norm_ = alloc("shared_norm", "denoise", "shared_norm", ph, pw);
    denoise_norm_ = alloc("denoise_norm", "denoise", "norm_stats", ph, pw);
    decode_norm_ = alloc("decode_norm", "decode", "norm_stats", ph, pw);
    slot_h_ = ph;
    slot_w_ = pw;
    upload_zeros(zero_guidance_, "denoise", "guidance", ph, pw);
    upload_zeros(zero_latent_, "denoise", "x0_history", ph, pw);
    upload_zeros(denoise_norm_, "denoise", "norm_stats", ph, pw);
    upload_zeros(decode_norm_, "decode", "norm_stats", ph, pw);
    const float on = 1.0f, off = 0.0f;
    runner_->upload(tcm_on_, &on, sizeof(on));
    runner_->upload(tcm_off_, &off, sizeof(off));
    // untiled, every GroupNorm its own statistics; tiled, the whole frame's (written by the stats graphs)
    runner_->upload(shared_norm_, tiled ? &on : &off, sizeof(float));

    layout_ = layout;
    tiled_ = tiled;
    if (!tiled) return;
    const int th = layout.tile_height, tw = layout.tile_width, channels = manifest_.latent_channels;
    TileBuffers& t = tile_;
    t.z = alloc("tile_z", "denoise", "z", th, tw);
    t.lr = alloc("tile_lr", "denoise", "lr", th, tw);
    t.noise = alloc("tile_noise", "denoise", "noise", th, tw);
    t.history = alloc("tile_history", "denoise", "x0_history", th, tw);
    t.guidance = alloc("tile_guidance", "denoise", "guidance", th, tw);
    t.zero_guidance = alloc("tile_zero_guidance", "denoise", "guidance", th, tw);
    t.zero_history = alloc("tile_zero_history", "denoise", "x0_history", th, tw);
    t.z_out = alloc("tile_z_out", "denoise", "z_prev", th, tw);
    t.x0_out = alloc("tile_x0", "denoise", "x0", th, tw);
    t.latent_in = alloc("tile_latent_in", "guide_decode", "x0", th, tw);
    t.pixels = alloc("tile_pixels", "guide_decode", "image", th, tw);
    t.latent_acc = alloc("tile_latent_acc", "blend", "acc", th, tw, channels);
    t.latent_sum = alloc("tile_latent_sum", "blend", "out", th, tw, channels);
    t.pixel_acc = alloc("tile_pixel_acc", "blend", "acc", 4 * th, 4 * tw, 3);
    t.pixel_sum = alloc("tile_pixel_sum", "blend", "out", 4 * th, 4 * tw, 3);
    // one weight tile per scale bound to the blend (one context per binding, not per tile); each tile's own weight is copied in
    t.weight = alloc("tile_blend_weight", "blend", "weight", th, tw, 1);
    t.pixel_weight = alloc("tile_blend_pixel_weight", "blend", "weight", 4 * th, 4 * tw, 1);
    upload_zeros(t.zero_guidance, "denoise", "guidance", th, tw);
    upload_zeros(t.zero_history, "denoise", "x0_history", th, tw);
    const std::vector<std::vector<float>> weights = layout.weights(1), pixel_weights = layout.weights(4);
    for (size_t i = 0; i < layout.tiles.size(); ++i) {
        const std::string n = std::to_string(i);
        t.weights.push_back(alloc("tile_weight" + n, "blend", "weight", th, tw, 1));
        runner_->upload(t.weights.back(), weights[i].data(), weights[i].size() * sizeof(float));
        t.pixel_weights.push_back(alloc("tile_pixel_weight" + n, "blend", "weight", 4 * th, 4 * tw, 1));
        runner_->upload(t.pixel_weights.back(), pixel_weights[i].data(), pixel_weights[i].size() * sizeof(float));
    }
}

void Upscaler::cut(BufferHandle whole, BufferHandle part, const Tile& region) {
    runner_->copy_region(whole, part, region.top, region.left, 0, 0, region.height, region.width);
}

void Upscaler::blend_into(BufferHandle whole, BufferHandle tile, BufferHandle acc, BufferHandle total, BufferHandle weight, const Tile& region) {
    // whole[region] += tile * weight, by the blend graph (a buffer cannot be its own input and output)
    runner_->copy_region(whole, acc, region.top, region.left, 0, 0, region.height, region.width);
    runner_->run("blend", {{"acc", acc}, {"tile", tile}, {"weight", weight}}, {{"out", total}});
    runner_->copy_region(total, whole, 0, 0, region.top, region.left, region.height, region.width);
}

namespace {

Tile scaled(const Tile& t, int scale) { return Tile{t.top * scale, t.left * scale, t.height * scale, t.width * scale}; }

}  // namespace

void Upscaler::frame_step(const SlotSet& s, const SlotSet& previous, bool uses_tcm, bool history) {
    Runner& r = *runner_;
    const BufferHandle tcm = uses_tcm ? tcm_on_ : tcm_off_;
    auto denoise = [&](BufferHandle z, BufferHandle lr, BufferHandle guidance, BufferHandle noise, BufferHandle x0_history,
                       BufferHandle z_out, BufferHandle x0, BufferHandle stats, BufferHandle shared) {
        r.run("denoise",
              {{"z", z}, {"lr", lr}, {"guidance", guidance}, {"tcm_scale", tcm}, {"timestep", timestep_}, {"step_coeffs", coeffs_},
               {"noise", noise}, {"x0_history", x0_history}, {"norm_stats", stats}, {"shared_norm", shared}},
              {{"z_prev", z_out}, {"x0", x0}});
    };
    if (!tiled_) {
        if (uses_tcm) {
            r.run("guide_decode", {{"x0", previous.x0}, {"norm_stats", decode_norm_}, {"shared_norm", shared_norm_}}, {{"image", image_}});
            r.run("warp", {{"image", image_}, {"flow", s.flow}}, {{"guidance", s.guidance}});
        }
        denoise(s.z_in, s.lr, uses_tcm ? s.guidance : zero_guidance_, s.noise, history ? s.x0_history : zero_latent_, s.z_out, s.x0,
                denoise_norm_, shared_norm_);
        return;
    }
    const TileBuffers& t = tile_;
    if (uses_tcm) {
        r.run("decode_stats", {{"latent", previous.x0}}, {{"norm_stats", decode_norm_}});
        r.zero(image_);
        for (size_t i = 0; i < layout_.tiles.size(); ++i) {
            cut(previous.x0, t.latent_in, layout_.tiles[i]);
            r.run("guide_decode", {{"x0", t.latent_in}, {"norm_stats", decode_norm_}, {"shared_norm", shared_norm_}}, {{"image", t.pixels}});
            r.copy_region(t.pixel_weights[i], t.pixel_weight, 0, 0, 0, 0, 4 * layout_.tile_height, 4 * layout_.tile_width);
            blend_into(image_, t.pixels, t.pixel_acc, t.pixel_sum, t.pixel_weight, scaled(layout_.tiles[i], 4));
        }
        r.run("warp", {{"image", image_}, {"flow", s.flow}}, {{"guidance", s.guidance}});
    }
    r.run("denoise_stats",
          {{"z", s.z_in}, {"lr", s.lr}, {"guidance", uses_tcm ? s.guidance : zero_guidance_}, {"tcm_scale", tcm}, {"timestep", timestep_}},
          {{"norm_stats", denoise_norm_}});
    r.zero(s.z_out);
    r.zero(s.x0);
    for (size_t i = 0; i < layout_.tiles.size(); ++i) {
        const Tile& tile = layout_.tiles[i];
        cut(s.z_in, t.z, tile);
        cut(s.lr, t.lr, tile);
        cut(s.noise, t.noise, tile);
        if (history) cut(s.x0_history, t.history, tile);
        if (uses_tcm) cut(s.guidance, t.guidance, scaled(tile, 4));
        denoise(t.z, t.lr, uses_tcm ? t.guidance : t.zero_guidance, t.noise, history ? t.history : t.zero_history, t.z_out, t.x0_out,
                denoise_norm_, shared_norm_);
        r.copy_region(t.weights[i], t.weight, 0, 0, 0, 0, layout_.tile_height, layout_.tile_width);
        blend_into(s.z_out, t.z_out, t.latent_acc, t.latent_sum, t.weight, tile);
        blend_into(s.x0, t.x0_out, t.latent_acc, t.latent_sum, t.weight, tile);
    }
}

void Upscaler::decode(const SlotSet& s) {
    if (!tiled_) {
        runner_->run("decode", {{"z", s.z_in}, {"norm_stats", decode_norm_}, {"shared_norm", shared_norm_}}, {{"rgb", s.rgb}});
        return;
    }
    const TileBuffers& t = tile_;
    runner_->run("decode_stats", {{"latent", s.z_in}}, {{"norm_stats", decode_norm_}});
    runner_->zero(s.rgb);
    for (size_t i = 0; i < layout_.tiles.size(); ++i) {
        cut(s.z_in, t.latent_in, layout_.tiles[i]);
        runner_->run("decode", {{"z", t.latent_in}, {"norm_stats", decode_norm_}, {"shared_norm", shared_norm_}}, {{"rgb", t.pixels}});
        runner_->copy_region(t.pixel_weights[i], t.pixel_weight, 0, 0, 0, 0, 4 * layout_.tile_height, 4 * layout_.tile_width);
        blend_into(s.rgb, t.pixels, t.pixel_acc, t.pixel_sum, t.pixel_weight, scaled(layout_.tiles[i], 4));
    }
}

}  // namespace svsr
