// manifest.json: reading and validating a build folder's manifest (svsr/contract/manifest.py).
//
// The checks follow MANIFEST_SCHEMA of the Python package for every field it requires, then add
// what this host relies on: the graphs declare exactly the tensors of svsr/contract/graphs.py as
// float32, and the scheduler options are ones the denoise graph's step implements. A manifest of
// another schema_version gets the sentence of manifest.py's older_schema_problem (the re-export).
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <sys/stat.h>

#include "svsr/host.hpp"

namespace svsr {

const char* const kGraphNames[kNumGraphs] = {"flow", "denoise", "guide_decode", "warp", "decode", "blend"};

bool float32_only_graph(const std::string& graph) { return graph == "warp" || graph == "blend"; }

namespace {

using json = nlohmann::json;

struct ContractTensor {
    const char* name;
    std::vector<const char*> dims;  // "batch", "height", ... or a number as text
};
struct ContractGraph {
    const char* name;
    std::vector<ContractTensor> inputs, outputs;
};

// svsr/contract/graphs.py
const std::vector<ContractGraph>& contract() {
    static const std::vector<ContractGraph> graphs = {
        {"flow",
         {{"frame", {"batch", "3", "height", "width"}}, {"previous", {"batch", "3", "height", "width"}}},
         {{"flow", {"batch", "2", "height4", "width4"}}}},
        {"denoise",
         {{"z", {"batch", "4", "height", "width"}},
          {"lr", {"batch", "3", "height", "width"}},
          {"guidance", {"batch", "3", "height4", "width4"}},
          {"tcm_scale", {"1"}},
          {"timestep", {"1"}},
          {"step_coeffs", {"8"}},
          {"noise", {"batch", "4", "height", "width"}},
          {"x0_history", {"batch", "4", "height", "width"}}},
         {{"z_prev", {"batch", "4", "height", "width"}}, {"x0", {"batch", "4", "height", "width"}}}},
        {"guide_decode", {{"x0", {"batch", "4", "height", "width"}}}, {{"image", {"batch", "3", "height4", "width4"}}}},
        {"warp",
         {{"image", {"batch", "3", "height4", "width4"}}, {"flow", {"batch", "2", "height4", "width4"}}},
         {{"guidance", {"batch", "3", "height4", "width4"}}}},
        {"decode", {{"z", {"batch", "4", "height", "width"}}}, {{"rgb", {"batch", "3", "height4", "width4"}}}},
        {"blend",
         {{"acc", {"batch", "channels", "height", "width"}},
          {"tile", {"batch", "channels", "height", "width"}},
          {"weight", {"1", "1", "height", "width"}}},
         {{"out", {"batch", "channels", "height", "width"}}}},
    };
    return graphs;
}

class Validator {
public:
    explicit Validator(std::string where) : where_(std::move(where)) {}

    [[noreturn]] void fail(const std::string& path, const std::string& message) const {
        throw Error(Status::manifest, where_ + " is not a valid svsr manifest at " + (path.empty() ? "(top level)" : path) +
                                          ": " + message + "; re-run svsr-export for this build folder.");
    }
    const json& require(const json& obj, const std::string& path, const char* key) const {
        if (!obj.is_object()) fail(path, "expected an object");
        auto it = obj.find(key);
        if (it == obj.end()) fail(path, std::string("'") + key + "' is a required property");
        return *it;
    }
    const json& object(const json& obj, const std::string& path, const char* key) const {
        const json& v = require(obj, path, key);
        if (!v.is_object()) fail(join(path, key), "expected an object");
        return v;
    }
    std::string string(const json& obj, const std::string& path, const char* key) const {
        const json& v = require(obj, path, key);
        if (!v.is_string()) fail(join(path, key), "expected a string");
        return v.get<std::string>();
    }
    int64_t integer(const json& obj, const std::string& path, const char* key) const {
        const json& v = require(obj, path, key);
        if (!v.is_number_integer()) fail(join(path, key), "expected an integer");
        return v.get<int64_t>();
    }
    double number(const json& v, const std::string& path) const {
        if (!v.is_number()) fail(path, "expected a number");
        return v.get<double>();
    }
    static std::string join(const std::string& path, const std::string& key) { return path.empty() ? key : path + "/" + key; }

private:
    std::string where_;
};

bool is_sha256(const std::string& s) {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

std::vector<TensorDesc> parse_tensors(const Validator& v, const json& graph, const std::string& path, const char* key) {
    const json& list = v.require(graph, path, key);
    const std::string here = Validator::join(path, key);
    if (!list.is_array() || list.empty()) v.fail(here, "expected a non-empty array");
    std::vector<TensorDesc> out;
    for (size_t i = 0; i < list.size(); ++i) {
        const std::string item = here + "/" + std::to_string(i);
        TensorDesc t;
        t.name = v.string(list[i], item, "name");
        t.dtype = v.string(list[i], item, "dtype");
        if (t.dtype != "float32" && t.dtype != "float16" && t.dtype != "bfloat16" && t.dtype != "int64")
            v.fail(item + "/dtype", "'" + t.dtype + "' is not one of float32, float16, bfloat16, int64");
        const json& shape = v.require(list[i], item, "shape");
        if (!shape.is_array()) v.fail(item + "/shape", "expected an array");
        for (const json& d : shape) {
            Dim dim;
            if (d.is_number_integer())
                dim.value = d.get<int64_t>();
            else if (d.is_string())
                dim.symbol = d.get<std::string>();
            else
                v.fail(item + "/shape", "dims must be integers or strings");
            t.shape.push_back(dim);
        }
        out.push_back(std::move(t));
    }
    return out;
}

std::string describe(const std::vector<TensorDesc>& tensors) {
    std::string s;
    for (const auto& t : tensors) s += (s.empty() ? "" : ", ") + t.name;
    return s;
}

// tensors whose fixed dims are the contract's exactly (the others' channel counts follow the manifest)
bool exact_dims(const std::string& tensor) {
    return tensor == "tcm_scale" || tensor == "timestep" || tensor == "step_coeffs" || tensor == "weight";
}

// the manifest's tensors must be those this host binds, as float32, with the contract's dims
void check_contract(const Manifest& m, const std::string& where) {
    for (const ContractGraph& g : contract()) {
        const GraphEntry& entry = m.graphs.at(g.name);
        auto check = [&](const std::vector<ContractTensor>& want, const std::vector<TensorDesc>& got, const char* kind) {
            std::string wanted;
            for (const auto& t : want) wanted += (wanted.empty() ? "" : ", ") + std::string(t.name);
            if (want.size() != got.size())
                throw Error(Status::unsupported, where + ": graph " + g.name + " declares " + kind + " [" + describe(got) +
                                                     "] but this host binds [" + wanted + "]; re-export with a matching svsr version.");
            for (const auto& w : want) {
                const TensorDesc* t = nullptr;
                for (const auto& cand : got)
                    if (cand.name == w.name) t = &cand;
                if (!t)
                    throw Error(Status::unsupported, where + ": graph " + g.name + " declares " + kind + " [" + describe(got) +
                                                         "] but this host binds [" + wanted + "]; re-export with a matching svsr version.");
                if (t->dtype != "float32")
                    throw Error(Status::unsupported, where + ": " + g.name + "." + w.name + " is " + t->dtype +
                                                         "; graphs must keep float32 inputs and outputs.");
                bool same = t->shape.size() == w.dims.size();
                for (size_t i = 0; same && i < w.dims.size(); ++i) {
                    const std::string d = w.dims[i];
                    const bool symbolic = !(d[0] >= '0' && d[0] <= '9');
                    if (symbolic)
                        same = t->shape[i].symbol == d;
                    else if (exact_dims(w.name))
                        same = t->shape[i].symbol.empty() && t->shape[i].value == std::stoll(d);
                    else  // channel counts: whatever the manifest says (latent_channels), but fixed
                        same = t->shape[i].symbol.empty() && t->shape[i].value > 0;
                }
                if (!same)
                    throw Error(Status::unsupported, where + ": " + g.name + "." + w.name +
                                                         " does not have the contract's shape; re-export with a matching svsr version.");
            }
        };
        check(g.inputs, entry.inputs, "inputs");
        check(g.outputs, entry.outputs, "outputs");
    }
}

bool file_exists(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string join_path(const std::string& dir, const std::string& file) {
    if (!file.empty() && file[0] == '/') return file;
    if (dir.empty()) return file;
    return dir.back() == '/' ? dir + file : dir + "/" + file;
}

std::string real_path(const std::string& path) {
    char* resolved = ::realpath(path.c_str(), nullptr);
    if (!resolved) return std::string();
    std::string out(resolved);
    std::free(resolved);
    return out;
}

// The rule of svsr/contract/paths.py: every file a build folder names stays inside it. No absolute
// names, no '..', no symbolic link that resolves outside the (resolved) build folder. Whoever writes
// the manifest writes the sha256 too, so only this keeps a host from opening files elsewhere.
std::string escape_reason(const std::string& build_dir, const std::string& name) {
    if (name.empty() || name.find('\0') != std::string::npos) return "is not a file name";
    if (name[0] == '/' || name[0] == '\\') return "is an absolute path, outside the build folder " + build_dir;
    std::string part;
    for (size_t i = 0; i <= name.size(); ++i) {
        if (i == name.size() || name[i] == '/' || name[i] == '\\') {
            if (part == "..") return "climbs out of the build folder " + build_dir + " with '..'";
            part.clear();
        } else {
            part += name[i];
        }
    }
    const std::string root = real_path(build_dir);
    if (root.empty()) return std::string();  // no folder to compare with: nothing here can be opened either
    // the deepest part of the name that exists decides (the rest, free of '..', cannot leave it)
    std::string candidate = join_path(build_dir, name);
    struct stat st;
    while (candidate.size() > build_dir.size() && ::lstat(candidate.c_str(), &st) != 0) candidate = candidate.substr(0, candidate.rfind('/'));
    const std::string target = real_path(candidate);
    if (target.empty() || target == root || target.compare(0, root.size() + 1, root + "/") == 0) return std::string();
    return "is a symbolic link to " + target + ", outside the build folder " + build_dir;
}

void check_inside(const std::string& build_dir, const std::string& name, const std::string& what, const std::string& where) {
    const std::string reason = escape_reason(build_dir, name);
    if (reason.empty()) return;
    throw Error(Status::manifest, where + " names " + what + " '" + name + "', which " + reason +
                                      "; build folders may only name files inside themselves: re-export it with svsr-export --out " +
                                      build_dir + ".");
}

}  // namespace

// svsr/contract/manifest.py older_schema_problem: the sentence for a manifest of another schema_version
static std::string older_schema_problem(const nlohmann::json& data, const std::string& where) {
    const int64_t version = data.at("schema_version").get<int64_t>();
    // the folder of the manifest (Path(where).parent when where names manifest.json)
    std::string folder = where;
    const std::string name = "manifest.json";
    if (folder.size() >= name.size() && folder.compare(folder.size() - name.size(), name.size(), name) == 0 &&
        (folder.size() == name.size() || folder[folder.size() - name.size() - 1] == '/')) {
        folder.erase(folder.size() - name.size());
        while (folder.size() > 1 && folder.back() == '/') folder.pop_back();
        if (folder.empty()) folder = ".";
    }
    std::string weights = "--weights CHECKPOINT";
    const auto checkpoint = data.find("checkpoint");
    if (checkpoint != data.end() && checkpoint->is_object()) {
        const auto preset = checkpoint->find("preset"), source = checkpoint->find("source");
        if (preset != checkpoint->end() && preset->is_string() && !preset->get<std::string>().empty())
            weights = "--preset " + preset->get<std::string>();
        else if (source != checkpoint->end() && source->is_string() && !source->get<std::string>().empty())
            weights = "--weights " + source->get<std::string>();
    }
    const bool older = version < kSchemaVersion;
    const std::string advice = older ? "re-export it: svsr-export " + weights + " --out " + folder + " --force"
                                     : "update svsr (pip install -U svsr) or re-export the build folder with this one";
    const std::string what = older ? "tiles and the DDIM/DPM-Solver++ schedulers changed the graphs" : "its graphs may differ";
    return where + " was written by " + (older ? "an older" : "a newer") + " svsr (manifest schema " + std::to_string(version) +
           "; this svsr reads schema " + std::to_string(kSchemaVersion) + ", " + what + "); " + advice + ".";
}

std::string Manifest::rebuild_command(const std::string& precision_flags) const {
    std::string cmd = "svsr-export --weights " + (checkpoint_source.empty() ? std::string("CHECKPOINT") : checkpoint_source);
    if (!precision_flags.empty()) cmd += " " + precision_flags;
    cmd += " --out " + build_dir + " --force";
    return cmd;
}

const TensorDesc& Manifest::tensor(const std::string& graph, const std::string& name) const {
    auto it = graphs.find(graph);
    if (it != graphs.end()) {
        for (const auto& t : it->second.inputs)
            if (t.name == name) return t;
        for (const auto& t : it->second.outputs)
            if (t.name == name) return t;
    }
    throw Error(Status::manifest, path + " declares no tensor " + graph + "." + name + "; re-run svsr-export.");
}

std::vector<int64_t> resolve_shape(const TensorDesc& t, int batch, int height, int width, int channels) {
    std::vector<int64_t> shape;
    for (const Dim& d : t.shape) {
        if (d.symbol.empty())
            shape.push_back(d.value);
        else if (d.symbol == "batch")
            shape.push_back(batch);
        else if (d.symbol == "height")
            shape.push_back(height);
        else if (d.symbol == "width")
            shape.push_back(width);
        else if (d.symbol == "height4")
            shape.push_back(4 * int64_t(height));
        else if (d.symbol == "width4")
            shape.push_back(4 * int64_t(width));
        else if (d.symbol == "channels")
            shape.push_back(channels);
        else
            throw Error(Status::unsupported, "tensor " + t.name + " has an unknown symbolic dim '" + d.symbol + "'.");
    }
    return shape;
}

int64_t element_count(const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

Manifest parse_manifest(const std::string& text, const std::string& build_dir, const std::string& where) {
    json data;
    try {
        data = json::parse(text);
    } catch (const json::parse_error& e) {
        throw Error(Status::manifest, where + " is not valid JSON (" + std::string(e.what()) + "); re-run svsr-export --force.");
    }
    Validator v(where);
    if (!data.is_object()) v.fail("", "expected an object");
    Manifest m;
    m.build_dir = build_dir;
    m.path = where;

    const json& version = v.require(data, "", "schema_version");
    if (version.is_number_integer() && version.get<int64_t>() != kSchemaVersion)
        throw Error(Status::manifest, older_schema_problem(data, where));
    if (!version.is_number_integer()) v.fail("schema_version", std::to_string(kSchemaVersion) + " was expected");
    m.schema_version = kSchemaVersion;

    const json& checkpoint = v.object(data, "", "checkpoint");
    v.string(checkpoint, "checkpoint", "fingerprint");
    if (checkpoint.contains("source") && checkpoint["source"].is_string()) m.checkpoint_source = checkpoint["source"].get<std::string>();
    const json& exporter = v.object(data, "", "exporter");
    if (v.integer(exporter, "exporter", "opset") < 17) v.fail("exporter/opset", "the opset must be at least 17");
    v.string(exporter, "exporter", "method");

    // graphs
    const json& graphs = v.object(data, "", "graphs");
    for (const char* name : kGraphNames) {
        if (!graphs.contains(name))
            throw Error(Status::manifest, where + " has no " + name + " graph; re-run svsr-export --force for this build folder.");
    }
    for (auto it = graphs.begin(); it != graphs.end(); ++it) {
        const std::string path = "graphs/" + it.key();
        bool known = false;
        for (const char* name : kGraphNames) known = known || it.key() == name;
        if (!known) v.fail("graphs", "unexpected graph '" + it.key() + "'");
        if (!it->is_object()) v.fail(path, "expected an object");
        GraphEntry g;
        g.name = it.key();
        g.file = v.string(*it, path, "file");
        check_inside(build_dir, g.file, "the " + g.name + " graph file", where);
        g.sha256 = v.string(*it, path, "sha256");
        if (!is_sha256(g.sha256)) v.fail(path + "/sha256", "expected 64 lowercase hex digits");
        g.inputs = parse_tensors(v, *it, path, "inputs");
        g.outputs = parse_tensors(v, *it, path, "outputs");
        v.object(*it, path, "flops");
        m.graphs[g.name] = std::move(g);
    }

    // scheduler
    const json& scheduler = v.object(data, "", "scheduler");
    const json& config = v.object(scheduler, "scheduler", "config");
    SchedulerConfig& sc = m.scheduler;
    sc.num_train_timesteps = v.integer(config, "scheduler/config", "num_train_timesteps");
    if (sc.num_train_timesteps < 1) v.fail("scheduler/config/num_train_timesteps", "must be at least 1");
    sc.prediction_type = v.string(config, "scheduler/config", "prediction_type");
    sc.config_json = config.dump();
    if (sc.prediction_type != "epsilon" && sc.prediction_type != "v_prediction" && sc.prediction_type != "sample")
        v.fail("scheduler/config/prediction_type", "'" + sc.prediction_type + "' is not one of epsilon, v_prediction, sample");
    auto optional_string = [&](const char* key, const std::string& fallback) -> std::string {
        if (!config.contains(key)) return fallback;
        const json& val = config[key];
        if (val.is_string()) return val.get<std::string>();
        return val.is_null() ? std::string("None") : val.dump();  // unsupported below, named as Python would
    };
    sc.variance_type = optional_string("variance_type", "fixed_small");
    sc.timestep_spacing = optional_string("timestep_spacing", "leading");
    if (config.contains("steps_offset")) {
        if (!config["steps_offset"].is_number_integer()) v.fail("scheduler/config/steps_offset", "expected an integer");
        sc.steps_offset = config["steps_offset"].get<int64_t>();
    }
    auto truthy = [&](const char* key) {
        if (!config.contains(key)) return false;
        const json& val = config[key];
        if (val.is_boolean()) return val.get<bool>();
        if (val.is_number()) return val.get<double>() != 0.0;
        if (val.is_null()) return false;
        if (val.is_string()) return !val.get<std::string>().empty();
        return !val.empty();
    };
    sc.clip_sample = truthy("clip_sample");
    sc.thresholding = truthy("thresholding");
    if (config.contains("clip_sample_range")) sc.clip_sample_range = v.number(config["clip_sample_range"], "scheduler/config/clip_sample_range");
    const json& acp = v.require(scheduler, "scheduler", "alphas_cumprod");
    if (!acp.is_array() || acp.empty()) v.fail("scheduler/alphas_cumprod", "expected a non-empty array of numbers");
    m.alphas_cumprod.reserve(acp.size());
    for (const json& a : acp) m.alphas_cumprod.push_back(static_cast<float>(v.number(a, "scheduler/alphas_cumprod")));
    if (static_cast<int64_t>(m.alphas_cumprod.size()) != sc.num_train_timesteps)
        throw Error(Status::manifest, where + " has " + std::to_string(m.alphas_cumprod.size()) + " alphas_cumprod values for " +
                                          std::to_string(sc.num_train_timesteps) + " train timesteps; re-run svsr-export.");
    if (scheduler.contains("init_noise_sigma"))
        m.init_noise_sigma = static_cast<float>(v.number(scheduler["init_noise_sigma"], "scheduler/init_noise_sigma"));

    const json& vae = v.require(data, "", "vae_scaling_factor");
    if (v.number(vae, "vae_scaling_factor") <= 0) v.fail("vae_scaling_factor", "must be greater than 0");
    if (data.contains("latent_channels")) m.latent_channels = static_cast<int>(v.integer(data, "", "latent_channels"));

    const json& sizes = v.object(data, "", "sizes");
    m.min_side = static_cast<int>(v.integer(sizes, "sizes", "min_side"));
    m.pad_multiple = static_cast<int>(v.integer(sizes, "sizes", "pad_multiple"));
    m.scale = static_cast<int>(v.integer(sizes, "sizes", "scale"));
    if (m.scale != 4) v.fail("sizes/scale", "4 was expected");
    if (m.pad_multiple < 1) v.fail("sizes/pad_multiple", "must be at least 1");

    // engines: one build record per "<graph>.<precision>"
    if (data.contains("engines")) {
        const json& engines = data["engines"];
        if (!engines.is_object()) v.fail("engines", "expected an object");
        for (auto it = engines.begin(); it != engines.end(); ++it) {
            const std::string path = "engines/" + it.key();
            EngineRecord r;
            r.key = it.key();
            r.graph = v.string(*it, path, "graph");
            r.precision = v.string(*it, path, "precision");
            r.file = v.string(*it, path, "file");
            check_inside(build_dir, r.file, "the " + r.key + " engine plan", where);
            r.sha256 = v.string(*it, path, "sha256");
            if (r.key != r.graph + "." + r.precision) v.fail(path, "the key must be '<graph>.<precision>' of the record");
            bool known = false;
            for (const char* name : kGraphNames) known = known || r.graph == name;
            if (!known || (r.precision != "fp32" && r.precision != "fp16" && r.precision != "bf16"))
                v.fail(path, "unknown graph or precision");
            if (it->contains("tensorrt_version") && (*it)["tensorrt_version"].is_string())
                r.tensorrt_version = (*it)["tensorrt_version"].get<std::string>();
            if (it->contains("gpu_name") && (*it)["gpu_name"].is_string()) r.gpu_name = (*it)["gpu_name"].get<std::string>();
            if (it->contains("compute_capability") && (*it)["compute_capability"].is_string())
                r.compute_capability = (*it)["compute_capability"].get<std::string>();
            for (const auto& flag : {std::make_pair("version_compatible", &r.version_compatible), std::make_pair("lean", &r.lean)}) {
                if (!it->contains(flag.first)) continue;
                if (!(*it)[flag.first].is_boolean()) v.fail(path + "/" + flag.first, "expected a boolean");
                *flag.second = (*it)[flag.first].get<bool>();
            }
            if (it->contains("device_memory_bytes") && (*it)["device_memory_bytes"].is_number_integer())
                r.device_memory_bytes = (*it)["device_memory_bytes"].get<int64_t>();
            if (it->contains("profile") && (*it)["profile"].is_object()) {
                const json& p = (*it)["profile"];
                auto size = [&](const char* key) -> std::string {
                    if (!p.contains(key) || !p[key].is_array() || p[key].size() != 2) return "?";
                    return p[key][1].dump() + "x" + p[key][0].dump();  // stored (height, width): show WxH
                };
                r.profile_summary = "LR " + size("lr_min") + " .. " + size("lr_max");
                if (size("lr_min") == size("lr_opt") && size("lr_opt") == size("lr_max"))
                    r.profile_args = "--resolution " + size("lr_min");
                else
                    r.profile_args = "--min " + size("lr_min") + " --opt " + size("lr_opt") + " --max " + size("lr_max");
            }
            m.engines[r.key] = std::move(r);
        }
    }

    check_scheduler_config(sc);
    check_contract(m, where);
    return m;
}

Manifest load_manifest(const std::string& build_dir) {
    const std::string path = join_path(build_dir, "manifest.json");
    struct stat st;
    if (::stat(build_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        throw Error(Status::manifest, "the build folder " + build_dir + " does not exist; run svsr-export --out " + build_dir + " first.");
    if (!file_exists(path))
        throw Error(Status::manifest, build_dir + " has no manifest.json; run svsr-export --out " + build_dir + " first.");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(Status::manifest, "cannot read " + path + ".");
    std::ostringstream text;
    text << in.rdbuf();
    return parse_manifest(text.str(), build_dir, path);
}

void check_graph_files(const Manifest& m, bool check_sha) {
    for (const char* name : kGraphNames) {
        const GraphEntry& g = m.graphs.at(name);
        const std::string file = join_path(m.build_dir, g.file);
        if (!file_exists(file))
            throw Error(Status::manifest, "graph " + std::string(name) + " (" + file + ") named in the manifest is missing; re-run svsr-export --force.");
        if (check_sha && sha256_file(file) != g.sha256)
            throw Error(Status::manifest, "graph " + std::string(name) + " (" + file +
                                              ") does not match the sha256 in the manifest; re-run svsr-export --force to rebuild it.");
    }
}

}  // namespace svsr
