// Timesteps and per-step denoise coefficients of the DDPM, DDIM and DPM-Solver++ 2M schedules,
// float32 exactly as svsr/contract/scheduler.py computes them with numpy (its module docstring has
// the formulas: diffusers' set_timesteps / step written as the denoise graph's generalized update).
//
// Exactness: every float32 operation below is one IEEE-754 binary32 operation (+ - * / sqrt are
// correctly rounded), evaluated in the same order as the numpy expressions, with FMA contraction
// disabled (-ffp-contract=off), so the results are bit-identical to numpy's. The timestep grids
// reproduce numpy's float64 linspace/arange arithmetic step by step. DPM-Solver++'s log and exp are
// C's double log/exp rounded to float32, as Python's math.log/math.exp on the same C library.
#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "svsr/host.hpp"

namespace svsr {

const char* const kSchedulers[3] = {"ddpm", "ddim", "dpmpp-2m"};

bool needs_history(const std::string& scheduler) { return scheduler == "dpmpp-2m"; }

int default_steps(const std::string& scheduler) {  // scheduler.DEFAULT_STEPS
    if (scheduler == "ddim") return 25;
    if (scheduler == "dpmpp-2m") return 20;
    return 50;
}

void check_schedule(const Schedule& schedule) {  // scheduler.scheduler_problem
    bool known = false;
    for (const char* name : kSchedulers) known = known || schedule.scheduler == name;
    if (!known)
        throw Error(Status::invalid_argument, "scheduler '" + schedule.scheduler + "' is not one of ddpm, ddim, dpmpp-2m; pick one of them.");
    std::ostringstream eta;
    eta << schedule.eta;
    if (!(schedule.eta >= 0.0 && schedule.eta <= 1.0))
        throw Error(Status::invalid_argument, "eta " + eta.str() + " is outside [0, 1]; use 0 (deterministic, the default) up to 1.");
    if (schedule.eta > 0.0 && schedule.scheduler != "ddim")
        throw Error(Status::invalid_argument, "eta " + eta.str() + " has no effect with the " + schedule.scheduler +
                                                  " scheduler, which adds no eta-scaled noise; leave eta at 0 or use ddim.");
}

void check_scheduler_config(const SchedulerConfig& c) {
    if (c.num_train_timesteps < 1)
        throw Error(Status::manifest, "the scheduler's num_train_timesteps must be at least 1; re-run svsr-export.");
    const std::string& p = c.prediction_type;
    if (p != "epsilon" && p != "v_prediction" && p != "sample")
        throw Error(Status::unsupported, "prediction_type '" + p + "' is not supported (epsilon, v_prediction or sample).");
    const std::string& v = c.variance_type;
    if (v != "fixed_small" && v != "fixed_small_log" && v != "fixed_large")
        throw Error(Status::unsupported,
                    "variance_type '" + v + "' is not supported (fixed_small, fixed_small_log or fixed_large).");
    const std::string& s = c.timestep_spacing;
    if (s != "leading" && s != "linspace" && s != "trailing")
        throw Error(Status::unsupported, "timestep_spacing '" + s + "' is not supported (leading, linspace or trailing).");
    if (c.thresholding)
        throw Error(Status::unsupported,
                    "the scheduler uses dynamic thresholding, which the denoise graph's step does not implement.");
}

namespace {

using json = nlohmann::json;

// numpy's round(): half to even (the default FE_TONEAREST rounding mode of nearbyint).
int64_t round_half_even(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

// np.linspace(0, total - 1, count) as float64: y = arange(count) * step (+ 0.0), y[-1] = stop
std::vector<double> linspace(int64_t total, int64_t count) {
    const double start = 0.0, stop = static_cast<double>(total - 1), delta = stop - start;
    const int64_t div = count - 1;
    std::vector<double> y(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) y[i] = static_cast<double>(i);
    if (div > 0) {
        const double step = delta / static_cast<double>(div);
        if (step == 0.0) {
            for (auto& v : y) v = (v / static_cast<double>(div)) * delta;
        } else {
            for (auto& v : y) v = v * step;
        }
    } else {
        for (auto& v : y) v = v * delta;
    }
    for (auto& v : y) v = v + start;
    if (count > 1) y[count - 1] = stop;
    return y;
}

// scheduler._spaced: `count` timesteps spaced over `total` like DDPMScheduler.set_timesteps (descending)
std::vector<int64_t> spaced(int64_t total, int64_t count, const std::string& spacing, int64_t offset) {
    std::vector<int64_t> steps;
    if (spacing == "linspace") {
        const std::vector<double> y = linspace(total, count);
        for (int64_t i = count - 1; i >= 0; --i) steps.push_back(round_half_even(y[i]));
    } else if (spacing == "leading") {
        const int64_t ratio = total / count;
        for (int64_t i = count - 1; i >= 0; --i) steps.push_back(i * ratio + offset);
    } else if (spacing == "trailing") {  // np.round(np.arange(total, 0, -total / count)).astype(int64) - 1
        const double ratio = static_cast<double>(total) / static_cast<double>(count);
        const double step = -ratio;
        const double length_f = std::ceil(static_cast<double>(0 - total) / step);
        const int64_t length = length_f > 0 ? static_cast<int64_t>(length_f) : 0;
        // numpy's arange: buffer[0] = start, buffer[1] = start + step, then start + i * (buffer[1] - buffer[0])
        const double b0 = static_cast<double>(total);
        const double b1 = b0 + step;
        const double d = b1 - b0;
        for (int64_t i = 0; i < length; ++i) {
            const double v = i == 0 ? b0 : (i == 1 ? b1 : b0 + static_cast<double>(i) * d);
            steps.push_back(round_half_even(v) - 1);
        }
    } else {
        throw Error(Status::unsupported, "timestep_spacing '" + spacing + "' is not supported (leading, linspace or trailing).");
    }
    return steps;
}

void check_count(int64_t total, int num_inference_steps) {
    if (num_inference_steps < 1 || num_inference_steps > total) {
        std::ostringstream msg;
        msg << "num_inference_steps must be in 1.." << total << ", got " << num_inference_steps << ".";
        throw Error(Status::invalid_argument, msg.str());
    }
}

// Python's truthiness of a JSON value, and == between JSON values (numbers and booleans by value)
bool truthy(const json& v) {
    if (v.is_boolean()) return v.get<bool>();
    if (v.is_number()) return v.get<double>() != 0.0;
    if (v.is_null()) return false;
    if (v.is_string()) return !v.get<std::string>().empty();
    return !v.empty();
}
bool py_equal(const json& a, const json& b) {
    const bool an = a.is_number() || a.is_boolean(), bn = b.is_number() || b.is_boolean();
    if (an && bn) return (a.is_boolean() ? double(a.get<bool>()) : a.get<double>()) == (b.is_boolean() ? double(b.get<bool>()) : b.get<double>());
    return a == b;
}
int64_t as_int(const json& v, const char* key) {
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()) return static_cast<int64_t>(v.get<double>());
    if (v.is_boolean()) return v.get<bool>() ? 1 : 0;
    throw Error(Status::unsupported, std::string("the scheduler config's ") + key + " " + v.dump() + " is not an integer; re-export.");
}
std::string as_text(const json& v) { return v.is_string() ? v.get<std::string>() : v.is_null() ? std::string("None") : v.dump(); }

// The DDPM config of the manifest as JSON (its text when parsed from a manifest, else the typed fields).
json ddpm_json(const SchedulerConfig& c) {
    if (!c.config_json.empty()) return json::parse(c.config_json);
    return json{{"num_train_timesteps", c.num_train_timesteps}, {"prediction_type", c.prediction_type}, {"variance_type", c.variance_type},
                {"timestep_spacing", c.timestep_spacing}, {"steps_offset", c.steps_offset}, {"clip_sample", c.clip_sample},
                {"clip_sample_range", c.clip_sample_range}, {"thresholding", c.thresholding}};
}

// scheduler._CLASS_DEFAULTS: __init__ defaults of the diffusers classes for the keys that change the schedule
json class_defaults(const std::string& scheduler) {
    const double inf = std::numeric_limits<double>::infinity();
    if (scheduler == "ddim")
        return json{{"num_train_timesteps", 1000}, {"timestep_spacing", "leading"}, {"steps_offset", 0}, {"prediction_type", "epsilon"},
                    {"clip_sample", true},         {"clip_sample_range", 1.0},      {"set_alpha_to_one", true}, {"thresholding", false},
                    {"rescale_betas_zero_snr", false}};
    return json{{"num_train_timesteps", 1000}, {"timestep_spacing", "linspace"}, {"steps_offset", 0}, {"prediction_type", "epsilon"},
                {"thresholding", false}, {"solver_order", 2}, {"algorithm_type", "dpmsolver++"}, {"solver_type", "midpoint"},
                {"lower_order_final", true}, {"euler_at_final", false}, {"use_karras_sigmas", false}, {"use_exponential_sigmas", false},
                {"use_beta_sigmas", false}, {"use_lu_lambdas", false}, {"use_flow_sigmas", false}, {"final_sigmas_type", "zero"},
                {"lambda_min_clipped", -inf}, {"variance_type", nullptr}, {"rescale_betas_zero_snr", false},
                {"use_dynamic_shifting", false}};
}

// scheduler.effective_config: what from_config(ddpm_config) gives the scheduler's class
json effective_config(const SchedulerConfig& config, const std::string& scheduler) {
    const json ddpm = ddpm_json(config);
    json resolved = class_defaults(scheduler);
    std::vector<std::string> left_out;
    const auto defaults = ddpm.find("_use_default_values");
    if (defaults != ddpm.end() && defaults->is_array())
        for (const json& key : *defaults)
            if (key.is_string()) left_out.push_back(key.get<std::string>());
    for (auto it = resolved.begin(); it != resolved.end(); ++it) {
        const bool omitted = std::find(left_out.begin(), left_out.end(), it.key()) != left_out.end();
        if (ddpm.contains(it.key()) && !omitted) *it = ddpm.at(it.key());
    }
    if (scheduler == "dpmpp-2m" && resolved["lambda_min_clipped"].is_null())  // -inf written to JSON as null
        resolved["lambda_min_clipped"] = -std::numeric_limits<double>::infinity();
    return resolved;
}

// The effective config's timestep rule: (num_train_timesteps, spacing, steps_offset).
struct Spacing {
    int64_t total;
    std::string spacing;
    int64_t offset;
};
Spacing spacing_of(const json& resolved) {
    return {as_int(resolved.at("num_train_timesteps"), "num_train_timesteps"), as_text(resolved.at("timestep_spacing")),
            as_int(resolved.at("steps_offset"), "steps_offset")};
}

// x0 = c_sample * z + c_output * out of DDPM/DDIM, from a_t = acp[t] and b_t = 1 - a_t
void x0_coeffs(const std::string& prediction, float a_t, float b_t, float* c_sample, float* c_output) {
    const float one = 1.0f;
    if (prediction == "v_prediction") {
        *c_sample = std::sqrt(a_t);
        *c_output = -std::sqrt(b_t);
    } else if (prediction == "epsilon") {
        *c_sample = one / std::sqrt(a_t);
        *c_output = -std::sqrt(b_t) / std::sqrt(a_t);
    } else if (prediction == "sample") {
        *c_sample = 0.0f;
        *c_output = one;
    } else {
        throw Error(Status::unsupported, "prediction_type '" + prediction + "' is not supported (epsilon, v_prediction or sample).");
    }
}

float maximum(float a, float b) { return std::isnan(a) || std::isnan(b) ? (std::isnan(a) ? a : b) : (a < b ? b : a); }  // np.maximum

float log32(float x) { return x == 0.0f ? -std::numeric_limits<float>::infinity() : static_cast<float>(std::log(static_cast<double>(x))); }
float exp32(float x) { return static_cast<float>(std::exp(static_cast<double>(x))); }

std::vector<Step> ddpm_steps(const SchedulerConfig& config, const std::vector<float>& acp, const std::vector<int64_t>& ts) {
    const float one = 1.0f;
    const bool fixed_large = config.variance_type == "fixed_large";
    const float clip = config.clip_sample ? static_cast<float>(config.clip_sample_range) : kNoClip;
    std::vector<Step> steps;
    for (size_t index = 0; index < ts.size(); ++index) {
        const int64_t t = ts[index];
        const int64_t prev_t = index + 1 < ts.size() ? ts[index + 1] : -1;
        const float a_t = acp[size_t(t)];
        const float a_p = prev_t >= 0 ? acp[size_t(prev_t)] : one;
        const float b_t = one - a_t;
        const float b_p = one - a_p;
        const float alpha_t = a_t / a_p;
        const float beta_t = one - alpha_t;
        float c_sample, c_output;
        x0_coeffs(config.prediction_type, a_t, b_t, &c_sample, &c_output);
        const float variance = maximum(b_p / b_t * beta_t, 1e-20f);
        const float std_ = fixed_large ? std::sqrt(beta_t) : std::sqrt(variance);
        Step s;
        s.index = static_cast<int>(index);
        s.timestep = t;
        s.has_noise = t > 0;
        s.coeffs = {c_sample, c_output, std::sqrt(a_p) * beta_t / b_t, std::sqrt(alpha_t) * b_p / b_t, t > 0 ? std_ : 0.0f, clip, 0.0f, 0.0f};
        steps.push_back(s);
    }
    return steps;
}

std::vector<Step> ddim_steps(const json& config, const std::vector<float>& acp, const std::vector<int64_t>& ts, double eta) {
    if (truthy(config.at("thresholding")))
        throw Error(Status::unsupported, "DDIM with dynamic thresholding is not supported; use --scheduler ddpm.");
    const float one = 1.0f, zero = 0.0f;
    const std::string prediction = as_text(config.at("prediction_type"));
    const float final_ = truthy(config.at("set_alpha_to_one")) ? one : acp[0];
    const int64_t stride = as_int(config.at("num_train_timesteps"), "num_train_timesteps") / int64_t(ts.size());
    const float eta32 = static_cast<float>(eta);
    const float clip = truthy(config.at("clip_sample")) ? static_cast<float>(config.at("clip_sample_range").get<double>()) : kNoClip;
    std::vector<Step> steps;
    for (size_t index = 0; index < ts.size(); ++index) {
        const int64_t t = ts[index];
        const int64_t prev_t = t - stride;
        const float a_t = acp[size_t(t)];
        const float a_p = prev_t >= 0 ? acp[size_t(prev_t)] : final_;
        const float b_t = one - a_t, b_p = one - a_p;
        const float variance = (b_p / b_t) * (one - a_t / a_p);
        const float std_ = eta32 * std::sqrt(variance);
        const float d = std::sqrt(maximum(one - a_p - std_ * std_, zero));
        float c_sample, c_output, from_sample, from_output;
        x0_coeffs(prediction, a_t, b_t, &c_sample, &c_output);
        if (prediction == "v_prediction") {
            from_sample = d * std::sqrt(b_t);
            from_output = d * std::sqrt(a_t);
        } else if (prediction == "epsilon") {
            from_sample = zero;
            from_output = d;
        } else {  // sample
            from_sample = d / std::sqrt(b_t);
            from_output = -(d * std::sqrt(a_t) / std::sqrt(b_t));
        }
        Step s;
        s.index = static_cast<int>(index);
        s.timestep = t;
        s.has_noise = eta > 0;
        s.coeffs = {c_sample, c_output, std::sqrt(a_p), from_sample, eta > 0 ? std_ : 0.0f, clip, from_output, 0.0f};
        steps.push_back(s);
    }
    return steps;
}

std::vector<Step> dpm_steps(const json& config, const std::vector<float>& acp, const std::vector<int64_t>& ts) {
    // scheduler._DPM_REQUIRED: what the formulas implement
    const json required = {{"thresholding", false}, {"solver_order", 2}, {"algorithm_type", "dpmsolver++"}, {"solver_type", "midpoint"},
                           {"use_karras_sigmas", false}, {"use_exponential_sigmas", false}, {"use_beta_sigmas", false},
                           {"use_lu_lambdas", false}, {"use_flow_sigmas", false}, {"final_sigmas_type", "zero"},
                           {"rescale_betas_zero_snr", false}, {"use_dynamic_shifting", false}};
    for (auto it = required.begin(); it != required.end(); ++it)
        if (!py_equal(config.at(it.key()), *it))
            throw Error(Status::unsupported, "DPM-Solver++ 2M with " + it.key() + " " + config.at(it.key()).dump() +
                                                 " is not supported; use --scheduler ddpm or ddim.");
    const std::string variance_type = as_text(config.at("variance_type"));
    if (variance_type == "learned" || variance_type == "learned_range")
        throw Error(Status::unsupported, "DPM-Solver++ 2M with variance_type " + variance_type + " is not supported; use --scheduler ddpm or ddim.");
    const float one = 1.0f, zero = 0.0f;
    const std::string prediction = as_text(config.at("prediction_type"));
    if (prediction != "v_prediction" && prediction != "epsilon" && prediction != "sample")
        throw Error(Status::unsupported, "prediction_type '" + prediction + "' is not supported (epsilon, v_prediction or sample).");
    const size_t n = ts.size();
    std::vector<float> sigmas(n + 1), alphas(n + 1), s(n + 1), lambdas(n + 1);
    for (size_t i = 0; i < n; ++i) {
        const float a = acp[size_t(ts[i])];
        sigmas[i] = std::sqrt((one - a) / a);
    }
    sigmas[n] = zero;
    for (size_t i = 0; i <= n; ++i) {
        alphas[i] = one / std::sqrt(sigmas[i] * sigmas[i] + one);
        s[i] = sigmas[i] * alphas[i];
        lambdas[i] = log32(alphas[i]) - log32(s[i]);
    }
    std::vector<Step> steps;
    for (size_t index = 0; index < n; ++index) {
        const float h = lambdas[index + 1] - lambdas[index];
        const float big_a = alphas[index + 1] * (exp32(-h) - one);
        const float ratio = s[index + 1] / s[index];
        float c_sample, c_output;
        if (prediction == "v_prediction") {
            c_sample = alphas[index];
            c_output = -s[index];
        } else if (prediction == "epsilon") {
            c_sample = one / alphas[index];
            c_output = -s[index] / alphas[index];
        } else {
            c_sample = zero;
            c_output = one;
        }
        float from_x0, from_history;
        if (index == 0 || index == n - 1) {  // first order: the first step, and the last (final sigma zero)
            from_x0 = -big_a;
            from_history = zero;
        } else {
            const float r0 = (lambdas[index] - lambdas[index - 1]) / h;
            const float big_b = (0.5f * big_a) * (one / r0);
            from_x0 = -(big_a + big_b);
            from_history = big_b;
        }
        Step st;
        st.index = static_cast<int>(index);
        st.timestep = ts[index];
        st.has_noise = false;
        st.coeffs = {c_sample, c_output, from_x0, ratio, 0.0f, kNoClip, 0.0f, from_history};
        steps.push_back(st);
    }
    return steps;
}

}  // namespace

std::vector<int64_t> timesteps(const SchedulerConfig& config, int num_inference_steps) {
    check_scheduler_config(config);
    check_count(config.num_train_timesteps, num_inference_steps);
    return spaced(config.num_train_timesteps, num_inference_steps, config.timestep_spacing, config.steps_offset);
}

std::vector<int64_t> scheduler_timesteps(const SchedulerConfig& config, int num_inference_steps, const std::string& scheduler) {
    if (scheduler == "ddpm") return timesteps(config, num_inference_steps);
    check_schedule(Schedule{scheduler, 0.0});
    check_scheduler_config(config);
    const json resolved = effective_config(config, scheduler);
    const Spacing sp = spacing_of(resolved);
    check_count(sp.total, num_inference_steps);
    if (scheduler == "ddim") return spaced(sp.total, num_inference_steps, sp.spacing, sp.offset);
    if (resolved.at("lambda_min_clipped") != json(-std::numeric_limits<double>::infinity()))
        throw Error(Status::unsupported, "the scheduler's lambda_min_clipped is not supported by DPM-Solver++ 2M; use --scheduler ddpm or ddim.");
    if (sp.spacing == "trailing") return spaced(sp.total, num_inference_steps, sp.spacing, 0);
    if (sp.spacing != "linspace" && sp.spacing != "leading")
        throw Error(Status::unsupported, "timestep_spacing '" + sp.spacing + "' is not supported (leading, linspace or trailing).");
    // n + 1 timesteps spaced as DDPM's, the last (smallest) dropped
    std::vector<int64_t> steps = sp.spacing == "linspace" ? spaced(sp.total, num_inference_steps + 1, "linspace", 0)
                                                          : spaced(sp.total, num_inference_steps + 1, "leading", sp.offset);
    steps.pop_back();
    return steps;
}

std::vector<Step> step_coefficients(const SchedulerConfig& config, const std::vector<float>& acp, int num_inference_steps,
                                    const Schedule& schedule) {
    check_schedule(schedule);
    const std::vector<int64_t> ts = scheduler_timesteps(config, num_inference_steps, schedule.scheduler);
    int64_t largest = ts.empty() ? 0 : ts[0], smallest = largest;
    bool descending = true;
    for (size_t i = 0; i < ts.size(); ++i) {
        largest = std::max(largest, ts[i]);
        smallest = std::min(smallest, ts[i]);
        if (i > 0 && ts[i] >= ts[i - 1]) descending = false;
    }
    if (largest >= int64_t(acp.size())) {  // 'leading' spacing plus steps_offset can step past the table
        std::ostringstream msg;
        msg << num_inference_steps << " steps reach timestep " << largest << ", beyond the scheduler's " << acp.size()
            << " training timesteps (its steps_offset shifts them); use fewer steps.";
        throw Error(Status::invalid_argument, msg.str());
    }
    if (int64_t(ts.size()) != num_inference_steps || smallest < 0 || !descending) {
        std::ostringstream msg;
        msg << num_inference_steps << " steps give repeated or negative " << schedule.scheduler << " timesteps; use fewer steps.";
        throw Error(Status::invalid_argument, msg.str());
    }
    if (schedule.scheduler == "ddim") return ddim_steps(effective_config(config, "ddim"), acp, ts, schedule.eta);
    if (schedule.scheduler == "dpmpp-2m") return dpm_steps(effective_config(config, "dpmpp-2m"), acp, ts);
    return ddpm_steps(config, acp, ts);
}

}  // namespace svsr
