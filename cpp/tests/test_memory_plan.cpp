// The device memory plan (svsr/memory_plan.hpp) against Python's (golden/memory_plan.json, written by
// make_golden.py from svsr/runtime/sampling/memory_plan.py): every figure byte for byte.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "check.hpp"
#include "svsr.h"
#include "svsr/memory_plan.hpp"

using json = nlohmann::json;

int main(int argc, char** argv) {
    if (argc != 2 && argc != 3) {
        std::fprintf(stderr, "usage: test_memory_plan memory_plan.json [path/to/svsr-host]\n");
        return 2;
    }
    const json golden = json::parse(check::read_file(argv[1]));
    const svsr::Manifest m = svsr::parse_manifest(golden.at("manifest").dump(), "/golden-build", "memory_plan.json");
    int compared = 0;
    for (const json& want : golden.at("plans")) {
        const int w = want.at("width").get<int>(), h = want.at("height").get<int>();
        const std::string size = std::to_string(w) + "x" + std::to_string(h) + " " + want.at("precision").get<std::string>();
        const svsr::PaddingPlan pad = svsr::padding_plan(h, w, m.min_side, m.pad_multiple, m.scale);
        CHECK_MSG(pad.padded_width == want.at("padded_width").get<int>() && pad.padded_height == want.at("padded_height").get<int>(), size);
        const svsr::MemoryPlan plan = svsr::plan_memory(m, pad.padded_height, pad.padded_width, want.at("precision").get<std::string>(),
                                                        want.at("cuda_graphs").get<bool>(), want.at("flow_scale").get<int>());
        CHECK_MSG(plan.scratch_known, size);
        CHECK_MSG(plan.slot_bytes == want.at("slot_bytes").get<uint64_t>(), size + ": slot bytes " + std::to_string(plan.slot_bytes));
        CHECK_MSG(plan.scratch_bytes == want.at("scratch_bytes").get<uint64_t>(), size + ": scratch " + std::to_string(plan.scratch_bytes));
        CHECK_MSG(plan.contexts == want.at("contexts").get<int>(), size + ": contexts " + std::to_string(plan.contexts));
        CHECK_MSG(plan.programs == want.at("programs").get<int>(), size + ": programs " + std::to_string(plan.programs));
        CHECK_MSG(plan.reserve_bytes() == want.at("reserve_bytes").get<uint64_t>(), size + ": reserve " + std::to_string(plan.reserve_bytes()));
        CHECK_MSG(plan.total_bytes() == want.at("total_bytes").get<uint64_t>(), size + ": total " + std::to_string(plan.total_bytes()));
        ++compared;
    }
    CHECK(compared >= 2);

    // the sentence names the size and each part
    const svsr::MemoryPlan plan = svsr::plan_memory(m, 360, 640, "auto", true);
    const std::string text = svsr::describe_plan(plan, 640, 360);
    CHECK_MSG(text == "1.36 GiB of device memory at 640x360 (slot buffers 0.36 GiB, TensorRT scratch 0.68 GiB, reserve 0.32 GiB)", text);

    // without engine records (an ONNX-only folder) the scratch is unknown and the figure a lower bound
    svsr::Manifest bare = m;
    bare.engines.clear();
    const svsr::MemoryPlan lower = svsr::plan_memory(bare, 360, 640, "auto", true);
    CHECK(!lower.scratch_known && lower.scratch_bytes == 0 && lower.total_bytes() == plan.total_bytes() - plan.scratch_bytes);
    CHECK_MSG(svsr::describe_plan(lower, 640, 360).rfind("at least 0.68 GiB", 0) == 0, svsr::describe_plan(lower, 640, 360));
    // a fixed precision without records of it: unknown too
    CHECK(!svsr::plan_memory(m, 360, 640, "bf16", true).scratch_known);
    // the flow graph of the flow scale decides: flow_x1 has no fp16 record, so auto takes its fp32 one; none at all: unknown
    svsr::Manifest no_x1 = m;
    no_x1.engines.erase("flow_x1.fp32");
    CHECK(svsr::plan_memory(m, 360, 640, "auto", true, 1).scratch_known && !svsr::plan_memory(no_x1, 360, 640, "auto", true, 1).scratch_known);
    CHECK(svsr::plan_memory(no_x1, 360, 640, "auto", true, 4).scratch_known);

    // svsr-host --dry-run names the size and the figure; built without TensorRT, it cannot tell whether
    // that fits (a TensorRT build loads the engines first, and the golden manifest's plan files are not there)
    if (argc == 3 && !svsr_has_tensorrt()) {
        char folder[] = "/tmp/svsr-memory-plan-XXXXXX";
        CHECK(::mkdtemp(folder) != nullptr);
        const std::string manifest_path = std::string(folder) + "/manifest.json";
        check::write_file(manifest_path, golden.at("manifest").dump());
        const std::string command = std::string(argv[2]) + " --model " + folder + " --size 640x360 --steps 3 --dry-run 2>&1";
        std::string output;
        int status = -1;
        if (FILE* pipe = ::popen(command.c_str(), "r")) {
            char buffer[512];
            while (std::fgets(buffer, sizeof(buffer), pipe)) output += buffer;
            status = ::pclose(pipe);
        }
        CHECK_MSG(status != -1 && WEXITSTATUS(status) == 0, command + ": " + output);
        CHECK_MSG(output.find("needs " + text + "; cannot tell whether that fits without a GPU.") != std::string::npos, output);
        std::remove(manifest_path.c_str());
        ::rmdir(folder);
    }
    std::printf("memory plan golden: %d sizes compared\n", compared);
    return check::finish("test_memory_plan");
}
