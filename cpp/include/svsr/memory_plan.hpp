// svsr/memory_plan.hpp: the device memory one frame size needs, by the rules of Python's memory plan
// (svsr/runtime/sampling/memory_plan.py, untiled): the slot buffers Sampler.slots allocates (two slot
// sets, the decoded guidance image, the shared constants, the decode double buffer, the GroupNorm
// statistics buffers and shared_norm), each rounded up to the allocation granularity;
// one TensorRT scratch area shared by every execution context; a reserve for the CUDA context, the
// execution contexts and the CUDA graphs of the schedule (estimates, as Python's before measuring).
// cpp/tests/golden/memory_plan.json (written by Python) pins every figure.
#pragma once

#include <cstdint>
#include <string>

#include "svsr/host.hpp"

namespace svsr {

constexpr uint64_t kPlanAlignment = 512;               // memory_plan.ALIGNMENT
constexpr uint64_t kScratchAlignment = 256;            // trt_engines.SCRATCH_ALIGNMENT
constexpr uint64_t kBaseReserve = 128ull << 20;        // memory_plan.BASE_RESERVE
constexpr uint64_t kContextEstimate = 16ull << 20;     // memory_plan.CONTEXT_ESTIMATE
constexpr uint64_t kGraphEstimate = 8ull << 20;        // memory_plan.GRAPH_ESTIMATE
// Python's binding_counts(): distinct graph bindings (one execution context each) and frame-step
// programs (one CUDA graph each) of the schedule; the golden checks them against Python's.
constexpr int kPlanContexts = 11;
constexpr int kPlanPrograms = 3;

struct MemoryPlan {
    int height = 0, width = 0;  // padded LR size
    uint64_t slot_bytes = 0;
    uint64_t scratch_bytes = 0;
    bool scratch_known = false;  // from the engine records; false where the folder has none
    uint64_t base_reserve_bytes = kBaseReserve;
    int contexts = kPlanContexts;
    uint64_t per_context_bytes = kContextEstimate;
    int programs = kPlanPrograms;  // 0 without CUDA graphs
    uint64_t per_program_bytes = kGraphEstimate;

    uint64_t reserve_bytes() const { return base_reserve_bytes + uint64_t(contexts) * per_context_bytes + uint64_t(programs) * per_program_bytes; }
    uint64_t total_bytes() const { return slot_bytes + scratch_bytes + reserve_bytes(); }
};

// Bytes of every slot buffer for padded LR frames of padded_height x padded_width, each aligned.
uint64_t plan_slot_bytes(const Manifest& manifest, int padded_height, int padded_width);
// The TensorRT scratch the engines of `precision` (auto: per graph the first of fp16, bf16, fp32
// with a record) that whole frames run need (the flow graph of `flow_scale`, denoise, guide_decode,
// warp, decode): the largest device_memory_bytes of their records, aligned; false when one of those
// graphs has no record of that precision.
bool plan_scratch_bytes(const Manifest& manifest, const std::string& precision, uint64_t* scratch_bytes, int flow_scale = 4);
MemoryPlan plan_memory(const Manifest& manifest, int padded_height, int padded_width, const std::string& precision, bool cuda_graphs,
                       int flow_scale = 4);

// "0.59 GiB of device memory at 640x360 (slot buffers 0.30 GiB, TensorRT scratch 0.01 GiB, reserve 0.29 GiB)"
std::string describe_plan(const MemoryPlan& plan, int width, int height);
// Free memory of CUDA device `device` (cudaMemGetInfo); false without a TensorRT/CUDA build or a GPU.
bool device_free_bytes(int device, uint64_t* free_bytes);

}  // namespace svsr
