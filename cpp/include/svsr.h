/* svsr.h: C ABI of the svsr C++ host (StableVSR 4x video super-resolution from a build folder).
 *
 * A build folder is what `svsr-export` writes: manifest.json (schema_version 3) + the ten ONNX graphs
 * (flow, flow_x2, flow_x1, denoise, denoise_stats, guide_decode, decode_stats, warp, decode, blend) and,
 * optionally, TensorRT plans recorded in manifest["engines"]. The library replays StableVSR's sampling schedule (bidirectional sweeps, the
 * DDPM, DDIM or DPM-Solver++ 2M step coefficients, philox noise) and
 * drives a *runner* that executes the graphs: the built-in TensorRT runner (when the library was
 * built with TensorRT) or one you supply as C callbacks.
 *
 * Conventions: every function returns an svsr_status (SVSR_OK = 0); on failure a one-sentence
 * message is available from svsr_last_error(upscaler) (or svsr_last_error(NULL) for svsr_open
 * failures and calls without an upscaler: a thread-local message). An upscaler is not thread-safe:
 * use one per thread.
 */
#ifndef SVSR_H
#define SVSR_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(SVSR_BUILDING_LIBRARY)
#    define SVSR_API __declspec(dllexport)
#  else
#    define SVSR_API
#  endif
#else
#  define SVSR_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* 2 added copy_region and zero; 3: manifest schema 3 (the runner's `run` also gets flow_x2, flow_x1,
 * denoise_stats and decode_stats, and norm_stats / shared_norm inputs) and svsr_set_flow_scale, the
 * table itself unchanged. Tables of versions 1 and 2 are still accepted. */
#define SVSR_ABI_VERSION 3

typedef enum svsr_status {
    SVSR_OK = 0,
    SVSR_ERROR_INVALID_ARGUMENT = 1, /* a NULL pointer, a bad count or size, a bad option */
    SVSR_ERROR_MANIFEST = 2,         /* the build folder or its manifest.json cannot be used */
    SVSR_ERROR_INPUT = 3,            /* the frames cannot be processed (too small, ...) */
    SVSR_ERROR_UNSUPPORTED = 4,      /* the manifest asks for something this host cannot run */
    SVSR_ERROR_RUNNER = 5,           /* the runner (callbacks or TensorRT/CUDA) reported a failure */
    SVSR_ERROR_OUT_OF_MEMORY = 6,
    SVSR_ERROR_CANCELLED = 7,        /* the progress callback asked to stop */
    SVSR_ERROR_INTERNAL = 8
} svsr_status;

typedef struct svsr_upscaler svsr_upscaler;

/* A runner's buffer handle: any non-zero value the runner chooses (a pointer, an index, ...). */
typedef uint64_t svsr_buffer;

typedef enum svsr_dtype { SVSR_FLOAT32 = 0 } svsr_dtype;

/* A runner supplied as C callbacks. Each callback returns 0 on success, non-zero on failure (then
 * `last_error`, when set, is asked for a message). All calls come from the thread that called
 * svsr_upscale_*, in order; together they behave like one in-order stream:
 *   allocate   a zero-filled buffer of `shape` (ndim dims) and `dtype`; write its handle to *out.
 *   upload     copy `bytes` bytes of host memory into the buffer; `host` may be reused as soon as
 *              upload returns.
 *   download   copy the buffer into `host` (`bytes` bytes); `host` must hold the data once the
 *              next `synchronize` returns (a synchronous runner copies at once).
 *   run        run graph `graph` (one flow graph of "flow", "flow_x2", "flow_x1" by the flow scale;
 *              "denoise", "guide_decode", "warp", "decode"; "blend", "denoise_stats" and
 *              "decode_stats" only for tiled clips) reading the named input buffers and writing the
 *              named output buffers (names as in the manifest). The same (graph, buffers)
 *              combinations recur for the whole clip: a runner may bind once.
 *   synchronize  wait for every queued upload, run and download.
 *   free       release a buffer (called by svsr_close, or when a clip of another size needs new
 *              buffers); may be NULL.
 *   last_error a message for the last failure; may be NULL.
 *   destroy    called once by svsr_close after the last free; may be NULL.
 *   copy_region  (version 2; tiles only, may be NULL) copy the rows x cols window of the last two dims,
 *              every leading index alike: source[..., sy:sy+rows, sx:sx+cols] -> target[..., ty:ty+rows,
 *              tx:tx+cols]; queued like a run (a buffer move, no arithmetic).
 *   zero       (version 2; tiles only, may be NULL) fill the buffer with zeros, queued like a run.
 * The library allocates a fixed set of buffers per frame size (two slot sets for double
 * buffering), so device memory does not depend on the number of frames. */
typedef struct svsr_runner_callbacks {
    uint32_t abi_version; /* SVSR_ABI_VERSION */
    void* user;
    int (*allocate)(void* user, const char* label, const int64_t* shape, int ndim, svsr_dtype dtype, svsr_buffer* out);
    int (*upload)(void* user, svsr_buffer buffer, const void* host, size_t bytes);
    int (*download)(void* user, svsr_buffer buffer, void* host, size_t bytes);
    int (*run)(void* user, const char* graph,
               const char* const* input_names, const svsr_buffer* inputs, int num_inputs,
               const char* const* output_names, const svsr_buffer* outputs, int num_outputs);
    int (*synchronize)(void* user);
    void (*free)(void* user, svsr_buffer buffer);
    const char* (*last_error)(void* user);
    void (*destroy)(void* user);
    /* abi_version 2: */
    int (*copy_region)(void* user, svsr_buffer source, svsr_buffer target, int64_t source_y, int64_t source_x,
                       int64_t target_y, int64_t target_x, int64_t rows, int64_t cols);
    int (*zero)(void* user, svsr_buffer buffer);
} svsr_runner_callbacks;

/* Options of svsr_open_ex (zero-initialise, then set struct_size = sizeof(svsr_open_options)). */
typedef struct svsr_open_options {
    uint32_t struct_size;
    const char* precision; /* TensorRT engines: "auto" (NULL; fp16 > bf16 > fp32 per graph), "fp32", "fp16", "bf16" */
    int cuda_graphs;       /* TensorRT: capture each execution context into a CUDA graph: 1 (default) or 0 */
    int device;            /* TensorRT: CUDA device ordinal (default 0) */
    int skip_file_checks;  /* 1: do not check that graph/plan files exist and match their sha256 */
    /* TensorRT: the lean runtime library (libnvinfer_lean.so.N) of the TensorRT version that built
     * plans recorded as "lean" (svsr-export --lean: version-compatible, lean runtime left out); needed
     * only where that version differs from this one. NULL: such plans load with this TensorRT. */
    const char* lean_runtime;
} svsr_open_options;

/* Opens a build folder. runner == NULL: the built-in TensorRT runner (SVSR_ERROR_UNSUPPORTED when the
 * library was built without TensorRT). The callback table is copied; its `user` must outlive the
 * upscaler. */
SVSR_API svsr_status svsr_open(const char* build_dir, const svsr_runner_callbacks* runner, svsr_upscaler** out);
SVSR_API svsr_status svsr_open_ex(const char* build_dir, const svsr_runner_callbacks* runner,
                                  const svsr_open_options* options, svsr_upscaler** out);

/* Progress: called after every frame-step (phase "denoise"), flow ("flow") and decoded frame
 * ("decode"); return non-zero to cancel (the call then fails with SVSR_ERROR_CANCELLED). */
typedef int (*svsr_progress_fn)(void* user, const char* phase, int done, int total);
SVSR_API svsr_status svsr_set_progress(svsr_upscaler* upscaler, svsr_progress_fn fn, void* user);

/* The schedule of later clips: "ddpm" (NULL; the paper's, the default), "ddim" or "dpmpp-2m"
 * (DPM-Solver++ 2M: one x0 history per frame, kept in the clip store); eta: DDIM's noise in [0, 1]
 * (0: deterministic; ignored by the others). SVSR_ERROR_INVALID_ARGUMENT for another name or eta. */
SVSR_API svsr_status svsr_set_scheduler(svsr_upscaler* upscaler, const char* scheduler, double eta);

/* Tiles of later clips (svsr/contract/tiles.py rules), in LR pixels of the padded frame: tile_height x
 * tile_width (sides >= 32, multiples of 4) blended over `overlap` pixels (0 <= overlap < half the
 * smaller side; 16 is the default of svsr). 0 x 0: whole frames (the default, the paper's exact path;
 * a tile covering the frame is the same). The denoise, guide_decode and final decode graphs then run
 * per tile, blended by the blend graph, each tile normalising with the whole frame's GroupNorm
 * statistics (denoise_stats / decode_stats once per frame-step); the runner needs copy_region and zero
 * (SVSR_ERROR_UNSUPPORTED at the first tiled clip otherwise). The built-in TensorRT runner on engines
 * built for one tile (svsr-export --tile HxW) runs that tile only: another is SVSR_ERROR_INPUT at the
 * clip, with one sentence naming the build's tile. */
SVSR_API svsr_status svsr_set_tiles(svsr_upscaler* upscaler, int tile_height, int tile_width, int overlap);

/* RAFT's input scale of later clips (ABI 3): 4 (the default, the original: RAFT on the bicubic x4
 * frames), 2 or 1 (RAFT on x2 frames or the LR frames themselves, the flow upsampled bilinearly to the
 * 4x grid: less memory, coarser flow; graphs flow_x2 / flow_x1). SVSR_ERROR_INVALID_ARGUMENT for another
 * scale; a clip whose padded frames are too small for RAFT at that scale (sides under 32 / 64 / 128 at
 * 4 / 2 / 1) is SVSR_ERROR_INPUT with one sentence naming the largest scale that fits. */
SVSR_API svsr_status svsr_set_flow_scale(svsr_upscaler* upscaler, int scale);

/* Upscales one clip 4x. frames: n x h x w x 3 RGB uint8 (C order); steps: scheduler steps (e.g. 50);
 * seed: philox noise seed (docs/noise.md). Output: n x 4h x 4w x 3, float32 in [0, 1] or uint8
 * (round to nearest: uint8(clip(x, 0, 1) * 255 + 0.5)). Sides must be >= the manifest's min_side (32);
 * sides that are not multiples of 4 are edge-padded and the output is cropped back. */
SVSR_API svsr_status svsr_upscale_f32(svsr_upscaler* upscaler, const uint8_t* frames, int n, int h, int w,
                                      int steps, uint64_t seed, float* out);
SVSR_API svsr_status svsr_upscale_u8(svsr_upscaler* upscaler, const uint8_t* frames, int n, int h, int w,
                                     int steps, uint64_t seed, uint8_t* out);

/* A clip of any length, streamed: `read` fills `frame` (h x w x 3 uint8) with frame `index` and returns
 * 1, or returns 0 after the last frame (anything else fails the call with SVSR_ERROR_INPUT); every
 * frame is read first (StableVSR sweeps the whole clip), into the clip store (svsr_set_host_memory).
 * `write` receives output frame `index` (4h x 4w x 3 uint8, valid during the call) in order, as soon
 * as it is decoded, and returns 0 (non-zero stops the call with SVSR_ERROR_CANCELLED). */
typedef int (*svsr_read_frame_fn)(void* user, int index, uint8_t* frame);
typedef int (*svsr_write_frame_fn)(void* user, int index, const uint8_t* frame);
SVSR_API svsr_status svsr_upscale_stream_u8(svsr_upscaler* upscaler, int h, int w, int steps, uint64_t seed,
                                            svsr_read_frame_fn read, svsr_write_frame_fn write, void* user);

/* Host memory of later clips: the per-frame clip state (LR input, latest latent, two flows; about
 * 16 MB per frame at 320x180) is kept in RAM up to `budget` bytes (0: half of the memory available,
 * at least 256 MiB) and beyond it in files in `work_dir` (NULL: $TMPDIR, else /tmp), unlinked as
 * soon as they are created. SVSR_ERROR_INVALID_ARGUMENT when work_dir is not a folder. */
SVSR_API svsr_status svsr_set_host_memory(svsr_upscaler* upscaler, uint64_t budget, const char* work_dir);
/* Bytes of clip state the last clip kept in RAM and in files. */
SVSR_API svsr_status svsr_host_memory_used(svsr_upscaler* upscaler, uint64_t* in_ram, uint64_t* in_files);

/* Bytes of runner buffers the upscaler holds now (slot buffers for the last frame size). */
SVSR_API svsr_status svsr_buffer_bytes(svsr_upscaler* upscaler, uint64_t* out);

/* The name of the runner in use: "tensorrt" or "callbacks". */
SVSR_API const char* svsr_runner_name(svsr_upscaler* upscaler);

SVSR_API void svsr_close(svsr_upscaler* upscaler);

/* The message of the last failure on `upscaler`, or of the calling thread's last failure without
 * one (NULL). Never NULL; "" when there was none. Valid until the next call on the same upscaler/thread. */
SVSR_API const char* svsr_last_error(const svsr_upscaler* upscaler);
SVSR_API const char* svsr_status_name(svsr_status status);

/* Philox noise of docs/noise.md: n float32 standard normals for (seed, draw, frame); draw 0 is a
 * frame's initial latent, draw step + 1 the noise of timestep index `step`. */
SVSR_API svsr_status svsr_philox_normal(uint64_t seed, uint32_t draw, uint32_t frame, float* out, uint64_t n);

/* 1 when the library was built with the TensorRT runner, else 0. */
SVSR_API int svsr_has_tensorrt(void);
SVSR_API const char* svsr_version(void);

#ifdef __cplusplus
}
#endif

#endif /* SVSR_H */
