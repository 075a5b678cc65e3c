// manifest.json parsing and the refusals, on fixtures written by this test.
//   test_manifest FIXTURE_DIR
#include <sys/stat.h>
#include <unistd.h>

#include "engine_compat.hpp"
#include "fixtures.hpp"

using fixtures::json;

namespace {

std::string dir;

std::string write_build(const std::string& name, const std::string& text) {
    const std::string d = dir + "/" + name;
    ::mkdir(d.c_str(), 0755);
    check::write_file(d + "/manifest.json", text);
    return d;
}

svsr::Manifest load(const std::string& name, const json& j) { return svsr::load_manifest(write_build(name, j.dump(1))); }

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: test_manifest FIXTURE_DIR\n");
        return 2;
    }
    dir = argv[1];
    ::mkdir(dir.c_str(), 0755);

    // a valid manifest
    {
        json j = fixtures::valid_manifest();
        j["scheduler"]["init_noise_sigma"] = 2.5;
        j["engines"]["denoise.fp16"] = {{"graph", "denoise"}, {"precision", "fp16"}, {"file", "engines/denoise.fp16.plan"},
                                        {"sha256", std::string(64, 'a')}, {"tensorrt_version", "11.4.0.106"}, {"gpu_name", "NVIDIA H100"},
                                        {"compute_capability", "9.0"}, {"device_memory_bytes", 1234},
                                        {"profile", {{"lr_min", {32, 32}}, {"lr_opt", {180, 320}}, {"lr_max", {360, 640}}, {"batch", {1, 1, 1}}}}};
        const svsr::Manifest m = load("valid", j);
        CHECK(m.graphs.size() == 10 && m.schema_version == 3);
        CHECK(m.denoise_stats.size == fixtures::kDenoiseStats && m.denoise_stats.stride == 2);
        CHECK(m.decode_stats.size == fixtures::kDecodeStats && m.decode_stats.stride == 2);
        CHECK(m.alphas_cumprod.size() == 1000);
        CHECK(m.alphas_cumprod[0] == static_cast<float>(j["scheduler"]["alphas_cumprod"][0].get<double>()));
        CHECK(m.init_noise_sigma == 2.5f);
        CHECK(m.scheduler.prediction_type == "v_prediction" && m.scheduler.steps_offset == 1 && m.scheduler.timestep_spacing == "leading");
        CHECK(m.latent_channels == 4 && m.min_side == 32 && m.pad_multiple == 4 && m.scale == 4);
        CHECK(m.engines.size() == 1 && m.engines.at("denoise.fp16").device_memory_bytes == 1234);
        CHECK(m.engines.at("denoise.fp16").profile_summary == "LR 32x32 .. 640x360");
        CHECK(m.checkpoint_source == "/ckpt");
        CHECK(m.rebuild_command("--precision fp16").find("svsr-export --weights /ckpt --precision fp16 --out ") == 0);
        const std::vector<int64_t> shape = svsr::resolve_shape(m.tensor("flow", "flow"), 1, 36, 44);
        CHECK((shape == std::vector<int64_t>{1, 2, 144, 176}));
        CHECK((svsr::resolve_shape(m.tensor("denoise", "step_coeffs"), 1, 36, 44) == std::vector<int64_t>{8}));
        CHECK((svsr::resolve_shape(m.tensor("denoise", "x0_history"), 1, 36, 44) == std::vector<int64_t>{1, 4, 36, 44}));
        CHECK((svsr::resolve_shape(m.tensor("guide_decode", "image"), 1, 36, 44) == std::vector<int64_t>{1, 3, 144, 176}));
        CHECK((svsr::resolve_shape(m.tensor("blend", "acc"), 1, 144, 176, 3) == std::vector<int64_t>{1, 3, 144, 176}));
        CHECK((svsr::resolve_shape(m.tensor("blend", "weight"), 1, 36, 44) == std::vector<int64_t>{1, 1, 36, 44}));
        CHECK(svsr::float32_only_graph("warp") && svsr::float32_only_graph("blend") && !svsr::float32_only_graph("guide_decode"));
        // schema 3: the statistics' lengths (integers in the manifest), shared_norm a scalar
        CHECK((svsr::resolve_shape(m.tensor("denoise", "norm_stats"), 1, 36, 44) == std::vector<int64_t>{1, fixtures::kDenoiseStats}));
        CHECK((svsr::resolve_shape(m.tensor("denoise_stats", "norm_stats"), 1, 36, 44) == std::vector<int64_t>{1, fixtures::kDenoiseStats}));
        CHECK((svsr::resolve_shape(m.tensor("guide_decode", "norm_stats"), 1, 36, 44) == std::vector<int64_t>{1, fixtures::kDecodeStats}));
        CHECK((svsr::resolve_shape(m.tensor("decode", "shared_norm"), 1, 36, 44) == std::vector<int64_t>{1}));
        CHECK((svsr::resolve_shape(m.tensor("decode_stats", "latent"), 1, 36, 44) == std::vector<int64_t>{1, 4, 36, 44}));
        CHECK((svsr::resolve_shape(m.tensor("flow_x1", "flow"), 1, 36, 44) == std::vector<int64_t>{1, 2, 144, 176}));
        CHECK(svsr::stats_graph("denoise_stats") && svsr::stats_graph("decode_stats") && !svsr::stats_graph("denoise"));
        CHECK(std::string(svsr::flow_graph(4)) == "flow" && std::string(svsr::flow_graph(2)) == "flow_x2" && std::string(svsr::flow_graph(1)) == "flow_x1");
        CHECK_THROWS(svsr::flow_graph(3), svsr::Status::invalid_argument, "flow scale 3 is not a flow scale; use 4 (the original), 2 or 1.");
        // symbolic statistics dims (the schema allows them) resolve to the norm_stats sizes
        json sym = j;
        sym["graphs"]["decode"]["inputs"][1]["shape"][1] = "decode_stats";
        CHECK((svsr::resolve_shape(load("symbolic_stats", sym).tensor("decode", "norm_stats"), 1, 8, 8) == std::vector<int64_t>{1, fixtures::kDecodeStats}));
        CHECK_THROWS(m.tensor("decode", "nope"), svsr::Status::manifest, "declares no tensor decode.nope");
    }

    // missing folder, missing manifest, bad JSON
    CHECK_THROWS(svsr::load_manifest(dir + "/does-not-exist"), svsr::Status::manifest, "does not exist");
    {
        const std::string empty = dir + "/empty";
        ::mkdir(empty.c_str(), 0755);
        ::remove((empty + "/manifest.json").c_str());
        CHECK_THROWS(svsr::load_manifest(empty), svsr::Status::manifest, "has no manifest.json; run svsr-export --out");
    }
    CHECK_THROWS(svsr::load_manifest(write_build("badjson", "{\"schema_version\": 3,")), svsr::Status::manifest, "is not valid JSON");

    auto refuse = [&](const char* name, auto mutate, svsr::Status status, const char* needle) {
        json j = fixtures::valid_manifest();
        mutate(j);
        CHECK_THROWS(load(name, j), status, needle);
    };
    // another schema: the sentence of svsr/contract/manifest.py older_schema_problem, naming the re-export
    refuse("schema2", [](json& j) { j["schema_version"] = 2; }, svsr::Status::manifest,
           "/schema2/manifest.json was written by an older svsr (manifest schema 2; this svsr reads schema 3, flow scales and GroupNorm "
           "statistics shared across tiles changed the graphs); re-export it: svsr-export --preset tiny --out ");
    refuse("schema1_source", [](json& j) { j["schema_version"] = 1; j["checkpoint"].erase("preset"); }, svsr::Status::manifest,
           "re-export it: svsr-export --weights /ckpt --out ");
    refuse("schema4", [](json& j) { j["schema_version"] = 4; }, svsr::Status::manifest,
           "was written by a newer svsr (manifest schema 4; this svsr reads schema 3, its graphs may differ); update svsr");
    refuse("schema_text", [](json& j) { j["schema_version"] = "3"; }, svsr::Status::manifest, "at schema_version: 3 was expected");
    // schema 3: the ten graphs, the norm_stats block and the statistics dims that follow it
    refuse("noflow_x1", [](json& j) { j["graphs"].erase("flow_x1"); }, svsr::Status::manifest, "has no flow_x1 graph");
    refuse("nodecode_stats", [](json& j) { j["graphs"].erase("decode_stats"); }, svsr::Status::manifest, "has no decode_stats graph");
    refuse("nonormstats", [](json& j) { j.erase("norm_stats"); }, svsr::Status::manifest, "at (top level): 'norm_stats' is a required property");
    refuse("normstats_size", [](json& j) { j["norm_stats"]["denoise_stats"]["size"] = 1; }, svsr::Status::manifest,
           "at norm_stats/denoise_stats/size: 1 is less than the minimum of 2");
    refuse("normstats_stride", [](json& j) { j["norm_stats"]["decode_stats"]["stride"] = 3; }, svsr::Status::manifest,
           "at norm_stats/decode_stats/stride: 3 is not one of [1, 2, 4, 8]");
    refuse("normstats_extra", [](json& j) { j["norm_stats"]["flow"] = {{"size", 2}, {"stride", 1}}; }, svsr::Status::manifest,
           "at norm_stats: Additional properties are not allowed ('flow' was unexpected)");
    refuse("stats_dim", [](json& j) { j["graphs"]["denoise"]["inputs"][8]["shape"][1] = 7; }, svsr::Status::manifest,
           "denoise.norm_stats holds 7 statistics but norm_stats/denoise_stats/size says 8; re-run svsr-export --force");
    refuse("stats_symbol", [](json& j) { j["graphs"]["guide_decode"]["inputs"][1]["shape"][1] = "denoise_stats"; }, svsr::Status::manifest,
           "guide_decode.norm_stats holds 8 statistics but norm_stats/decode_stats/size says 6");
    refuse("shared_norm", [](json& j) { j["graphs"]["decode"]["inputs"][2]["shape"] = {2}; }, svsr::Status::unsupported,
           "decode.shared_norm does not have the contract's shape");
    refuse("nostatsout", [](json& j) { j["graphs"]["decode_stats"]["outputs"][0]["name"] = "stats"; }, svsr::Status::unsupported,
           "graph decode_stats declares outputs [stats] but this host binds [norm_stats]");

    // issue 21: every number is finite and within the schema's bounds, one sentence naming the field
    auto refuse_text = [&](const char* name, const std::string& from, const std::string& to, const std::string& needle) {
        std::string text = fixtures::valid_manifest().dump();
        const size_t at = text.find(from);
        CHECK_MSG(at != std::string::npos, name);
        text.replace(at, from.size(), to);
        CHECK_THROWS(svsr::load_manifest(write_build(name, text)), svsr::Status::manifest, needle);
    };
    refuse_text("nan_vae", "\"vae_scaling_factor\":0.08333", "\"vae_scaling_factor\":NaN",
                "/nan_vae/manifest.json holds NaN at vae_scaling_factor, and every number in a manifest must be finite; re-run svsr-export --force "
                "for this build folder.");
    refuse_text("inf_sigma", "\"init_noise_sigma\":1.0", "\"init_noise_sigma\":-Infinity", "holds -Infinity at scheduler/init_noise_sigma, and every");
    refuse_text("overflow_acp", "\"alphas_cumprod\":[", "\"alphas_cumprod\":[1e400,", "holds inf at scheduler/alphas_cumprod/0, and every number");
    refuse_text("nan_in_string_ok", "\"method\":\"torch.onnx.export\"", "\"method\":\"NaN Infinity 1e400\",\"x\":-Infinity",
                "holds -Infinity at exporter/x");  // inside a string they are text; only the bare literal is refused
    refuse("max_side", [](json& j) { j["graphs"]["flow"]["flops"]["lr_height"] = 16385; }, svsr::Status::manifest,
           "at graphs/flow/flops/lr_height: 16385 is greater than the maximum of 16384; re-run svsr-export for this build folder.");
    refuse("max_dim", [](json& j) { j["graphs"]["denoise"]["inputs"][0]["shape"][1] = 1 << 21; }, svsr::Status::manifest,
           "at graphs/denoise/inputs/0/shape/1: 2097152 is greater than the maximum of 1048576");
    refuse("zero_dim", [](json& j) { j["graphs"]["denoise"]["inputs"][0]["shape"][1] = 0; }, svsr::Status::manifest,
           "at graphs/denoise/inputs/0/shape/1: 0 is less than the minimum of 1");
    refuse("text_dim", [](json& j) { j["graphs"]["denoise"]["inputs"][0]["shape"][1] = "depth"; }, svsr::Status::manifest,
           "at graphs/denoise/inputs/0/shape/1: 'depth' is not valid under any of the given schemas");
    refuse("max_bytes", [](json& j) { j["graphs"]["decode"]["size_bytes"] = int64_t(1) << 51; }, svsr::Status::manifest,
           "at graphs/decode/size_bytes: 2251799813685248 is greater than the maximum of 1125899906842624");
    refuse("max_flops", [](json& j) { j["graphs"]["denoise"]["flops"]["linear"] = 2.5e21; }, svsr::Status::manifest,
           "at graphs/denoise/flops/linear: 2.5e+21 is greater than the maximum of 1e+21");
    refuse("max_flops_call", [](json& j) { j["graphs"]["denoise"]["flops"]["per_call"] = 1e22; }, svsr::Status::manifest,
           "at graphs/denoise/flops/per_call: 1e+22 is greater than the maximum of 1e+21");
    refuse("flops_quadratic", [](json& j) { j["graphs"]["denoise"]["flops"]["quadratic"] = -0.5; }, svsr::Status::manifest,
           "at graphs/denoise/flops/quadratic: -0.5 is less than the minimum of 0");
    refuse("max_timesteps", [](json& j) { j["scheduler"]["config"]["num_train_timesteps"] = 100001; }, svsr::Status::manifest,
           "at scheduler/config/num_train_timesteps: 100001 is greater than the maximum of 100000");
    refuse("acp_zero", [](json& j) { j["scheduler"]["alphas_cumprod"][5] = 0.0; }, svsr::Status::manifest,
           "at scheduler/alphas_cumprod/5: 0.0 is less than or equal to the minimum of 0");
    refuse("acp_above_one", [](json& j) { j["scheduler"]["alphas_cumprod"][0] = 1.0000001; }, svsr::Status::manifest,
           "at scheduler/alphas_cumprod/0: 1.0000001 is greater than the maximum of 1");
    refuse("acp_text", [](json& j) { j["scheduler"]["alphas_cumprod"][2] = "0.5"; }, svsr::Status::manifest,
           "at scheduler/alphas_cumprod/2: '0.5' is not of type 'number'");
    refuse("sigma_zero", [](json& j) { j["scheduler"]["init_noise_sigma"] = 0; }, svsr::Status::manifest,
           "at scheduler/init_noise_sigma: 0 is less than or equal to the minimum of 0");
    refuse("vae_huge", [](json& j) { j["vae_scaling_factor"] = 2e6; }, svsr::Status::manifest,
           "at vae_scaling_factor: 2000000.0 is greater than the maximum of 1000000.0");
    refuse("channels", [](json& j) { j["latent_channels"] = 65; }, svsr::Status::manifest, "at latent_channels: 65 is greater than the maximum of 64");
    refuse("min_side", [](json& j) { j["sizes"]["min_side"] = 16; }, svsr::Status::manifest, "at sizes/min_side: 32 was expected");
    refuse("flow_updates", [](json& j) { j["flow"] = {{"num_flow_updates", 100000}}; }, svsr::Status::manifest,
           "at flow/num_flow_updates: 100000 is greater than the maximum of 1000");
    refuse("engine_memory", [](json& j) { j["engines"]["flow.fp32"] = {{"graph", "flow"}, {"precision", "fp32"}, {"file", "f"}, {"sha256", "s"},
                                                                         {"device_memory_bytes", -1}}; },
           svsr::Status::manifest, "at engines/flow.fp32/device_memory_bytes: -1 is less than the minimum of 0");
    refuse("engine_tile", [](json& j) { j["engines"]["denoise.fp32"] = {{"graph", "denoise"}, {"precision", "fp32"}, {"file", "f"}, {"sha256", "s"},
                                                                        {"tile", {64, 30}}}; },
           svsr::Status::manifest, "at engines/denoise.fp32/tile/1: 30 is less than the minimum of 32");
    refuse("engine_profile", [](json& j) { j["engines"]["denoise.fp32"] = {{"graph", "denoise"}, {"precision", "fp32"}, {"file", "f"}, {"sha256", "s"},
                                                                           {"profile", {{"lr_min", {32, 34}}}}}; },
           svsr::Status::manifest, "at engines/denoise.fp32/profile/lr_min/1: 34 is not a multiple of 4");
    refuse("file_name", [](json& j) { j["graphs"]["flow"]["file"] = std::string(5000, 'a'); }, svsr::Status::manifest,
           "at graphs/flow/file: 'aaaa");
    {
        // nesting beyond any manifest: one sentence, no stack overflow
        const std::string deep = "{\"schema_version\": 3, \"x\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
        CHECK_THROWS(svsr::load_manifest(write_build("deep", deep)), svsr::Status::manifest, "nests its JSON too deeply to be an svsr manifest");
    }
    refuse("noguide", [](json& j) { j["graphs"].erase("guide_decode"); }, svsr::Status::manifest, "has no guide_decode graph");
    refuse("noblend", [](json& j) { j["graphs"].erase("blend"); }, svsr::Status::manifest, "has no blend graph");
    refuse("oldguide", [](json& j) { j["graphs"]["guide"] = j["graphs"]["warp"]; }, svsr::Status::manifest, "unexpected graph 'guide'");
    refuse("extragraph", [](json& j) { j["graphs"]["vae"] = j["graphs"]["decode"]; }, svsr::Status::manifest, "unexpected graph 'vae'");
    refuse("badsha", [](json& j) { j["graphs"]["flow"]["sha256"] = "xyz"; }, svsr::Status::manifest, "graphs/flow/sha256");
    refuse("nofile", [](json& j) { j["graphs"]["flow"].erase("file"); }, svsr::Status::manifest, "'file' is a required property");
    refuse("noscheduler", [](json& j) { j.erase("scheduler"); }, svsr::Status::manifest, "'scheduler' is a required property");
    refuse("acplen", [](json& j) { j["scheduler"]["alphas_cumprod"].erase(0); }, svsr::Status::manifest,
           "999 alphas_cumprod values for 1000 train timesteps");
    refuse("opset", [](json& j) { j["exporter"]["opset"] = 13; }, svsr::Status::manifest, "exporter/opset");
    refuse("scale", [](json& j) { j["sizes"]["scale"] = 2; }, svsr::Status::manifest, "sizes/scale");
    refuse("vae", [](json& j) { j["vae_scaling_factor"] = 0; }, svsr::Status::manifest, "vae_scaling_factor");
    refuse("prediction", [](json& j) { j["scheduler"]["config"]["prediction_type"] = "flow"; }, svsr::Status::manifest,
           "at scheduler/config/prediction_type: 'flow' is not one of ['epsilon', 'v_prediction', 'sample']");
    refuse("spacing", [](json& j) { j["scheduler"]["config"]["timestep_spacing"] = "karras"; }, svsr::Status::unsupported,
           "timestep_spacing 'karras' is not supported");
    refuse("variance", [](json& j) { j["scheduler"]["config"]["variance_type"] = "learned_range"; }, svsr::Status::unsupported,
           "variance_type 'learned_range' is not supported");
    refuse("variance_null", [](json& j) { j["scheduler"]["config"]["variance_type"] = nullptr; }, svsr::Status::unsupported,
           "variance_type 'None' is not supported");
    refuse("thresholding", [](json& j) { j["scheduler"]["config"]["thresholding"] = true; }, svsr::Status::unsupported,
           "dynamic thresholding");
    refuse("inputs", [](json& j) { j["graphs"]["denoise"]["inputs"].erase(3); }, svsr::Status::unsupported,
           "graph denoise declares inputs [z, lr, guidance, timestep, step_coeffs, noise, x0_history, norm_stats, shared_norm] but this host binds");
    refuse("nohistory", [](json& j) { j["graphs"]["denoise"]["inputs"].erase(7); }, svsr::Status::unsupported,
           "graph denoise declares inputs [z, lr, guidance, tcm_scale, timestep, step_coeffs, noise, norm_stats, shared_norm] but this host binds");
    refuse("renamed", [](json& j) { j["graphs"]["decode"]["outputs"][0]["name"] = "image"; }, svsr::Status::unsupported,
           "graph decode declares outputs [image]");
    refuse("fp16io", [](json& j) { j["graphs"]["guide_decode"]["inputs"][0]["dtype"] = "float16"; }, svsr::Status::unsupported,
           "guide_decode.x0 is float16; graphs must keep float32");
    refuse("dims", [](json& j) { j["graphs"]["warp"]["outputs"][0]["shape"][2] = "height"; }, svsr::Status::unsupported,
           "warp.guidance does not have the contract's shape");
    refuse("coeffs", [](json& j) { j["graphs"]["denoise"]["inputs"][5]["shape"] = {6}; }, svsr::Status::unsupported,
           "denoise.step_coeffs does not have the contract's shape");
    refuse("blend_weight", [](json& j) { j["graphs"]["blend"]["inputs"][2]["shape"][1] = 3; }, svsr::Status::unsupported,
           "blend.weight does not have the contract's shape");
    refuse("blend_channels", [](json& j) { j["graphs"]["blend"]["inputs"][0]["shape"][1] = 4; }, svsr::Status::unsupported,
           "blend.acc does not have the contract's shape");
    refuse("engine_key", [](json& j) { j["engines"]["flow.fp16"] = {{"graph", "flow"}, {"precision", "fp32"}, {"file", "f"}, {"sha256", "s"}}; },
           svsr::Status::manifest, "engines/flow.fp16");

    // engine records: version-compatible ("lean") flags, and which TensorRT may load which plan
    {
        json j = fixtures::valid_manifest();
        j["engines"]["flow.fp16"] = {{"graph", "flow"}, {"precision", "fp16"}, {"file", "f"}, {"sha256", std::string(64, 'a')},
                                     {"tensorrt_version", "11.0.0.5"}, {"version_compatible", true}, {"lean", true}};
        j["engines"]["decode.fp16"] = {{"graph", "decode"}, {"precision", "fp16"}, {"file", "d"}, {"sha256", std::string(64, 'a')},
                                       {"tensorrt_version", "11.1.0.106"}};
        const svsr::Manifest m = load("lean", j);
        const svsr::EngineRecord& lean = m.engines.at("flow.fp16");
        const svsr::EngineRecord& plain = m.engines.at("decode.fp16");
        CHECK(lean.version_compatible && lean.lean && !plain.version_compatible && !plain.lean);
        refuse("lean_flag", [](json& k) { k["engines"]["flow.fp16"] = {{"graph", "flow"}, {"precision", "fp16"}, {"file", "f"},
                                                                       {"sha256", "s"}, {"lean", "yes"}}; },
               svsr::Status::manifest, "engines/flow.fp16/lean: expected a boolean");

        CHECK(svsr::parse_trt_version("11.1.0.106").text() == "11.1.0.106" && svsr::parse_trt_version("11.1.0").build.empty());
        CHECK(!svsr::parse_trt_version("11.1").valid() && !svsr::parse_trt_version("11.x.0").valid());
        CHECK(svsr::trt_version_from_lib(110100, 106).text() == "11.1.0.106");
        svsr::EngineHost host;
        host.tensorrt = svsr::trt_version_from_lib(110100, 106);
        auto check_on = [&](svsr::EngineRecord r, const std::string& built, bool vc, bool lean_plan) {
            r.tensorrt_version = built;
            r.version_compatible = vc;
            r.lean = lean_plan;
            return svsr::check_engine_record(r, "the engine", host, "CMD");
        };
        svsr::EngineLoad how = check_on(plain, "11.1.0.106", false, false);
        CHECK(!how.host_code && !how.lean_library);
        check_on(plain, "11.1.0", false, false);  // no build number recorded: the release decides
        CHECK_THROWS(check_on(plain, "11.0.0.5", false, false), svsr::Status::manifest,
                     "the engine was built with TensorRT 11.0.0.5 but this machine has TensorRT 11.1.0.106; rebuild it with: CMD");
        CHECK_THROWS(check_on(plain, "11.1.0.107", false, false), svsr::Status::manifest, "was built with TensorRT 11.1.0.107");
        // version-compatible, lean runtime inside: on the same or a later TensorRT, host code allowed
        how = check_on(plain, "11.0.0.5", true, false);
        CHECK(how.host_code && !how.lean_library);
        how = check_on(plain, "10.16.1.11", true, false);
        CHECK(how.host_code && !how.lean_library);
        CHECK_THROWS(check_on(plain, "11.2.0.3", true, false), svsr::Status::manifest,
                     "built with TensorRT 11.2.0.3, newer than this machine's TensorRT 11.1.0.106 (version-compatible plans run on the same or a later");
        // lean runtime left out: this TensorRT where it built them, else that version's lean runtime library
        how = check_on(lean, "11.1.0.106", true, true);
        CHECK(how.host_code && !how.lean_library);
        CHECK_THROWS(check_on(lean, "11.0.0.5", true, true), svsr::Status::manifest,
                     "without its lean runtime inside (svsr-export --lean) and this machine has TensorRT 11.1.0.106; give TensorRT 11.0.0.5's "
                     "lean runtime library (libnvinfer_lean.so.11) with --lean-runtime PATH, or rebuild it with: CMD");
        host.lean_runtime = "/opt/trt-11.0/libnvinfer_lean.so.11";
        how = check_on(lean, "11.0.0.5", true, true);
        CHECK(how.host_code && how.lean_library);
        how = check_on(lean, "11.1.0.106", true, true);  // needed only for another version
        CHECK(how.host_code && !how.lean_library);
        how = check_on(plain, "11.1.0.106", false, false);  // a lean runtime given changes nothing for other plans
        CHECK(!how.host_code && !how.lean_library);
        // the GPU model binds every plan
        host.gpu_name = "NVIDIA H200";
        host.compute_capability = "9.0";
        svsr::EngineRecord on_h100 = lean;
        on_h100.gpu_name = "NVIDIA H100 80GB HBM3";
        on_h100.compute_capability = "9.0";
        CHECK_THROWS(check_on(on_h100, "11.0.0.5", true, true), svsr::Status::manifest,
                     "was built for NVIDIA H100 80GB HBM3 (compute capability 9.0) but this machine has NVIDIA H200");
    }

    // svsr-export --tile HxW: engines of the tiled graphs built static at one tile (engine_records.engine_tile_problem)
    {
        json j = fixtures::valid_manifest();
        auto record = [&](const char* graph, const char* precision, json tile) {
            j["engines"][std::string(graph) + "." + precision] = {
                {"graph", graph}, {"precision", precision}, {"file", std::string("engines/") + graph + ".plan"}, {"sha256", std::string(64, 'a')},
                {"profile", {{"lr_min", {32, 32}}, {"lr_opt", {180, 320}}, {"lr_max", {360, 640}}, {"batch", {1, 1, 1}}}}, {"tile", tile}};
        };
        for (const char* graph : {"flow", "denoise_stats", "decode_stats"}) record(graph, "fp16", nullptr);
        for (const char* graph : {"warp", "blend"}) record(graph, "fp32", nullptr);
        for (const char* graph : {"denoise", "guide_decode", "decode"}) record(graph, "fp16", json{128, 96});
        const svsr::Manifest m = load("engine_tile", j);
        CHECK((svsr::engine_tile(m) == std::array<int, 2>{128, 96}));
        CHECK((svsr::engine_tile(m, "fp32") == std::array<int, 2>{0, 0}));  // no fp32 engines of the tiled graphs: no tile
        CHECK(m.engines.at("denoise.fp16").profile_args == "--min 32x32 --opt 320x180 --max 640x360 --tile 128x96");
        // the build's tile on frames larger than it: fine, whatever the frame
        CHECK(svsr::engine_tile_problem(m, "auto", 128, 96, 180, 320).empty());
        CHECK(svsr::engine_tile_problem(m, "auto", 128, 96, 128, 96).empty());  // one tile that is the frame: the same shape
        // another tile
        const std::string dir_m = m.build_dir;
        CHECK(svsr::engine_tile_problem(m, "auto", 64, 64, 180, 320) ==
              "--tile 64x64 runs 64x64 tiles, but the TensorRT engines in " + dir_m + " were built for 128x96 tiles only (svsr-export --tile 128x96); "
              "use --tile 128x96 (or auto), or re-export for those tiles: svsr-export --weights /ckpt --precision fp16 --out " + dir_m +
              " --min 32x32 --opt 320x180 --max 640x360 --tile 64x64 --force.");
        // whole frames on tile engines
        CHECK(svsr::engine_tile_problem(m, "auto", 0, 0, 180, 320) ==
              "--tile off runs whole 320x180 frames, but the TensorRT engines in " + dir_m + " were built for 128x96 tiles only (svsr-export --tile "
              "128x96); use --tile auto (the build's tiles), or re-export for whole frames: svsr-export --weights /ckpt --precision fp16 --out " +
              dir_m + " --min 32x32 --opt 320x180 --max 640x360 --force.");
        CHECK(svsr::engine_tile_problem(m, "auto", 256, 320, 180, 320).find("--tile 256x320 covers the frame, so it runs whole 320x180 frames") == 0);
        // frames smaller than the tile
        CHECK(svsr::engine_tile_problem(m, "auto", 128, 96, 64, 320).find("frames of 320x64 (padded LR size) are smaller than one tile, and the TensorRT "
                                                                          "engines in ") == 0);
        // tiled graphs built for different tiles: one sentence
        record("decode", "fp16", json{64, 64});
        CHECK_THROWS(svsr::engine_tile(load("engine_tiles_differ", j)), svsr::Status::manifest,
                     "the TensorRT engines of the tiled graphs were built for different tiles (denoise 128x96, guide_decode 128x96, decode 64x64)");
    }

    // every file the manifest names stays inside the build folder (svsr/contract/paths.py's rule)
    {
        const std::string outside = dir + "/outside";
        ::mkdir(outside.c_str(), 0755);
        check::write_file(outside + "/flow.onnx", "abc");
        auto refused = [&](const std::string& name, const std::string& file, const char* reason) {
            json j = fixtures::valid_manifest();
            j["graphs"]["flow"]["file"] = file;
            CHECK_THROWS(load(name, j), svsr::Status::manifest, reason);
            CHECK_THROWS(load(name, j), svsr::Status::manifest, "names the flow graph file '" + file + "'");
            CHECK_THROWS(load(name, j), svsr::Status::manifest, "build folders may only name files inside themselves: re-export it with svsr-export --out");
        };
        refused("dotdot", "../outside/flow.onnx", "with '..'");
        refused("dotdot2", "sub/../../outside/flow.onnx", "with '..'");
        refused("absolute", outside + "/flow.onnx", "is an absolute path");
        const std::string linked = write_build("symlink", "{}");
        ::unlink((linked + "/sub").c_str());  // a fixture folder left by an earlier run
        CHECK(::symlink(outside.c_str(), (linked + "/sub").c_str()) == 0);
        refused("symlink", "sub/flow.onnx", "is a symbolic link to");
        // a link that stays inside is fine
        const std::string inside = write_build("inside_link", "{}");
        ::mkdir((inside + "/real").c_str(), 0755);
        ::unlink((inside + "/sub").c_str());
        CHECK(::symlink("real", (inside + "/sub").c_str()) == 0);
        json ok = fixtures::valid_manifest();
        ok["graphs"]["flow"]["file"] = "sub/flow.onnx";
        CHECK(load("inside_link", ok).graphs.at("flow").file == "sub/flow.onnx");
        json plan = fixtures::valid_manifest();
        plan["engines"]["flow.fp32"] = {{"graph", "flow"}, {"precision", "fp32"}, {"file", "../outside/flow.plan"}, {"sha256", std::string(64, 'a')}};
        CHECK_THROWS(load("plan_out", plan), svsr::Status::manifest, "names the flow.fp32 engine plan '../outside/flow.plan', which climbs out");
    }

    // graph files: missing, wrong sha256, right sha256
    {
        json j = fixtures::valid_manifest();
        const std::string d = write_build("files", j.dump());
        svsr::Manifest m = svsr::load_manifest(d);
        for (const char* g : svsr::kGraphNames) ::remove((d + "/" + g + ".onnx").c_str());
        CHECK_THROWS(svsr::check_graph_files(m, false), svsr::Status::manifest, "named in the manifest is missing");
        for (const char* g : svsr::kGraphNames) check::write_file(d + "/" + g + ".onnx", "abc");
        svsr::check_graph_files(m, false);
        CHECK_THROWS(svsr::check_graph_files(m, true), svsr::Status::manifest, "does not match the sha256 in the manifest");
        for (auto& kv : m.graphs) kv.second.sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";  // sha256("abc")
        svsr::check_graph_files(m, true);
        CHECK(svsr::sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        const std::string million(1000000, 'a');
        CHECK(svsr::sha256_hex(million.data(), million.size()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    }
    return check::finish("test_manifest");
}
