// svsr-host: raw RGB24 frames on stdin -> 4x raw RGB24 frames on stdout, through the C ABI.
//
//   ffmpeg -i in.mp4 -f rawvideo -pix_fmt rgb24 - |
//     svsr-host --model build/ --size 320x180 --steps 50 --seed 0 |
//     ffmpeg -f rawvideo -pix_fmt rgb24 -s 1280x720 -r 25 -i - out.mp4
//
// StableVSR is defined on a whole clip (bidirectional sweeps), so the program reads every frame
// first (into the clip store: RAM up to --host-memory, then files in --work-dir, so host memory is
// bounded at any clip length), upscales the clip, and writes each output frame as soon as it is
// decoded. Progress and errors go to stderr. --dry-run checks the arguments and the build folder
// (and, where built with TensorRT, loads the engines) without reading stdin, and reports the device
// memory the frame size needs (svsr/memory_plan.hpp) and, with a GPU, whether it fits; that is also
// all a build without TensorRT can do.
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "svsr.h"
#include "svsr/host.hpp"
#include "svsr/memory_plan.hpp"

namespace {

const char* kUsage =
    "usage: svsr-host --model DIR --size WxH [--scheduler ddpm|ddim|dpmpp-2m] [--eta 0] [--steps N] [--seed 0]\n"
    "                 [--precision auto|fp32|fp16|bf16] [--tile off|auto|HxW] [--tile-overlap 16] [--flow-scale 4|2|1]\n"
    "                 [--host-memory SIZE] [--work-dir DIR] [--lean-runtime PATH]\n"
    "                 [--no-cuda-graphs] [--device N] [--max-frames N] [--quiet] [--dry-run]\n"
    "Reads raw RGB24 frames of WxH from stdin until EOF, upscales the clip 4x with StableVSR and writes\n"
    "raw RGB24 frames of 4Wx4H to stdout. --dry-run validates the arguments and the build folder only.\n"
    "--host-memory (e.g. 512M, 8G; default half of the available memory) bounds the clip state kept in\n"
    "RAM; the rest goes to files in --work-dir (default $TMPDIR or /tmp). --scheduler: ddpm (default, the\n"
    "paper's), ddim or dpmpp-2m (DPM-Solver++ 2M); --steps defaults to the scheduler's count (50 for ddpm);\n"
    "--eta: DDIM's noise from 0 (default, deterministic) to 1. --tile HxW (LR pixels, sides >= 32 and\n"
    "multiples of 4) runs the denoise and VAE decodes per tile, blended over --tile-overlap pixels; off\n"
    "(default) runs whole frames; auto takes the tile the engines were built for (svsr-export --tile), else\n"
    "whole frames. --flow-scale: RAFT on the bicubic x4 frames (4, default, the original), on x2 frames (2)\n"
    "or on the LR frames (1), the flow upsampled to 4x: less memory, coarser flow.\n";

struct Args {
    std::string model;
    int width = 0, height = 0;
    int steps = 0;  // 0: the scheduler's default count
    std::string scheduler = svsr::kDefaultScheduler;
    int tile_height = 0, tile_width = 0;  // 0: whole frames
    bool tile_auto = false;               // --tile auto: the engines' tile (svsr-export --tile), else whole frames
    int tile_overlap = svsr::kDefaultOverlap;
    int flow_scale = svsr::kDefaultFlowScale;
    double eta = 0.0;
    uint64_t seed = 0;
    std::string precision = "auto";
    uint64_t host_memory = 0;  // 0: the library's default
    std::string work_dir, lean_runtime;
    bool cuda_graphs = true;
    int device = 0;
    long max_frames = 0;
    bool quiet = false;
    bool dry_run = false;
};

[[noreturn]] void usage_error(const std::string& message) {
    std::fprintf(stderr, "svsr-host: %s\n%s", message.c_str(), kUsage);
    std::exit(2);
}

long long parse_int(const std::string& flag, const char* text, long long lo, long long hi) {
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(text, &end, 10);
    if (errno || !end || *end || end == text || v < lo || v > hi)
        usage_error(flag + " needs an integer in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got '" + text + "'");
    return v;
}

Args parse(int argc, char** argv) {
    Args a;
    bool have_size = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) usage_error(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "-h" || arg == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else if (arg == "--model") {
            a.model = value();
        } else if (arg == "--size") {
            const std::string s = value();
            const size_t x = s.find('x');
            if (x == std::string::npos) usage_error("--size needs WIDTHxHEIGHT, got '" + s + "'");
            a.width = int(parse_int("--size width", s.substr(0, x).c_str(), 1, 1 << 16));
            a.height = int(parse_int("--size height", s.substr(x + 1).c_str(), 1, 1 << 16));
            have_size = true;
        } else if (arg == "--steps") {
            a.steps = int(parse_int(arg, value(), 1, 100000));
        } else if (arg == "--scheduler") {
            a.scheduler = value();
            bool known = false;
            for (const char* name : svsr::kSchedulers) known = known || a.scheduler == name;
            if (!known) usage_error("--scheduler must be ddpm, ddim or dpmpp-2m, got '" + a.scheduler + "'");
        } else if (arg == "--eta") {
            const char* text = value();
            char* end = nullptr;
            errno = 0;
            a.eta = std::strtod(text, &end);
            if (errno || !end || *end || end == text || !(a.eta >= 0.0 && a.eta <= 1.0))
                usage_error(std::string("--eta needs a number from 0 to 1, got '") + text + "'");
        } else if (arg == "--tile") {
            const std::string t = value();
            a.tile_auto = t == "auto";
            if (t == "off" || t == "auto") {
                a.tile_height = a.tile_width = 0;
            } else {
                const size_t x = t.find_first_of("xX");
                if (x == std::string::npos) usage_error("--tile needs off, auto or HxW in LR pixels such as 128x128, got '" + t + "'");
                a.tile_height = int(parse_int("--tile height", t.substr(0, x).c_str(), 1, 1 << 16));
                a.tile_width = int(parse_int("--tile width", t.substr(x + 1).c_str(), 1, 1 << 16));
            }
        } else if (arg == "--flow-scale") {
            const std::string text = value();
            if (text != "4" && text != "2" && text != "1")
                usage_error("--flow-scale " + text + " is not a flow scale; use 4 (the original), 2 or 1");
            a.flow_scale = std::atoi(text.c_str());
        } else if (arg == "--tile-overlap") {
            a.tile_overlap = int(parse_int(arg, value(), 0, 1 << 16));
        } else if (arg == "--seed") {
            const char* text = value();
            char* end = nullptr;
            errno = 0;
            a.seed = std::strtoull(text, &end, 10);
            if (errno || !end || *end || end == text || text[0] == '-') usage_error("--seed needs an integer in [0, 2^64)");
        } else if (arg == "--precision") {
            a.precision = value();
            if (a.precision != "auto" && a.precision != "fp32" && a.precision != "fp16" && a.precision != "bf16")
                usage_error("--precision must be auto, fp32, fp16 or bf16");
        } else if (arg == "--host-memory") {
            try {
                a.host_memory = svsr::parse_memory_size(value(), arg);
            } catch (const svsr::Error& e) {
                usage_error(e.what());
            }
        } else if (arg == "--work-dir") {
            a.work_dir = value();
        } else if (arg == "--lean-runtime") {
            a.lean_runtime = value();
        } else if (arg == "--no-cuda-graphs") {
            a.cuda_graphs = false;
        } else if (arg == "--device") {
            a.device = int(parse_int(arg, value(), 0, 1024));
        } else if (arg == "--max-frames") {
            a.max_frames = long(parse_int(arg, value(), 1, 1L << 30));
        } else if (arg == "--quiet" || arg == "-q") {
            a.quiet = true;
        } else if (arg == "--dry-run") {
            a.dry_run = true;
        } else {
            usage_error("unknown argument '" + arg + "'");
        }
    }
    if (a.model.empty()) usage_error("--model DIR is required");
    if (a.steps == 0) a.steps = svsr::default_steps(a.scheduler);
    if (a.tile_height > 0) {
        try {
            svsr::check_tile(a.tile_height, a.tile_width, a.tile_overlap);
        } catch (const svsr::Error& e) {
            usage_error(e.what());
        }
    }
    if (!have_size) usage_error("--size WxH is required (the size of the raw frames on stdin)");
    struct stat st;
    if (!a.work_dir.empty() && (::stat(a.work_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)))
        usage_error("--work-dir " + a.work_dir + " is not a folder; create it or choose another one");
    return a;
}

struct ProgressState {
    bool quiet;
    std::chrono::steady_clock::time_point start;
    std::string last_phase;
    bool mid_line = false;
};

// stdin and stdout of a streamed clip (svsr_upscale_stream_u8's callbacks)
struct Stream {
    const Args& args;
    size_t frame_bytes;
    std::string error;  // set by a callback that fails
};

int read_frame(void* user, int index, uint8_t* frame) {
    auto* io = static_cast<Stream*>(user);
    if (io->args.max_frames && index >= io->args.max_frames) return 0;
    const size_t got = std::fread(frame, 1, io->frame_bytes, stdin);
    if (got == io->frame_bytes) {
        if (index == 0 && !io->args.quiet)
            std::fprintf(stderr, "svsr-host: reading %dx%d frames -> %dx%d, %d steps, seed %llu\n", io->args.width, io->args.height,
                         4 * io->args.width, 4 * io->args.height, io->args.steps, static_cast<unsigned long long>(io->args.seed));
        if (index == 0 && !io->args.quiet && io->args.scheduler != svsr::kDefaultScheduler)
            std::fprintf(stderr, "svsr-host: scheduler %s (eta %g)\n", io->args.scheduler.c_str(), io->args.eta);
        return 1;
    }
    if (got == 0 && !std::ferror(stdin)) {
        if (index > 0) return 0;
        io->error = "no frames on stdin.";
    } else if (std::ferror(stdin)) {
        io->error = std::string("could not read stdin: ") + std::strerror(errno);
    } else {
        io->error = "stdin ended inside frame " + std::to_string(index) + " (" + std::to_string(got) + " of " + std::to_string(io->frame_bytes) +
                    " bytes); is --size " + std::to_string(io->args.width) + "x" + std::to_string(io->args.height) + " the size of the frames?";
    }
    return -1;
}

int write_frame(void* user, int, const uint8_t* frame) {
    auto* io = static_cast<Stream*>(user);
    const size_t bytes = io->frame_bytes * 16;
    if (std::fwrite(frame, 1, bytes, stdout) == bytes && std::fflush(stdout) == 0) return 0;
    io->error = std::string("could not write the frames to stdout: ") + std::strerror(errno);
    return 1;
}

int on_progress(void* user, const char* phase, int done, int total) {
    auto* p = static_cast<ProgressState*>(user);
    if (p->quiet) return 0;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - p->start).count();
    std::fprintf(stderr, "\rsvsr-host: %-7s %d/%d  %.1f s", phase, done, total, s);
    p->mid_line = done != total;
    if (done == total) std::fputc('\n', stderr);
    std::fflush(stderr);
    return 0;
}

// "6 tiles of 128x128 LR pixels (height x width), overlap 16" or "whole frames (one tile of 92x180 ...)"
std::string describe_layout(const svsr::TileLayout& layout) {
    const std::string shape = std::to_string(layout.tile_height) + "x" + std::to_string(layout.tile_width);
    if (layout.single()) return "whole frames (one tile of " + shape + " LR pixels, height x width)";
    return std::to_string(layout.tiles.size()) + " tiles of " + shape + " LR pixels (height x width), overlap " + std::to_string(layout.overlap);
}

}  // namespace

int main(int argc, char** argv) {
    Args a = parse(argc, argv);

    // validate the build folder, the sizes, the tiles and the flow scale before reading any frame
    svsr::MemoryPlan plan;
    svsr::TileLayout layout;
    std::string tile_choice;  // what --tile auto chose, and why
    try {
        const svsr::Manifest m = svsr::load_manifest(a.model);
        const svsr::PaddingPlan padding = svsr::padding_plan(a.height, a.width, m.min_side, m.pad_multiple, m.scale);
        svsr::Schedule schedule;
        schedule.scheduler = a.scheduler;
        schedule.eta = a.eta;
        svsr::step_coefficients(m.scheduler, m.alphas_cumprod, a.steps, schedule);
        if (a.tile_auto) {
            // no tile memory plan here (Python's --tile auto has one): the engines' tile where they record one, else whole frames
            const std::array<int, 2> built = svsr::engine_tile(m, a.precision);
            a.tile_height = built[0];
            a.tile_width = built[1];
            tile_choice = built[0] ? "--tile auto: the engines were built for " + std::to_string(built[0]) + "x" + std::to_string(built[1]) +
                                         " tiles (svsr-export --tile), so it runs those"
                                   : std::string("--tile auto: whole frames (the engines record no tile, and this svsr-host has no tile memory "
                                                 "plan to choose one; give --tile HxW for tiles)");
            if (built[0]) svsr::check_tile(a.tile_height, a.tile_width, a.tile_overlap);
        }
        const std::string tiles = svsr::engine_tile_problem(m, a.precision, a.tile_height, a.tile_width, padding.padded_height, padding.padded_width);
        if (!tiles.empty()) throw svsr::Error(svsr::Status::input, tiles);
        const std::string flow = svsr::flow_scale_problem(a.flow_scale, padding.padded_height, padding.padded_width);
        if (!flow.empty()) throw svsr::Error(svsr::Status::input, flow);
        layout = svsr::plan_tiles(padding.padded_height, padding.padded_width, a.tile_height, a.tile_width, a.tile_overlap);
        plan = svsr::plan_memory(m, padding.padded_height, padding.padded_width, a.precision, a.cuda_graphs, a.flow_scale);
    } catch (const svsr::Error& e) {
        std::fprintf(stderr, "svsr-host: %s\n", e.what());
        return 2;
    }
    if (!tile_choice.empty() && !a.quiet) std::fprintf(stderr, "svsr-host: %s.\n", tile_choice.c_str());
    // what --dry-run reports: the tile layout and the flow graph of the run
    const std::string what_runs = describe_layout(layout) + "; flow graph " + svsr::flow_graph(a.flow_scale) + " (RAFT at x" +
                                  std::to_string(a.flow_scale) + ")";
    // the memory plan is the whole-frame one (tiles need less; the C++ host has no tile memory plan yet)
    const std::string need = std::string(!layout.single() ? "would need for whole frames " : "needs ") + svsr::describe_plan(plan, a.width, a.height);
    if (!svsr_has_tensorrt()) {
        if (a.dry_run) {
            std::fprintf(stderr, "svsr-host: %s is a valid build folder for %dx%d frames and %d steps; it %s; cannot tell whether that fits without a GPU.\n"
                                 "svsr-host: it would run %s.\n"
                                 "svsr-host: this svsr-host was built without TensorRT, so it cannot upscale (rebuild with TensorRT, see cpp/README.md).\n",
                         a.model.c_str(), a.width, a.height, a.steps, need.c_str(), what_runs.c_str());
            return 0;
        }
        std::fprintf(stderr, "svsr-host: this svsr-host was built without TensorRT, so it has no runner to upscale with; "
                             "rebuild it with -DSVSR_WITH_TENSORRT=ON (see cpp/README.md), or use --dry-run to check a build folder.\n");
        return 2;
    }

    svsr_open_options options{};
    options.struct_size = sizeof(options);
    options.precision = a.precision.c_str();
    options.cuda_graphs = a.cuda_graphs ? 1 : 0;
    options.device = a.device;
    options.lean_runtime = a.lean_runtime.empty() ? nullptr : a.lean_runtime.c_str();
    svsr_upscaler* up = nullptr;
    svsr_status st = svsr_open_ex(a.model.c_str(), nullptr, &options, &up);
    if (st != SVSR_OK) {
        std::fprintf(stderr, "svsr-host: %s\n", svsr_last_error(nullptr));
        return st == SVSR_ERROR_MANIFEST || st == SVSR_ERROR_UNSUPPORTED || st == SVSR_ERROR_INVALID_ARGUMENT ? 2 : 1;
    }
    if (a.dry_run) {
        // the engines are loaded now: what is free is what the slots, scratch and reserve can have
        uint64_t free_bytes = 0;
        const bool known = svsr::device_free_bytes(a.device, &free_bytes);
        char free_text[32];
        std::snprintf(free_text, sizeof(free_text), "%.2f GiB", double(free_bytes) / double(1ull << 30));
        std::fprintf(stderr, "svsr-host: %s loaded with the %s runner for %dx%d frames and %d steps; it would run %s.\n", a.model.c_str(),
                     svsr_runner_name(up), a.width, a.height, a.steps, what_runs.c_str());
        std::fprintf(stderr, "svsr-host: it %s", need.c_str());
        svsr_close(up);
        if (!known) {
            std::fprintf(stderr, "; cannot tell whether that fits (no free-memory figure from device %d).\n", a.device);
            return 0;
        }
        if (plan.total_bytes() > free_bytes) {
            std::fprintf(stderr, "; only %s is free on device %d, so it does not fit: free GPU memory (other processes), or use smaller frames or fp16 engines.\n",
                         free_text, a.device);
            return 2;
        }
        std::fprintf(stderr, "; fits in the %s free on device %d.\n", free_text, a.device);
        return 0;
    }

    // stdin -> the clip store; output frames -> stdout as they are decoded
    if (svsr_set_host_memory(up, a.host_memory, a.work_dir.empty() ? nullptr : a.work_dir.c_str()) != SVSR_OK) {
        std::fprintf(stderr, "svsr-host: %s\n", svsr_last_error(up));
        svsr_close(up);
        return 2;
    }
    if (svsr_set_scheduler(up, a.scheduler.c_str(), a.eta) != SVSR_OK ||
        svsr_set_tiles(up, a.tile_height, a.tile_width, a.tile_overlap) != SVSR_OK || svsr_set_flow_scale(up, a.flow_scale) != SVSR_OK) {
        std::fprintf(stderr, "svsr-host: %s\n", svsr_last_error(up));
        svsr_close(up);
        return 2;
    }
    Stream io{a, size_t(a.width) * a.height * 3, ""};
    ProgressState progress{a.quiet, std::chrono::steady_clock::now(), "", false};
    svsr_set_progress(up, on_progress, &progress);
    st = svsr_upscale_stream_u8(up, a.height, a.width, a.steps, a.seed, read_frame, write_frame, &io);
    if (st != SVSR_OK) {
        const std::string message = io.error.empty() ? svsr_last_error(up) : io.error;
        std::fprintf(stderr, "%ssvsr-host: %s\n", progress.mid_line ? "\n" : "", message.c_str());
        svsr_close(up);
        return st == SVSR_ERROR_INPUT || st == SVSR_ERROR_INVALID_ARGUMENT ? 2 : 1;  // a failed read is an input error
    }
    uint64_t in_ram = 0, in_files = 0;
    if (!a.quiet && svsr_host_memory_used(up, &in_ram, &in_files) == SVSR_OK)
        std::fprintf(stderr, "svsr-host: clip state: %.0f MiB in RAM, %.0f MiB in files\n", double(in_ram) / 1048576.0,
                     double(in_files) / 1048576.0);
    svsr_close(up);
    return 0;
}
