// svsr/host.hpp: the C++ API of the svsr host library (svsr_host).
//
// Everything a host needs to run StableVSR from a build folder's manifest.json, mirroring the
// Python contracts in svsr/contract/: the manifest (manifest.py), the step coefficients
// (scheduler.py, float32 exactly as numpy computes them), the sweep order (sweeps.py), the philox
// noise (noise.py, docs/noise.md), padding and pixel conversions (sizes.py, frames.py), and the
// schedule itself (svsr/runtime/sampling/sampler.py) over an abstract Runner.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace svsr {

// ---------------------------------------------------------------------------------------------
// errors: one sentence naming the problem and the fix; the status maps onto svsr_status (svsr.h)
enum class Status : int {
    ok = 0,
    invalid_argument = 1,
    manifest = 2,
    input = 3,
    unsupported = 4,
    runner = 5,
    out_of_memory = 6,
    cancelled = 7,
    internal = 8,
};

class Error : public std::runtime_error {
public:
    Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    Status status() const noexcept { return status_; }

private:
    Status status_;
};

// ---------------------------------------------------------------------------------------------
// scheduler (svsr/contract/scheduler.py). The denoise graph applies, with c = step_coeffs:
//   x0     = clamp(c[0] * z + c[1] * model_output, -c[5], c[5])
//   z_prev = c[2] * x0 + c[3] * z + c[4] * noise + c[6] * model_output + c[7] * x0_history
// (x0_history: the same frame's x0 of the previous step; zeros for the single-step schedulers).
constexpr int kNumStepCoeffs = 8;  // x0_from_sample, x0_from_output, prev_from_x0, prev_from_sample, noise_std, x0_clip,
                                   // prev_from_output, prev_from_history
constexpr float kNoClip = 3.0e38f;
// the schedules one denoise graph runs: "ddpm" (the paper's), "ddim", "dpmpp-2m" (DPM-Solver++ 2M)
extern const char* const kSchedulers[3];
constexpr const char* kDefaultScheduler = "ddpm";

struct SchedulerConfig {
    int64_t num_train_timesteps = 1000;
    std::string prediction_type = "epsilon";  // epsilon | v_prediction | sample
    std::string variance_type = "fixed_small";  // fixed_small | fixed_small_log | fixed_large
    std::string timestep_spacing = "leading";  // leading | linspace | trailing
    int64_t steps_offset = 0;
    bool clip_sample = false;
    double clip_sample_range = 1.0;
    bool thresholding = false;
    // the manifest's whole scheduler config as JSON text: ddim and dpmpp-2m read it as diffusers'
    // from_config does (their own defaults for keys it leaves out); "" = the fields above only
    std::string config_json;
};

struct Step {
    int index = 0;
    int64_t timestep = 0;
    std::array<float, kNumStepCoeffs> coeffs{};
    bool has_noise = false;  // the step draws fresh noise (DDPM at t > 0, DDIM with eta > 0)
    // the step's update reads the frame's previous x0 (prev_from_history is not zero)
    bool reads_history() const { return coeffs[7] != 0.0f; }
};

// Which schedule and its DDIM eta (ignored by the others).
struct Schedule {
    std::string scheduler = kDefaultScheduler;
    double eta = 0.0;
};

// Throws Error(unsupported) for options the denoise graph cannot run.
void check_scheduler_config(const SchedulerConfig& config);
// Throws Error(invalid_argument), one sentence, for an unknown scheduler or an eta outside [0, 1].
void check_schedule(const Schedule& schedule);
// The step count a scheduler runs when none is given (50 for ddpm, the paper's).
int default_steps(const std::string& scheduler);
// Whether `scheduler` keeps one x0 history per frame (the clip store's two history planes).
bool needs_history(const std::string& scheduler);
// The scheduler's timesteps for a step count (descending), exactly as numpy computes them.
std::vector<int64_t> timesteps(const SchedulerConfig& config, int num_inference_steps);
// `scheduler`'s timesteps (descending) as its diffusers class's set_timesteps makes them.
std::vector<int64_t> scheduler_timesteps(const SchedulerConfig& config, int num_inference_steps, const std::string& scheduler);
// Every step's timestep and denoise coefficients (float32, bit-identical to numpy).
std::vector<Step> step_coefficients(const SchedulerConfig& config, const std::vector<float>& alphas_cumprod,
                                    int num_inference_steps, const Schedule& schedule = Schedule());

// ---------------------------------------------------------------------------------------------
// sweeps (svsr/contract/sweeps.py)
struct FrameCall {
    int step = 0;        // index into the scheduler's timesteps
    int position = 0;    // j, position within the sweep
    int frame = 0;       // k, frame index in the clip
    bool forward = true; // sweep direction: forward on even steps
    int flow_index = -1; // j - 1 into fwd (forward) / bwd (backward) flows; -1 for the first frame
    bool uses_tcm() const { return flow_index >= 0; }
};

bool sweep_forward(int step);
std::vector<int> sweep_order(int num_frames, int step);
std::vector<FrameCall> frame_calls(int num_frames, int num_steps);

// ---------------------------------------------------------------------------------------------
// tiles in the latent plane (svsr/contract/tiles.py): where they sit and their blend weights. Tiles
// of one layout share one shape; the last tile of a row or column is shifted back inside the frame;
// each tile's window rises as a raised cosine over `overlap` pixels on the sides it shares with a
// neighbour (flat on the frame's border), normalised so that the windows sum to one everywhere.
constexpr int kMinTile = 32;        // LR pixels per side
constexpr int kTileMultiple = 4;    // tile sides are multiples of the padding multiple
constexpr int kDefaultOverlap = 16; // LR pixels shared by neighbouring tiles

struct Tile {
    int top = 0, left = 0, height = 0, width = 0;  // LR (= latent) pixels of the padded frame
};

struct TileLayout {
    int frame_height = 0, frame_width = 0, tile_height = 0, tile_width = 0, overlap = 0;
    std::vector<Tile> tiles;
    // one tile covering the frame: the untiled path
    bool single() const { return tiles.size() == 1; }
    // per tile, its (tile_height * scale) x (tile_width * scale) float32 blend weights (row-major);
    // over the frame they sum to one. scale 1: latents; 4: decoded pixels (overlap scaled with them).
    std::vector<std::vector<float>> weights(int scale = 1) const;
};

// Starts of the tiles along one axis of `length`: stride tile - overlap, the last shifted inside.
std::vector<int> tile_starts(int length, int tile, int overlap);
// The layout of tile_height x tile_width tiles over a padded LR frame; tile_height == 0: one tile (untiled).
TileLayout plan_tiles(int frame_height, int frame_width, int tile_height, int tile_width, int overlap = kDefaultOverlap);
// Error(invalid_argument), one sentence, for a tile below kMinTile or off the multiple, or an overlap
// below 0 or at least half the tile's smaller side (tiles.parse_tile / overlap_problem).
void check_tile(int tile_height, int tile_width, int overlap);

// ---------------------------------------------------------------------------------------------
// flow scale (svsr/contract/sizes.py, graphs.py): RAFT on the bicubic x4 frames (the original), on x2
// frames or on the LR frames themselves, the flow upsampled (bilinear) and scaled to the 4x grid
constexpr int kFlowScales[3] = {4, 2, 1};
constexpr int kDefaultFlowScale = 4;
constexpr int kRaftMinSide = 128;  // RAFT's 4-level correlation pyramid needs >= 16 px feature maps (1/8 of its input)
// The flow graph that runs RAFT at `scale`: flow (4), flow_x2, flow_x1; Error(invalid_argument) for another scale.
const char* flow_graph(int scale);
// The smallest padded LR side RAFT accepts at `scale` (32 at x4, 64 at x2, 128 at x1).
int flow_scale_min_side(int scale);
// sizes.flow_scale_problem: one sentence when padded LR frames of height x width are too small for RAFT
// at `scale`, naming the largest scale that fits; "" when they fit.
std::string flow_scale_problem(int scale, int height, int width, const std::string& option = "--flow-scale");

// ---------------------------------------------------------------------------------------------
// philox noise (svsr/contract/noise.py, docs/noise.md)
using PhiloxCounter = std::array<uint32_t, 4>;
PhiloxCounter philox4x32_10(PhiloxCounter counter, uint32_t key0, uint32_t key1);
// n float32 standard normals of (seed, draw, frame): draw 0 = initial latent, step + 1 = step noise.
void philox_normal(uint64_t seed, uint32_t draw, uint32_t frame, float* out, uint64_t n);

// ---------------------------------------------------------------------------------------------
// frames (svsr/contract/sizes.py, frames.py, runtime/sampling/sampler.py, runtime/jobs/job.py)
struct PaddingPlan {
    int height = 0, width = 0;                // input LR size
    int padded_height = 0, padded_width = 0;  // multiple of pad_multiple
    int scale = 4;
    int out_height() const { return height * scale; }
    int out_width() const { return width * scale; }
};

// Throws Error(input) when a side is below min_side.
PaddingPlan padding_plan(int height, int width, int min_side = 32, int pad_multiple = 4, int scale = 4);
// uint8 HxWx3 RGB -> (1,3,H',W') float32 (x / 255 * 2 - 1), edge-padded bottom/right.
void to_model_input(const uint8_t* frame, const PaddingPlan& plan, float* out);
// (1,3,4H',4W') float32 -> cropped 4Hx4Wx3 (HWC) float32 / uint8 (uint8(clip(x,0,1)*255+0.5)).
void rgb_to_hwc(const float* rgb, const PaddingPlan& plan, float* out);
void rgb_to_hwc_u8(const float* rgb, const PaddingPlan& plan, uint8_t* out);
uint8_t to_uint8(float x);

// ---------------------------------------------------------------------------------------------
// manifest (svsr/contract/manifest.py)
struct Dim {
    int64_t value = -1;  // fixed size, or -1 for a symbolic dim
    std::string symbol;  // batch, height, width, height4, width4, channels (denoise_stats / decode_stats resolve to integers)
};

struct TensorDesc {
    std::string name;
    std::string dtype;
    std::vector<Dim> shape;
};

struct GraphEntry {
    std::string name, file, sha256;
    std::vector<TensorDesc> inputs, outputs;
};

struct EngineRecord {
    std::string key;  // "<graph>.<precision>"
    std::string graph, precision, file, sha256;
    std::string tensorrt_version, gpu_name, compute_capability;
    int64_t device_memory_bytes = 0;
    std::string profile_summary;  // e.g. "LR 32x32 .. 640x360" (WxH)
    std::string profile_args;     // the svsr-export options of that profile: "--resolution WxH" or "--min .. --opt .. --max .." (+ " --tile HxW")
    std::string profile_frame_args;  // the same without the tile
    bool version_compatible = false;  // built with kVERSION_COMPATIBLE (svsr-export --lean)
    bool lean = false;                // ... and kEXCLUDE_LEAN_RUNTIME: no lean runtime inside the plan
    int tile_height = 0, tile_width = 0;  // svsr-export --tile HxW: the tiled graphs' static tile (LR pixels); 0: none
};

// One stats graph's block of manifest["norm_stats"]: the length of its GroupNorm statistics vector
// (per GroupNorm in call order, G means then G variances) and the stride it subsamples the whole frame by.
struct NormStats {
    int64_t size = 0;
    int stride = 1;
};

struct Manifest {
    std::string build_dir;
    std::string path;  // build_dir/manifest.json
    int schema_version = 3;
    std::string checkpoint_source;
    std::map<std::string, GraphEntry> graphs;
    SchedulerConfig scheduler;
    std::vector<float> alphas_cumprod;  // float32, as numpy reads them
    float init_noise_sigma = 1.0f;
    int latent_channels = 4;
    int min_side = 32, pad_multiple = 4, scale = 4;
    NormStats denoise_stats, decode_stats;  // manifest["norm_stats"]
    std::map<std::string, EngineRecord> engines;

    // the svsr-export command that rebuilds this folder's engines (for messages)
    std::string rebuild_command(const std::string& precision_flags = "") const;
    // a graph's input or output as declared in the manifest (Error(manifest) when absent)
    const TensorDesc& tensor(const std::string& graph, const std::string& name) const;
};

// svsr-export --tile HxW (engine records' "tile"): the tile the engines of the tiled graphs (denoise,
// guide_decode, decode) were built static at, for `precision` (auto: per graph the first of fp16, bf16,
// fp32 with a record, as the TensorRT runner chooses); {0, 0} when they serve whole frames (no tile recorded).
std::array<int, 2> engine_tile(const Manifest& manifest, const std::string& precision = "auto");
// One sentence when engines built for a tile cannot run what is asked: tiles of another size, or whole
// frames (tile 0 x 0) of a padded size other than the build's tile; "" when they can (or no tile is recorded).
std::string engine_tile_problem(const Manifest& manifest, const std::string& precision, int tile_height, int tile_width, int padded_height,
                                int padded_width);

// A tensor's concrete shape for one LR size (padded) or tile: batch, height, width, height4 = 4h,
// width4 = 4w, channels (the blend graph's: latent or pixel channels).
std::vector<int64_t> resolve_shape(const TensorDesc& tensor, int batch, int height, int width, int channels = 4);
int64_t element_count(const std::vector<int64_t>& shape);

// 1: flow, denoise (6 step coefficients), guide, decode. 2: guide split into guide_decode + warp, blend
// added, denoise with x0_history and 8 step coefficients (tiles, DDIM, DPM-Solver++). 3: flow_x2 / flow_x1
// (flow scales), denoise_stats / decode_stats and the norm_stats + shared_norm inputs of denoise,
// guide_decode and decode (GroupNorm statistics shared across tiles).
constexpr int kSchemaVersion = 3;
constexpr int kNumGraphs = 10;
// flow, flow_x2, flow_x1, denoise, denoise_stats, guide_decode, decode_stats, warp, decode, blend
extern const char* const kGraphNames[kNumGraphs];
// graphs that always run in float32 (pixel coordinates, tile sums): their engines are fp32 only
bool float32_only_graph(const std::string& graph);
// graphs that run only when a frame is tiled (the whole frame's GroupNorm statistics for the tiled graphs)
bool stats_graph(const std::string& graph);
// the three flow graphs (one per flow scale)
bool flow_graph_name(const std::string& graph);
// The numeric bounds of svsr/contract/manifest.py: a manifest comes from elsewhere, so a count of 10^12 or
// a NaN is one sentence naming the field, not a huge allocation or a silent NaN video later.
constexpr int64_t kMaxSide = 16384;             // LR pixels per side
constexpr int64_t kMaxDim = int64_t(1) << 20;   // any fixed tensor dimension
constexpr int64_t kMaxBytes = int64_t(1) << 50; // file sizes, device memory
constexpr double kMaxFlops = 1e21;              // per call at the trace size
constexpr int64_t kMaxTrainTimesteps = 100000;
constexpr size_t kMaxFileName = 4096;

// Loads and validates build_dir/manifest.json (Error(manifest) / Error(unsupported) with a sentence).
Manifest load_manifest(const std::string& build_dir);
Manifest parse_manifest(const std::string& json_text, const std::string& build_dir, const std::string& where);
// Throws Error(manifest) when a graph's file is missing or (check_sha) its sha256 differs.
void check_graph_files(const Manifest& manifest, bool check_sha);
std::string sha256_file(const std::string& path);
std::string sha256_hex(const void* data, size_t size);

// ---------------------------------------------------------------------------------------------
// the runner: executes graphs on buffers (device memory for TensorRT)
using BufferHandle = uint64_t;  // 0 = none

struct Binding {
    const char* name;
    BufferHandle buffer;
};

class Runner {
public:
    virtual ~Runner() = default;
    virtual const char* name() const = 0;
    // A zero-filled float32 buffer of `shape`.
    virtual BufferHandle allocate(const std::string& label, const std::vector<int64_t>& shape) = 0;
    virtual void free(BufferHandle buffer) = 0;
    // Copies host memory into the buffer; `host` may be reused once upload returns.
    virtual void upload(BufferHandle buffer, const void* host, size_t bytes) = 0;
    // Copies the buffer into `host`; the data is there once the next synchronize() returns.
    virtual void download(BufferHandle buffer, void* host, size_t bytes) = 0;
    virtual void run(const std::string& graph, const std::vector<Binding>& inputs, const std::vector<Binding>& outputs) = 0;
    virtual void synchronize() = 0;
    // Tiles only (queued like a graph run; a buffer move, no arithmetic): copies the (rows, cols)
    // window of the last two dims, every leading index alike, source[..., sy:sy+rows, sx:sx+cols] ->
    // target[..., ty:ty+rows, tx:tx+cols]. Runners without it run whole frames only.
    virtual void copy_region(BufferHandle source, BufferHandle target, int64_t source_y, int64_t source_x, int64_t target_y,
                             int64_t target_x, int64_t rows, int64_t cols);
    // Tiles only: fills the buffer with zeros (a whole-frame sum before its tiles are added).
    virtual void zero(BufferHandle buffer);
    // One sentence when this runner cannot run tiles of tile_height x tile_width (0 x 0: whole frames) on
    // padded frames of padded_height x padded_width, e.g. engines built static at another tile
    // (engine_tile_problem); "" when it can (the default: graphs over any shape).
    virtual std::string tile_problem(int tile_height, int tile_width, int padded_height, int padded_width) const;
    // One sentence when this runner cannot run `graph` (e.g. no engine was built for it); "" when it can.
    virtual std::string graph_problem(const std::string& graph) const;
};

// ---------------------------------------------------------------------------------------------
// host memory (svsr/runtime/sampling/clip_store.py): the per-frame clip state (LR input, latest latent,
// forward and backward flows) is kept in RAM up to a budget, and beyond it in files of a work folder.
struct HostMemoryOptions {
    uint64_t budget = 0;   // bytes of RAM for the clip state; 0 = default_host_memory()
    std::string work_dir;  // folder of the spill files; "" = $TMPDIR, else /tmp
};
struct HostMemoryUse {
    uint64_t in_ram = 0, in_files = 0;  // bytes of clip state of the last clip
};
// Half of the memory available now (MemAvailable), at least 256 MiB.
uint64_t default_host_memory();
// "512M", "8G", "1.5G", "65536" (bytes) -> bytes; Error(invalid_argument) naming `option` otherwise.
uint64_t parse_memory_size(const std::string& text, const std::string& option = "--host-memory");

// ---------------------------------------------------------------------------------------------
// the schedule (svsr/runtime/sampling/sampler.py), slot design:
//   host clip store: lr, latest z, forward/backward flows of every frame, and for dpmpp-2m two x0
//   history planes by step parity (RAM up to a budget, then files);
//   runner: two slot sets {z_in, lr, lr_prev, flow, noise, guidance, z_out, x0, x0_history, rgb} +
//   shared {image, zero_guidance, zero_latent, tcm_on, tcm_off, timestep, step_coeffs, shared_norm,
//   denoise_norm, decode_norm} (+ tile buffers when tiled), allocated
//   once per frame size, so runner memory does not depend on the number of frames. Call c of a
//   sweep uses set c % 2 (its guide_decode reads x0 from the other set), so a runner can upload
//   call c+1 while call c computes.
using ProgressFn = std::function<bool(const char* phase, int done, int total)>;  // false = cancel
// Frame `index` of the clip (h x w x 3 uint8, valid until the next call), or nullptr after the last one.
using FrameSource = std::function<const uint8_t*(int index)>;
// Output frame `index` (4h x 4w x 3 uint8), in order, as soon as it is decoded.
using FrameSink = std::function<void(int index, const uint8_t* frame)>;

class Upscaler {
public:
    Upscaler(Manifest manifest, std::unique_ptr<Runner> runner);
    ~Upscaler();
    Upscaler(const Upscaler&) = delete;
    Upscaler& operator=(const Upscaler&) = delete;

    const Manifest& manifest() const { return manifest_; }
    Runner& runner() { return *runner_; }
    void set_progress(ProgressFn fn) { progress_ = std::move(fn); }

    // Clip state beyond options.budget goes to files in options.work_dir (for every later clip).
    void set_host_memory(HostMemoryOptions options) { host_memory_ = std::move(options); }
    const HostMemoryOptions& host_memory() const { return host_memory_; }
    HostMemoryUse host_memory_use() const { return host_memory_use_; }

    // Tiles of every later clip, in LR pixels of the padded frame (svsr/contract/tiles.py rules):
    // tile_height x tile_width blended over `overlap` pixels; 0 x 0 = whole frames (the default, the
    // paper's exact path; a tile covering the frame is the same). Needs a runner with copy_region and
    // zero. Error(invalid_argument) for a tile below 32, off the multiple of 4, or overlap >= half a tile.
    void set_tiles(int tile_height, int tile_width, int overlap = kDefaultOverlap);

    // The schedule of every later clip (Error(invalid_argument) for an unknown one or eta outside [0, 1]).
    void set_schedule(Schedule schedule);
    const Schedule& schedule() const { return schedule_; }

    // RAFT's input scale of every later clip: 4 (the original's bicubic x4, the default), 2 or 1 (graphs
    // flow_x2 / flow_x1: less memory, coarser flow); Error(invalid_argument) for another. Clips whose
    // padded frames are too small for it are refused with sizes.flow_scale_problem's sentence.
    void set_flow_scale(int scale);
    int flow_scale() const { return flow_scale_; }

    // frames: n x h x w x 3 uint8; out_f32 or out_u8 (one may be null): n x 4h x 4w x 3.
    void upscale(const uint8_t* frames, int n, int h, int w, int steps, uint64_t seed, float* out_f32, uint8_t* out_u8);
    // The same for a clip of unknown length: reads every frame from `source` (into the clip store),
    // then hands each output frame to `sink` as soon as it is decoded.
    void upscale_stream(int h, int w, int steps, uint64_t seed, const FrameSource& source, const FrameSink& sink);

    // Checks a clip before any work (Error(input)/Error(invalid_argument)).
    PaddingPlan check_clip(int n, int h, int w, int steps) const;
    // bytes of runner buffers held now
    uint64_t buffer_bytes() const { return slot_bytes_; }

private:
    struct SlotSet {
        BufferHandle z_in = 0, lr = 0, lr_prev = 0, flow = 0, noise = 0, guidance = 0, z_out = 0, x0 = 0, x0_history = 0, rgb = 0;
    };
    // tile-shaped buffers every tile passes through, and each tile's blend weights (frame_step.py TileBuffers)
    struct TileBuffers {
        BufferHandle z = 0, lr = 0, noise = 0, history = 0, guidance = 0, zero_guidance = 0, zero_history = 0, z_out = 0, x0_out = 0,
                     latent_in = 0, pixels = 0, latent_acc = 0, latent_sum = 0, pixel_acc = 0, pixel_sum = 0;
        BufferHandle weight = 0, pixel_weight = 0;  // what every blend reads: a tile's weight is copied in first
        std::vector<BufferHandle> weights, pixel_weights;
    };
    using EmitFn = std::function<void(int index, const float* rgb)>;  // rgb: (1, 3, 4H', 4W') of the padded frame
    void frame_step(const SlotSet& s, const SlotSet& previous, bool uses_tcm, bool history);
    void decode(const SlotSet& s);
    void cut(BufferHandle whole, BufferHandle part, const Tile& region);
    void blend_into(BufferHandle whole, BufferHandle tile, BufferHandle acc, BufferHandle total, BufferHandle weight, const Tile& region);
    void run_clip(const PaddingPlan& plan, int num_steps, uint64_t seed, const FrameSource& source, const EmitFn& emit);
    void ensure_slots(int ph, int pw, const TileLayout& layout);
    void release_slots();
    bool report(const char* phase, int done, int total);

    Manifest manifest_;
    std::unique_ptr<Runner> runner_;
    ProgressFn progress_;
    SlotSet sets_[2];
    BufferHandle image_ = 0, zero_guidance_ = 0, zero_latent_ = 0, tcm_on_ = 0, tcm_off_ = 0, timestep_ = 0, coeffs_ = 0;
    // GroupNorm statistics (frame_step.py DeviceSlots): shared_norm 0 untiled (every GroupNorm its own statistics;
    // the statistics buffers hold zeros nothing writes), 1 tiled (the tiles take the whole frame's, which
    // denoise_stats / decode_stats write into denoise_norm_ / decode_norm_ once per frame-step)
    BufferHandle shared_norm_ = 0, denoise_norm_ = 0, decode_norm_ = 0;
    Schedule schedule_;
    int flow_scale_ = kDefaultFlowScale;
    int tile_h_ = 0, tile_w_ = 0, tile_overlap_ = kDefaultOverlap;  // asked for (0: whole frames)
    TileLayout layout_;                                             // of the slots held now
    bool tiled_ = false;                                            // layout_ has more than one tile
    TileBuffers tile_;
    int slot_h_ = 0, slot_w_ = 0;
    uint64_t slot_bytes_ = 0;
    std::vector<BufferHandle> owned_;
    HostMemoryOptions host_memory_;
    HostMemoryUse host_memory_use_;
};

}  // namespace svsr
