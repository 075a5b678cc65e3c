// manifest.json parsing and the refusals, on fixtures written by this test.
//   test_manifest FIXTURE_DIR
#include <sys/stat.h>

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
        CHECK(m.graphs.size() == 4);
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
        CHECK((svsr::resolve_shape(m.tensor("denoise", "step_coeffs"), 1, 36, 44) == std::vector<int64_t>{6}));
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
    CHECK_THROWS(svsr::load_manifest(write_build("badjson", "{\"schema_version\": 1,")), svsr::Status::manifest, "is not valid JSON");

    auto refuse = [&](const char* name, auto mutate, svsr::Status status, const char* needle) {
        json j = fixtures::valid_manifest();
        mutate(j);
        CHECK_THROWS(load(name, j), status, needle);
    };
    refuse("schema2", [](json& j) { j["schema_version"] = 2; }, svsr::Status::manifest, "schema_version 2 but this host reads schema_version 1");
    refuse("noguide", [](json& j) { j["graphs"].erase("guide"); }, svsr::Status::manifest, "has no guide graph");
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
           "graph denoise declares inputs [z, lr, guidance, timestep, step_coeffs, noise] but this host binds");
    refuse("renamed", [](json& j) { j["graphs"]["decode"]["outputs"][0]["name"] = "image"; }, svsr::Status::unsupported,
           "graph decode declares outputs [image]");
    refuse("fp16io", [](json& j) { j["graphs"]["guide"]["inputs"][0]["dtype"] = "float16"; }, svsr::Status::unsupported,
           "guide.x0 is float16; graphs must keep float32");
    refuse("dims", [](json& j) { j["graphs"]["guide"]["outputs"][0]["shape"][2] = "height"; }, svsr::Status::unsupported,
           "guide.guidance does not have the contract's shape");
    refuse("coeffs", [](json& j) { j["graphs"]["denoise"]["inputs"][5]["shape"] = {7}; }, svsr::Status::unsupported,
           "denoise.step_coeffs does not have the contract's shape");
    refuse("engine_key", [](json& j) { j["engines"]["flow.fp16"] = {{"graph", "flow"}, {"precision", "fp32"}, {"file", "f"}, {"sha256", "s"}}; },
           svsr::Status::manifest, "engines/flow.fp16");

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
