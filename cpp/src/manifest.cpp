// manifest.json: reading and validating a build folder's manifest (svsr/contract/manifest.py).
//
// The checks follow MANIFEST_SCHEMA of the Python package for every field it requires, then add
// what this host relies on: the graphs declare exactly the tensors of svsr/contract/graphs.py as
// float32, and the scheduler options are ones the denoise graph's step implements. A manifest of
// another schema_version gets the sentence of manifest.py's older_schema_problem (the re-export).
// A manifest is data from elsewhere: every number it holds must be finite (NaN, Infinity and numbers
// beyond a double get validate_manifest's sentence) and within the schema's bounds (MAX_SIDE, MAX_DIM,
// MAX_BYTES, MAX_FLOPS, MAX_TRAIN_TIMESTEPS, alphas_cumprod in (0, 1]), each violation one sentence
// naming the field, worded as the Python validator (jsonschema) words it.
#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <sys/stat.h>

#include "svsr/host.hpp"

namespace svsr {

const char* const kGraphNames[kNumGraphs] = {"flow",         "flow_x2",      "flow_x1", "denoise", "denoise_stats",
                                             "guide_decode", "decode_stats", "warp",    "decode",  "blend"};

bool float32_only_graph(const std::string& graph) { return graph == "warp" || graph == "blend"; }

bool stats_graph(const std::string& graph) { return graph == "denoise_stats" || graph == "decode_stats"; }

bool flow_graph_name(const std::string& graph) { return graph == "flow" || graph == "flow_x2" || graph == "flow_x1"; }

const char* flow_graph(int scale) {
    switch (scale) {
        case 4: return "flow";
        case 2: return "flow_x2";
        case 1: return "flow_x1";
    }
    throw Error(Status::invalid_argument, "flow scale " + std::to_string(scale) + " is not a flow scale; use 4 (the original), 2 or 1.");
}

int flow_scale_min_side(int scale) {
    flow_graph(scale);  // refuses another scale
    return (kRaftMinSide + scale - 1) / scale;
}

std::string flow_scale_problem(int scale, int height, int width, const std::string& option) {
    const int need = flow_scale_min_side(scale);
    if (height >= need && width >= need) return std::string();
    int fits = 0;  // the largest scale that fits (frames of min_side or more always fit at 4)
    for (int s : kFlowScales)
        if (fits == 0 && height >= flow_scale_min_side(s) && width >= flow_scale_min_side(s)) fits = s;
    return option + " " + std::to_string(scale) + " needs frames of at least " + std::to_string(need) + " px per side (RAFT sees them at x" +
           std::to_string(scale) + "), but these are " + std::to_string(width) + "x" + std::to_string(height) + "; use " + option + " " +
           std::to_string(fits) + ".";
}

namespace {

// file order (as Python's json keeps it), so the first bad field named is the one Python names
using json = nlohmann::ordered_json;

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
    const ContractTensor frame{"frame", {"batch", "3", "height", "width"}}, previous{"previous", {"batch", "3", "height", "width"}};
    const ContractTensor flow{"flow", {"batch", "2", "height4", "width4"}};
    static const std::vector<ContractGraph> graphs = {
        {"flow", {frame, previous}, {flow}},
        {"flow_x2", {frame, previous}, {flow}},
        {"flow_x1", {frame, previous}, {flow}},
        {"denoise",
         {{"z", {"batch", "4", "height", "width"}},
          {"lr", {"batch", "3", "height", "width"}},
          {"guidance", {"batch", "3", "height4", "width4"}},
          {"tcm_scale", {"1"}},
          {"timestep", {"1"}},
          {"step_coeffs", {"8"}},
          {"noise", {"batch", "4", "height", "width"}},
          {"x0_history", {"batch", "4", "height", "width"}},
          {"norm_stats", {"batch", "denoise_stats"}},
          {"shared_norm", {"1"}}},
         {{"z_prev", {"batch", "4", "height", "width"}}, {"x0", {"batch", "4", "height", "width"}}}},
        {"denoise_stats",
         {{"z", {"batch", "4", "height", "width"}},
          {"lr", {"batch", "3", "height", "width"}},
          {"guidance", {"batch", "3", "height4", "width4"}},
          {"tcm_scale", {"1"}},
          {"timestep", {"1"}}},
         {{"norm_stats", {"batch", "denoise_stats"}}}},
        {"guide_decode",
         {{"x0", {"batch", "4", "height", "width"}}, {"norm_stats", {"batch", "decode_stats"}}, {"shared_norm", {"1"}}},
         {{"image", {"batch", "3", "height4", "width4"}}}},
        {"decode_stats", {{"latent", {"batch", "4", "height", "width"}}}, {{"norm_stats", {"batch", "decode_stats"}}}},
        {"warp",
         {{"image", {"batch", "3", "height4", "width4"}}, {"flow", {"batch", "2", "height4", "width4"}}},
         {{"guidance", {"batch", "3", "height4", "width4"}}}},
        {"decode",
         {{"z", {"batch", "4", "height", "width"}}, {"norm_stats", {"batch", "decode_stats"}}, {"shared_norm", {"1"}}},
         {{"rgb", {"batch", "3", "height4", "width4"}}}},
        {"blend",
         {{"acc", {"batch", "channels", "height", "width"}},
          {"tile", {"batch", "channels", "height", "width"}},
          {"weight", {"1", "1", "height", "width"}}},
         {{"out", {"batch", "channels", "height", "width"}}}},
    };
    return graphs;
}

// Python's repr of a float (the shortest text that reads back as the same double; exponent form below
// 1e-4 and from 1e16 on), so a bound's message reads as jsonschema's does
std::string python_float(double x) {
    if (std::isnan(x)) return "nan";
    if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
    if (x == 0) return std::signbit(x) ? "-0.0" : "0.0";
    char buf[40];
    int precision = 1;
    for (; precision <= 17; ++precision) {
        std::snprintf(buf, sizeof(buf), "%.*e", precision - 1, x);
        if (std::strtod(buf, nullptr) == x) break;
    }
    // buf: [-]d.ddde[+-]XX -> digits and decimal exponent
    const std::string text(buf);
    const size_t e = text.find('e');
    const int exponent = std::atoi(text.c_str() + e + 1);
    std::string digits;
    for (size_t i = 0; i < e; ++i)
        if (text[i] >= '0' && text[i] <= '9') digits += text[i];
    while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
    std::string out = x < 0 ? "-" : "";
    if (exponent < -4 || exponent >= 16) {
        out += digits.substr(0, 1);
        if (digits.size() > 1) out += "." + digits.substr(1);
        char exp[16];
        std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', exponent < 0 ? -exponent : exponent);
        return out + exp;
    }
    if (exponent < 0) return out + "0." + std::string(size_t(-exponent - 1), '0') + digits;
    std::string whole = digits.substr(0, std::min(digits.size(), size_t(exponent) + 1));
    whole += std::string(size_t(exponent) + 1 - whole.size(), '0');
    const std::string fraction = digits.size() > size_t(exponent) + 1 ? digits.substr(size_t(exponent) + 1) : "0";
    return out + whole + "." + fraction;
}

// Python's repr of a JSON value (as jsonschema puts the instance into its messages)
std::string python_repr(const json& v) {
    if (v.is_null()) return "None";
    if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
    if (v.is_number_integer()) return v.dump();
    if (v.is_number_float()) return python_float(v.get<double>());
    if (v.is_string()) {
        std::string out = "'";
        for (char c : v.get<std::string>()) out += c == '\'' ? std::string("\\'") : c == '\\' ? std::string("\\\\") : std::string(1, c);
        return out + "'";
    }
    std::string out = v.is_array() ? "[" : "{";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
        out += first ? "" : ", ";
        first = false;
        if (v.is_object()) out += python_repr(json(it.key())) + ": ";
        out += python_repr(*it);
    }
    return out + (v.is_array() ? "]" : "}");
}

// A marker for the NaN / Infinity / -Infinity literals JSON does not have (Python's json reads them), so
// that they parse and the walk below names their field; \u0001 never begins a string svsr-export writes
const std::string kNonFinite = "\x01svsr-non-finite:";

std::string mark_non_finite(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    bool in_string = false, escaped = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            out += c;
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        if (c == '-' || (c >= '0' && c <= '9')) {
            // a number beyond a double (1e400) reads as infinity in Python; nlohmann refuses it without naming the field
            size_t end = i + 1;
            while (end < text.size() && std::strchr("0123456789+-.eE", text[end]) != nullptr) ++end;
            const std::string token = text.substr(i, end - i);
            const double value = std::strtod(token.c_str(), nullptr);
            if (std::isinf(value)) {
                out += "\"\\u0001svsr-non-finite:" + std::string(value < 0 ? "-inf" : "inf") + "\"";
                i = end - 1;
                continue;
            }
            if (c != '-') {  // an ordinary number: copied as it is
                out += token;
                i = end - 1;
                continue;
            }
        }
        bool replaced = false;
        for (const char* literal : {"-Infinity", "Infinity", "NaN"}) {
            const size_t n = std::strlen(literal);
            if (text.compare(i, n, literal) == 0) {
                out += "\"\\u0001svsr-non-finite:" + std::string(literal) + "\"";
                i += n - 1;
                replaced = true;
                break;
            }
        }
        if (!replaced) out += c;
    }
    return out;
}

// manifest.py non_finite_field: (json path, value) of the first NaN or infinite number; false when all are finite
bool non_finite_field(const json& v, const std::string& path, std::string* where, std::string* value) {
    if (v.is_string() && v.get_ref<const std::string&>().compare(0, kNonFinite.size(), kNonFinite) == 0) {
        *where = path.empty() ? "(top level)" : path;
        *value = v.get_ref<const std::string&>().substr(kNonFinite.size());
        return true;
    }
    if (v.is_number_float() && !std::isfinite(v.get<double>())) {
        *where = path.empty() ? "(top level)" : path;
        *value = python_float(v.get<double>());
        return true;
    }
    if (v.is_object()) {
        for (auto it = v.begin(); it != v.end(); ++it)
            if (non_finite_field(*it, path.empty() ? it.key() : path + "/" + it.key(), where, value)) return true;
    } else if (v.is_array()) {
        for (size_t i = 0; i < v.size(); ++i)
            if (non_finite_field(v[i], path.empty() ? std::to_string(i) : path + "/" + std::to_string(i), where, value)) return true;
    }
    return false;
}

// how deeply `v` nests (Python's json stops at its recursion limit: "nests its JSON too deeply")
constexpr int kMaxDepth = 500;
int depth(const json& v, int level = 0) {
    if (level > kMaxDepth || !v.is_structured()) return level;
    int deepest = level;
    for (const json& child : v) deepest = std::max(deepest, depth(child, level + 1));
    return deepest;
}

class Validator {
public:
    explicit Validator(std::string where) : where_(std::move(where)) {}

    [[noreturn]] void fail(const std::string& path, const std::string& message) const {
        throw Error(Status::manifest, where_ + " is not a valid svsr manifest at " + (path.empty() ? "(top level)" : path) +
                                          ": " + message + "; re-run svsr-export for this build folder.");
    }
    const json& require(const json& obj, const std::string& path, const char* key) const {
        if (!obj.is_object()) fail(path, python_repr(obj) + " is not of type 'object'");
        auto it = obj.find(key);
        if (it == obj.end()) fail(path, std::string("'") + key + "' is a required property");
        return *it;
    }
    const json& object(const json& obj, const std::string& path, const char* key) const {
        const json& v = require(obj, path, key);
        if (!v.is_object()) fail(join(path, key), python_repr(v) + " is not of type 'object'");
        return v;
    }
    std::string string(const json& obj, const std::string& path, const char* key, size_t max_length = std::string::npos) const {
        const json& v = require(obj, path, key);
        if (!v.is_string()) fail(join(path, key), python_repr(v) + " is not of type 'string'");
        const std::string& text = v.get_ref<const std::string&>();
        if (max_length != std::string::npos && text.empty()) fail(join(path, key), python_repr(v) + " should be non-empty");
        if (max_length != std::string::npos && text.size() > max_length) fail(join(path, key), python_repr(v) + " is too long");
        return text;
    }
    // an integer in [lo, hi] (the schema's minimum and maximum)
    int64_t integer(const json& obj, const std::string& path, const char* key, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX) const {
        return integer_value(require(obj, path, key), join(path, key), lo, hi);
    }
    int64_t integer_value(const json& v, const std::string& path, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX) const {
        if (!v.is_number_integer()) fail(path, python_repr(v) + " is not of type 'integer'");
        if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)) fail(path, python_repr(v) + " is greater than the maximum of " + std::to_string(hi));
        const int64_t x = v.get<int64_t>();
        if (x < lo) fail(path, python_repr(v) + " is less than the minimum of " + std::to_string(lo));
        if (x > hi) fail(path, python_repr(v) + " is greater than the maximum of " + std::to_string(hi));
        return x;
    }
    // a number with the schema's bounds: lo (exclusive when lo_open) and hi; bounds shown as the schema writes them
    double number(const json& v, const std::string& path, double lo = -HUGE_VAL, double hi = HUGE_VAL, bool lo_open = false,
                  const std::string& lo_text = "", const std::string& hi_text = "") const {
        if (!v.is_number()) fail(path, python_repr(v) + " is not of type 'number'");
        const double x = v.get<double>();
        const std::string low = lo_text.empty() ? python_float(lo) : lo_text, high = hi_text.empty() ? python_float(hi) : hi_text;
        if (lo_open && !(x > lo)) fail(path, python_repr(v) + " is less than or equal to the minimum of " + low);
        if (!lo_open && x < lo) fail(path, python_repr(v) + " is less than the minimum of " + low);
        if (x > hi) fail(path, python_repr(v) + " is greater than the maximum of " + high);
        return x;
    }
    // an integer (a whole float too, as jsonschema's "integer") with bounds beyond int64's (MAX_FLOPS)
    double whole_number(const json& v, const std::string& path, double lo, double hi, const std::string& lo_text, const std::string& hi_text) const {
        if (!v.is_number() || (v.is_number_float() && std::floor(v.get<double>()) != v.get<double>()))
            fail(path, python_repr(v) + " is not of type 'integer'");
        return number(v, path, lo, hi, false, lo_text, hi_text);
    }
    static std::string join(const std::string& path, const std::string& key) { return path.empty() ? key : path + "/" + key; }

private:
    std::string where_;
};

// an LR size [height, width] as engine records write them (engine_records._size): MIN_SIDE..MAX_SIDE, multiples of 4
std::array<int, 2> lr_size(const Validator& v, const json& size, const std::string& path) {
    if (!size.is_array()) v.fail(path, python_repr(size) + " is not of type 'array'");
    if (size.size() < 2) v.fail(path, python_repr(size) + " is too short");
    if (size.size() > 2) v.fail(path, python_repr(size) + " is too long");
    std::array<int, 2> out{};
    for (size_t i = 0; i < 2; ++i) {
        const std::string here = path + "/" + std::to_string(i);
        out[i] = int(v.integer_value(size[i], here, 32, kMaxSide));
        if (out[i] % 4 != 0) v.fail(here, python_repr(size[i]) + " is not a multiple of 4");
    }
    return out;
}

bool is_sha256(const std::string& s) {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

bool known_symbol(const std::string& d) {
    for (const char* name : {"batch", "height", "width", "height4", "width4", "channels", "denoise_stats", "decode_stats"})
        if (d == name) return true;
    return false;
}

std::vector<TensorDesc> parse_tensors(const Validator& v, const json& graph, const std::string& path, const char* key) {
    const json& list = v.require(graph, path, key);
    const std::string here = Validator::join(path, key);
    if (!list.is_array()) v.fail(here, python_repr(list) + " is not of type 'array'");
    if (list.empty()) v.fail(here, "[] should be non-empty");
    if (list.size() > 64) v.fail(here, python_repr(list) + " is too long");
    std::vector<TensorDesc> out;
    for (size_t i = 0; i < list.size(); ++i) {
        const std::string item = here + "/" + std::to_string(i);
        TensorDesc t;
        t.name = v.string(list[i], item, "name");
        t.dtype = v.string(list[i], item, "dtype");
        if (t.dtype != "float32" && t.dtype != "float16" && t.dtype != "bfloat16" && t.dtype != "int64")
            v.fail(item + "/dtype", python_repr(json(t.dtype)) + " is not one of ['float32', 'float16', 'bfloat16', 'int64']");
        const json& shape = v.require(list[i], item, "shape");
        if (!shape.is_array()) v.fail(item + "/shape", python_repr(shape) + " is not of type 'array'");
        if (shape.size() > 8) v.fail(item + "/shape", python_repr(shape) + " is too long");
        for (size_t k = 0; k < shape.size(); ++k) {
            const json& d = shape[k];
            Dim dim;
            // one of: an integer in [1, MAX_DIM] (an integer out of range is named by its bound, as jsonschema's
            // best match does), or a symbolic dim
            if (d.is_number_integer())
                dim.value = v.integer_value(d, item + "/shape/" + std::to_string(k), 1, kMaxDim);
            else if (d.is_string() && known_symbol(d.get<std::string>()))
                dim.symbol = d.get<std::string>();
            else
                v.fail(item + "/shape/" + std::to_string(k), python_repr(d) + " is not valid under any of the given schemas");
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
    return tensor == "tcm_scale" || tensor == "timestep" || tensor == "step_coeffs" || tensor == "weight" || tensor == "shared_norm";
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
                    if (d == "denoise_stats" || d == "decode_stats") {
                        // the statistics' length: an integer (symbols were resolved from norm_stats when parsed)
                        const int64_t size = (d == "denoise_stats" ? m.denoise_stats : m.decode_stats).size;
                        if (t->shape[i].symbol.empty() && t->shape[i].value != size)
                            throw Error(Status::manifest, where + ": " + g.name + "." + w.name + " holds " + std::to_string(t->shape[i].value) +
                                                              " statistics but norm_stats/" + d + "/size says " + std::to_string(size) +
                                                              "; re-run svsr-export --force for this build folder.");
                        same = t->shape[i].symbol.empty();
                    } else if (symbolic) {
                        same = t->shape[i].symbol == d;
                    } else if (exact_dims(w.name)) {
                        same = t->shape[i].symbol.empty() && t->shape[i].value == std::stoll(d);
                    } else {  // channel counts: whatever the manifest says (latent_channels), but fixed
                        same = t->shape[i].symbol.empty() && t->shape[i].value > 0;
                    }
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
static std::string older_schema_problem(const nlohmann::ordered_json& data, const std::string& where) {
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
    const std::string what = older ? "flow scales and GroupNorm statistics shared across tiles changed the graphs" : "its graphs may differ";
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
        data = json::parse(mark_non_finite(text));
    } catch (const json::exception& e) {
        throw Error(Status::manifest, where + " is not valid JSON (" + std::string(e.what()) + "); re-run svsr-export --force.");
    }
    // validate_manifest's order: a non-finite number anywhere first, then another schema_version, then the schema
    if (depth(data) > kMaxDepth)
        throw Error(Status::manifest, where + " nests its JSON too deeply to be an svsr manifest; re-run svsr-export --force.");
    std::string bad_path, bad_value;
    if (non_finite_field(data, "", &bad_path, &bad_value))
        throw Error(Status::manifest, where + " holds " + bad_value + " at " + bad_path +
                                          ", and every number in a manifest must be finite; re-run svsr-export --force for this build folder.");
    Validator v(where);
    if (!data.is_object()) v.fail("", python_repr(data) + " is not of type 'object'");
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
    v.integer(exporter, "exporter", "opset", 17, 1000);
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
        if (!it->is_object()) v.fail(path, python_repr(*it) + " is not of type 'object'");
        GraphEntry g;
        g.name = it.key();
        g.file = v.string(*it, path, "file", kMaxFileName);
        check_inside(build_dir, g.file, "the " + g.name + " graph file", where);
        g.sha256 = v.string(*it, path, "sha256");
        if (!is_sha256(g.sha256)) v.fail(path + "/sha256", python_repr(json(g.sha256)) + " does not match '^[0-9a-f]{64}$'");
        g.inputs = parse_tensors(v, *it, path, "inputs");
        g.outputs = parse_tensors(v, *it, path, "outputs");
        if (it->contains("size_bytes")) v.integer(*it, path, "size_bytes", 0, kMaxBytes);
        const json& flops = v.object(*it, path, "flops");
        const std::string fpath = path + "/flops";
        v.whole_number(v.require(flops, fpath, "per_call"), fpath + "/per_call", 0, kMaxFlops, "0", "1e+21");
        v.integer(flops, fpath, "lr_height", 1, kMaxSide);
        v.integer(flops, fpath, "lr_width", 1, kMaxSide);
        if (flops.contains("linear")) v.number(flops["linear"], fpath + "/linear", -kMaxFlops, kMaxFlops, false, "-1e+21", "1e+21");
        if (flops.contains("quadratic")) v.number(flops["quadratic"], fpath + "/quadratic", 0, kMaxFlops, false, "0", "1e+21");
        m.graphs[g.name] = std::move(g);
    }

    // the statistics vectors of the stats graphs (schema 3): their lengths are the norm_stats dims of the tensors
    const json& norm_stats = v.object(data, "", "norm_stats");
    for (auto it = norm_stats.begin(); it != norm_stats.end(); ++it)
        if (!stats_graph(it.key()))
            v.fail("norm_stats", "Additional properties are not allowed ('" + it.key() + "' was unexpected)");
    for (const char* name : {"denoise_stats", "decode_stats"}) {
        const std::string path = std::string("norm_stats/") + name;
        const json& block = v.object(norm_stats, "norm_stats", name);
        NormStats& stats = std::string(name) == "denoise_stats" ? m.denoise_stats : m.decode_stats;
        stats.size = v.integer(block, path, "size", 2, kMaxDim);
        const json& stride = v.require(block, path, "stride");
        if (!stride.is_number_integer() || !(stride.get<int64_t>() == 1 || stride.get<int64_t>() == 2 || stride.get<int64_t>() == 4 || stride.get<int64_t>() == 8))
            v.fail(path + "/stride", python_repr(stride) + " is not one of [1, 2, 4, 8]");
        stats.stride = int(stride.get<int64_t>());
    }
    for (auto& kv : m.graphs)
        for (auto* tensors : {&kv.second.inputs, &kv.second.outputs})
            for (TensorDesc& t : *tensors)
                for (Dim& d : t.shape)
                    if (d.symbol == "denoise_stats" || d.symbol == "decode_stats") {
                        d.value = (d.symbol == "denoise_stats" ? m.denoise_stats : m.decode_stats).size;
                        d.symbol.clear();
                    }

    // scheduler
    const json& scheduler = v.object(data, "", "scheduler");
    const json& config = v.object(scheduler, "scheduler", "config");
    SchedulerConfig& sc = m.scheduler;
    sc.num_train_timesteps = v.integer(config, "scheduler/config", "num_train_timesteps", 1, kMaxTrainTimesteps);
    sc.prediction_type = v.string(config, "scheduler/config", "prediction_type");
    sc.config_json = config.dump();
    if (sc.prediction_type != "epsilon" && sc.prediction_type != "v_prediction" && sc.prediction_type != "sample")
        v.fail("scheduler/config/prediction_type", python_repr(json(sc.prediction_type)) + " is not one of ['epsilon', 'v_prediction', 'sample']");
    auto optional_string = [&](const char* key, const std::string& fallback) -> std::string {
        if (!config.contains(key)) return fallback;
        const json& val = config[key];
        if (val.is_string()) return val.get<std::string>();
        return val.is_null() ? std::string("None") : val.dump();  // unsupported below, named as Python would
    };
    sc.variance_type = optional_string("variance_type", "fixed_small");
    sc.timestep_spacing = optional_string("timestep_spacing", "leading");
    if (config.contains("steps_offset")) sc.steps_offset = v.integer(config, "scheduler/config", "steps_offset");  // unbounded, as the schema
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
    if (!acp.is_array()) v.fail("scheduler/alphas_cumprod", "expected a non-empty array of numbers");
    if (acp.empty()) v.fail("scheduler/alphas_cumprod", "[] should be non-empty");
    if (int64_t(acp.size()) > kMaxTrainTimesteps) v.fail("scheduler/alphas_cumprod", "the array is too long (more than " + std::to_string(kMaxTrainTimesteps) + " items)");
    m.alphas_cumprod.reserve(acp.size());
    for (size_t i = 0; i < acp.size(); ++i)  // cumulative products of (1 - beta): each in (0, 1]
        m.alphas_cumprod.push_back(static_cast<float>(v.number(acp[i], "scheduler/alphas_cumprod/" + std::to_string(i), 0.0, 1.0, true, "0", "1")));
    if (static_cast<int64_t>(m.alphas_cumprod.size()) != sc.num_train_timesteps)
        throw Error(Status::manifest, where + " has " + std::to_string(m.alphas_cumprod.size()) + " alphas_cumprod values for " +
                                          std::to_string(sc.num_train_timesteps) + " train timesteps; re-run svsr-export.");
    if (scheduler.contains("init_noise_sigma"))
        m.init_noise_sigma = static_cast<float>(v.number(scheduler["init_noise_sigma"], "scheduler/init_noise_sigma", 0.0, 1e6, true, "0", "1000000.0"));

    v.number(v.require(data, "", "vae_scaling_factor"), "vae_scaling_factor", 0.0, 1e6, true, "0", "1000000.0");
    if (data.contains("latent_channels")) m.latent_channels = static_cast<int>(v.integer(data, "", "latent_channels", 1, 64));

    // the size rules every layer applies (sizes.py): a build made under others is refused
    const json& sizes = v.object(data, "", "sizes");
    auto constant = [&](const char* key, int want) {
        const json& value = v.require(sizes, "sizes", key);
        if (!value.is_number_integer() || value.get<int64_t>() != want) v.fail(std::string("sizes/") + key, std::to_string(want) + " was expected");
        return want;
    };
    m.min_side = constant("min_side", 32);
    m.pad_multiple = constant("pad_multiple", 4);
    m.scale = constant("scale", 4);
    if (data.contains("flow") && data["flow"].is_object() && data["flow"].contains("num_flow_updates"))
        v.integer(data["flow"], "flow", "num_flow_updates", 1, 1000);

    // engines: one build record per "<graph>.<precision>"
    if (data.contains("engines")) {
        const json& engines = data["engines"];
        if (!engines.is_object()) v.fail("engines", python_repr(engines) + " is not of type 'object'");
        for (auto it = engines.begin(); it != engines.end(); ++it) {
            const std::string path = "engines/" + it.key();
            EngineRecord r;
            r.key = it.key();
            r.graph = v.string(*it, path, "graph");
            r.precision = v.string(*it, path, "precision");
            r.file = v.string(*it, path, "file", kMaxFileName);
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
            if (it->contains("device_memory_bytes")) r.device_memory_bytes = v.integer(*it, path, "device_memory_bytes", 0, kMaxBytes);
            if (it->contains("profile") && (*it)["profile"].is_object()) {
                const json& p = (*it)["profile"];
                for (const char* key : {"lr_min", "lr_opt", "lr_max"})
                    if (p.contains(key)) lr_size(v, p[key], path + "/profile/" + key);
                auto size = [&](const char* key) -> std::string {
                    if (!p.contains(key) || !p[key].is_array() || p[key].size() != 2) return "?";
                    return p[key][1].dump() + "x" + p[key][0].dump();  // stored (height, width): show WxH
                };
                r.profile_summary = "LR " + size("lr_min") + " .. " + size("lr_max");
                if (size("lr_min") == size("lr_opt") && size("lr_opt") == size("lr_max"))
                    r.profile_frame_args = "--resolution " + size("lr_min");
                else
                    r.profile_frame_args = "--min " + size("lr_min") + " --opt " + size("lr_opt") + " --max " + size("lr_max");
                r.profile_args = r.profile_frame_args;
            }
            // svsr-export --tile HxW: [height, width] of the static tile, or null
            if (it->contains("tile") && !(*it)["tile"].is_null()) {
                const std::array<int, 2> tile = lr_size(v, (*it)["tile"], path + "/tile");
                r.tile_height = tile[0];
                r.tile_width = tile[1];
                if (!r.profile_args.empty()) r.profile_args += " --tile " + std::to_string(tile[0]) + "x" + std::to_string(tile[1]);
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

// -- engines built for one tile shape (svsr-export --tile; engine_records.engine_tile / engine_tile_problem) --
namespace {

const char* const kTiledGraphs[] = {"denoise", "guide_decode", "decode"};

// the engine record `precision` means for `graph`: fixed, or auto = the first of fp16, bf16, fp32 with a
// record (float32-only graphs: fp32), as the TensorRT runner chooses; nullptr when there is none
const EngineRecord* chosen_record(const Manifest& m, const std::string& graph, const std::string& precision) {
    if (float32_only_graph(graph)) {
        auto it = m.engines.find(graph + ".fp32");
        return it == m.engines.end() ? nullptr : &it->second;
    }
    for (const char* candidate : {"fp16", "bf16", "fp32"}) {
        auto it = m.engines.find(graph + "." + (precision == "auto" ? std::string(candidate) : precision));
        if (it != m.engines.end()) return &it->second;
        if (precision != "auto") break;
    }
    return nullptr;
}

std::string tile_text(int h, int w) { return std::to_string(h) + "x" + std::to_string(w); }

// the svsr-export command that rebuilds the engines in use, their tiled graphs with tile h x w (0: over frame sizes)
std::string retile_command(const Manifest& m, const std::string& precision, int h, int w) {
    std::map<std::string, std::string> chosen;
    std::string frames;
    bool lean = false;
    for (const char* graph : kGraphNames) {
        const EngineRecord* r = chosen_record(m, graph, precision);
        chosen[graph] = r ? r->precision : (precision == "auto" ? "fp16" : precision);
        if (r && frames.empty()) frames = r->profile_frame_args;
        lean = lean || (r && r->lean);
    }
    std::string flags = "--precision " + chosen["denoise"];
    if (chosen["guide_decode"] != chosen["denoise"] || chosen["decode"] != chosen["denoise"]) flags += " --vae-precision " + chosen["decode"];
    if (chosen["flow"] != chosen["denoise"]) flags += " --flow-precision " + chosen["flow"];
    std::string cmd = "svsr-export --weights " + (m.checkpoint_source.empty() ? std::string("CHECKPOINT") : m.checkpoint_source) + " " + flags +
                      " --out " + m.build_dir;
    if (!frames.empty()) cmd += " " + frames;
    if (h > 0) cmd += (frames.empty() ? " --resolution WxH" : "") + std::string(" --tile ") + tile_text(h, w);
    return cmd + (lean ? " --lean" : "") + " --force";
}

}  // namespace

std::array<int, 2> engine_tile(const Manifest& m, const std::string& precision) {
    std::array<int, 2> found{0, 0};
    std::string said;
    bool first = true, differ = false;
    for (const char* graph : kTiledGraphs) {
        const EngineRecord* r = chosen_record(m, graph, precision);
        if (!r) continue;
        const std::array<int, 2> tile{r->tile_height, r->tile_width};
        said += std::string(said.empty() ? "" : ", ") + graph + " " + (tile[0] ? tile_text(tile[0], tile[1]) : "frame sizes");
        differ = differ || (!first && tile != found);
        if (first) found = tile;
        first = false;
    }
    if (differ)
        throw Error(Status::manifest, "the TensorRT engines of the tiled graphs were built for different tiles (" + said +
                                          "); rebuild them together with svsr-export --tile HxW --force (or without --tile).");
    return found;
}

std::string engine_tile_problem(const Manifest& m, const std::string& precision, int tile_height, int tile_width, int padded_height,
                                int padded_width) {
    const std::array<int, 2> built = engine_tile(m, precision);
    if (built[0] == 0) return std::string();
    const TileLayout layout = plan_tiles(padded_height, padded_width, tile_height, tile_width);
    if (layout.tile_height == built[0] && layout.tile_width == built[1]) return std::string();
    const std::string engines = "the TensorRT engines in " + m.build_dir + " were built for " + tile_text(built[0], built[1]) +
                                " tiles only (svsr-export --tile " + tile_text(built[0], built[1]) + ")";
    const std::string frame = std::to_string(padded_width) + "x" + std::to_string(padded_height);
    if (padded_height < built[0] || padded_width < built[1])
        return "frames of " + frame + " (padded LR size) are smaller than one tile, and " + engines +
               ", which run that shape only; re-export for engines over frame sizes: " + retile_command(m, precision, 0, 0) + ".";
    if (layout.single()) {
        const std::string what = tile_height == 0 ? std::string("--tile off runs")
                                                  : "--tile " + tile_text(tile_height, tile_width) + " covers the frame, so it runs";
        return what + " whole " + frame + " frames, but " + engines + "; use --tile auto (the build's tiles), or re-export for whole frames: " +
               retile_command(m, precision, 0, 0) + ".";
    }
    return "--tile " + tile_text(tile_height, tile_width) + " runs " + tile_text(layout.tile_height, layout.tile_width) + " tiles, but " + engines +
           "; use --tile " + tile_text(built[0], built[1]) + " (or auto), or re-export for those tiles: " +
           retile_command(m, precision, layout.tile_height, layout.tile_width) + ".";
}

}  // namespace svsr
