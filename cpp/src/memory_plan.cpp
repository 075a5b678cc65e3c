// The device memory plan of one frame size (svsr/memory_plan.hpp), mirroring svsr/runtime/sampling/memory_plan.py.
#include "svsr/memory_plan.hpp"

#include <algorithm>
#include <cstdio>

#ifdef SVSR_HAVE_TENSORRT
#include <cuda_runtime_api.h>
#endif

namespace svsr {
namespace {

uint64_t aligned(uint64_t nbytes, uint64_t alignment) { return (nbytes + alignment - 1) / alignment * alignment; }

uint64_t dtype_bytes(const std::string& dtype) {
    if (dtype == "float32" || dtype == "int32") return 4;
    if (dtype == "float16" || dtype == "bfloat16") return 2;
    if (dtype == "int64" || dtype == "float64") return 8;
    if (dtype == "uint8" || dtype == "bool") return 1;
    throw Error(Status::unsupported, "a graph tensor has the unknown dtype '" + dtype + "'; re-run svsr-export --force.");
}

bool is_latent(const std::string& tensor) {
    return tensor == "z" || tensor == "noise" || tensor == "x0_history" || tensor == "z_prev" || tensor == "x0";
}

// Sampler.slots (svsr/runtime/sampling/frame_step.py allocate_slots, untiled), in its order: (graph, tensor) of every buffer
struct SlotBuffer {
    const char* graph;
    const char* tensor;
};
const SlotBuffer kSlotSet[] = {{"denoise", "z"},     {"denoise", "lr"},         {"flow", "previous"},    {"flow", "flow"},
                               {"denoise", "noise"}, {"denoise", "x0_history"}, {"denoise", "guidance"}, {"denoise", "z_prev"},
                               {"denoise", "x0"}};
const SlotBuffer kShared[] = {{"guide_decode", "image"}, {"denoise", "guidance"},  {"denoise", "x0_history"},
                              {"denoise", "tcm_scale"},  {"denoise", "tcm_scale"}, {"denoise", "timestep"},
                              {"denoise", "step_coeffs"}, {"decode", "z"},          {"decode", "z"},
                              {"decode", "rgb"},          {"decode", "rgb"},        {"denoise", "shared_norm"},
                              {"denoise", "norm_stats"},  {"decode", "norm_stats"}};

std::string gib(uint64_t bytes) {
    char text[32];
    std::snprintf(text, sizeof(text), "%.2f GiB", double(bytes) / double(1ull << 30));
    return text;
}

}  // namespace

uint64_t plan_slot_bytes(const Manifest& m, int ph, int pw) {
    auto bytes = [&](const SlotBuffer& b) {
        const TensorDesc& t = m.tensor(b.graph, b.tensor);
        std::vector<int64_t> shape = resolve_shape(t, 1, ph, pw);
        if (is_latent(b.tensor) && shape.size() >= 2) shape[1] = m.latent_channels;  // as sampler.tensor_shape
        return aligned(uint64_t(element_count(shape)) * dtype_bytes(t.dtype), kPlanAlignment);
    };
    uint64_t total = 0;
    for (int set = 0; set < 2; ++set)
        for (const SlotBuffer& b : kSlotSet) total += bytes(b);
    for (const SlotBuffer& b : kShared) total += bytes(b);
    return total;
}

bool plan_scratch_bytes(const Manifest& m, const std::string& precision, uint64_t* scratch_bytes, int flow_scale) {
    uint64_t need = 0;
    // the graphs whole frames run (frame_step.graphs_used untiled): the flow graph of the scale, no blend, no stats graph
    for (const char* graph : {flow_graph(flow_scale), "denoise", "guide_decode", "warp", "decode"}) {
        const EngineRecord* record = nullptr;
        for (const char* candidate : {"fp16", "bf16", "fp32"}) {
            const std::string p = float32_only_graph(graph) ? "fp32" : precision == "auto" ? candidate : precision;
            auto it = m.engines.find(std::string(graph) + "." + p);
            if (it != m.engines.end()) {
                record = &it->second;
                break;
            }
            if (precision != "auto" || float32_only_graph(graph)) break;
        }
        if (!record) return false;
        need = std::max(need, uint64_t(std::max<int64_t>(record->device_memory_bytes, 0)));
    }
    *scratch_bytes = aligned(need, kScratchAlignment);
    return true;
}

MemoryPlan plan_memory(const Manifest& m, int ph, int pw, const std::string& precision, bool cuda_graphs, int flow_scale) {
    MemoryPlan plan;
    plan.height = ph;
    plan.width = pw;
    plan.slot_bytes = plan_slot_bytes(m, ph, pw);
    plan.scratch_known = plan_scratch_bytes(m, precision, &plan.scratch_bytes, flow_scale);
    if (!cuda_graphs) plan.programs = 0;
    return plan;
}

std::string describe_plan(const MemoryPlan& plan, int width, int height) {
    std::string text = (plan.scratch_known ? "" : "at least ") + gib(plan.total_bytes()) + " of device memory at " + std::to_string(width) + "x" +
                       std::to_string(height) + " (slot buffers " + gib(plan.slot_bytes) + ", TensorRT scratch ";
    text += plan.scratch_known ? gib(plan.scratch_bytes) : std::string("unknown until the engines are built");
    return text + ", reserve " + gib(plan.reserve_bytes()) + ")";
}

bool device_free_bytes(int device, uint64_t* free_bytes) {
#ifdef SVSR_HAVE_TENSORRT
    size_t free = 0, total = 0;
    if (cudaSetDevice(device) != cudaSuccess || cudaMemGetInfo(&free, &total) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    *free_bytes = free;
    return true;
#else
    (void)device;
    (void)free_bytes;
    return false;
#endif
}

}  // namespace svsr
