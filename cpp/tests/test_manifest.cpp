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
        CHECK(m.graphs.size() == 6 && m.schema_version == 2);
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
    CHECK_THROWS(svsr::load_manifest(write_build("badjson", "{\"schema_version\": 2,")), svsr::Status::manifest, "is not valid JSON");

    auto refuse = [&](const char* name, auto mutate, svsr::Status status, const char* needle) {
        json j = fixtures::valid_manifest();
        mutate(j);
        CHECK_THROWS(load(name, j), status, needle);
    };
    // another schema: the sentence of svsr/contract/manifest.py older_schema_problem, naming the re-export
    refuse("schema1", [](json& j) { j["schema_version"] = 1; }, svsr::Status::manifest,
           "/schema1/manifest.json was written by an older svsr (manifest schema 1; this svsr reads schema 2, tiles and the "
           "DDIM/DPM-Solver++ schedulers changed the graphs); re-export it: svsr-export --preset tiny --out ");
    refuse("schema1_source", [](json& j) { j["schema_version"] = 1; j["checkpoint"].erase("preset"); }, svsr::Status::manifest,
           "re-export it: svsr-export --weights /ckpt --out ");
    refuse("schema3", [](json& j) { j["schema_version"] = 3; }, svsr::Status::manifest,
           "was written by a newer svsr (manifest schema 3; this svsr reads schema 2, its graphs may differ); update svsr");
    refuse("schema_text", [](json& j) { j["schema_version"] = "2"; }, svsr::Status::manifest, "at schema_version: 2 was expected");
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
           "'flow' is not one of epsilon, v_prediction, sample");
    refuse("spacing", [](json& j) { j["scheduler"]["config"]["timestep_spacing"] = "karras"; }, svsr::Status::unsupported,
           "timestep_spacing 'karras' is not supported");
    refuse("variance", [](json& j) { j["scheduler"]["config"]["variance_type"] = "learned_range"; }, svsr::Status::unsupported,
           "variance_type 'learned_range' is not supported");
    refuse("variance_null", [](json& j) { j["scheduler"]["config"]["variance_type"] = nullptr; }, svsr::Status::unsupported,
           "variance_type 'None' is not supported");
    refuse("thresholding", [](json& j) { j["scheduler"]["config"]["thresholding"] = true; }, svsr::Status::unsupported,
           "dynamic thresholding");
    refuse("inputs", [](json& j) { j["graphs"]["denoise"]["inputs"].erase(3); }, svsr::Status::unsupported,
           "graph denoise declares inputs [z, lr, guidance, timestep, step_coeffs, noise, x0_history] but this host binds");
    refuse("nohistory", [](json& j) { j["graphs"]["denoise"]["inputs"].erase(7); }, svsr::Status::unsupported,
           "graph denoise declares inputs [z, lr, guidance, tcm_scale, timestep, step_coeffs, noise] but this host binds");
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
