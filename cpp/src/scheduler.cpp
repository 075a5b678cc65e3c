// DDPM timesteps and per-step denoise coefficients, float32 exactly as svsr/contract/scheduler.py
// computes them with numpy (diffusers' DDPMScheduler.set_timesteps / step).
//
// Exactness: every float32 operation below is one IEEE-754 binary32 operation (+ - * / sqrt are
// correctly rounded), evaluated in the same order as the numpy expressions, with FMA contraction
// disabled (-ffp-contract=off), so the results are bit-identical to numpy's. The timestep grids
// reproduce numpy's float64 linspace/arange arithmetic step by step.
#include <cmath>
#include <sstream>

#include "svsr/host.hpp"

namespace svsr {

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
                    "the scheduler uses dynamic thresholding, which the denoise graph's DDPM step does not implement.");
}

namespace {

// numpy's round(): half to even (the default FE_TONEAREST rounding mode of nearbyint).
int64_t round_half_even(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

}  // namespace

std::vector<int64_t> timesteps(const SchedulerConfig& config, int num_inference_steps) {
    check_scheduler_config(config);
    const int64_t total = config.num_train_timesteps;
    const int64_t n = num_inference_steps;
    if (n < 1 || n > total) {
        std::ostringstream msg;
        msg << "num_inference_steps must be in 1.." << total << ", got " << num_inference_steps << ".";
        throw Error(Status::invalid_argument, msg.str());
    }
    std::vector<int64_t> steps;
    const std::string& spacing = config.timestep_spacing;
    if (spacing == "linspace") {
        // np.linspace(0, total - 1, n): y = arange(n) * step (+ 0.0), y[-1] = stop; then round, reverse.
        const double start = 0.0, stop = static_cast<double>(total - 1), delta = stop - start;
        const int64_t div = n - 1;
        std::vector<double> y(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) y[i] = static_cast<double>(i);
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
        if (n > 1) y[n - 1] = stop;
        for (int64_t i = n - 1; i >= 0; --i) steps.push_back(round_half_even(y[i]));
    } else if (spacing == "leading") {
        const int64_t ratio = total / n;
        for (int64_t i = n - 1; i >= 0; --i) steps.push_back(i * ratio + config.steps_offset);
    } else {  // trailing: np.round(np.arange(total, 0, -total / n)).astype(int64) - 1
        const double ratio = static_cast<double>(total) / static_cast<double>(n);
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
    }
    return steps;
}

std::vector<Step> step_coefficients(const SchedulerConfig& config, const std::vector<float>& acp,
                                    int num_inference_steps) {
    const std::vector<int64_t> ts = timesteps(config, num_inference_steps);
    const int64_t size = static_cast<int64_t>(acp.size());
    auto at = [&](int64_t t) -> float {  // numpy indexing: negative indices wrap, too large ones fail
        const int64_t i = t < 0 ? t + size : t;
        if (i < 0 || i >= size) {
            std::ostringstream msg;
            msg << "timestep " << t << " of " << num_inference_steps << " steps (timestep_spacing "
                << config.timestep_spacing << ", steps_offset " << config.steps_offset << ") is outside the "
                << size << " alphas_cumprod values; use fewer steps.";
            throw Error(Status::invalid_argument, msg.str());
        }
        return acp[static_cast<size_t>(i)];
    };
    const float one = 1.0f;
    const bool v_prediction = config.prediction_type == "v_prediction";
    const bool epsilon = config.prediction_type == "epsilon";
    const bool fixed_large = config.variance_type == "fixed_large";
    const float clip = config.clip_sample ? static_cast<float>(config.clip_sample_range) : kNoClip;

    std::vector<Step> steps;
    steps.reserve(ts.size());
    for (size_t index = 0; index < ts.size(); ++index) {
        const int64_t t = ts[index];
        const int64_t prev_t = index + 1 < ts.size() ? ts[index + 1] : -1;
        const float a_t = at(t);
        const float a_p = prev_t >= 0 ? at(prev_t) : one;
        const float b_t = one - a_t;
        const float b_p = one - a_p;
        const float alpha_t = a_t / a_p;
        const float beta_t = one - alpha_t;
        float c_sample, c_output;
        if (v_prediction) {
            c_sample = std::sqrt(a_t);
            c_output = -std::sqrt(b_t);
        } else if (epsilon) {
            c_sample = one / std::sqrt(a_t);
            c_output = -std::sqrt(b_t) / std::sqrt(a_t);
        } else {  // sample
            c_sample = 0.0f;
            c_output = one;
        }
        const float ratio = b_p / b_t * beta_t;
        const float floor_ = 1e-20f;
        // np.maximum propagates NaN from either side
        const float variance = std::isnan(ratio) ? ratio : (ratio < floor_ ? floor_ : ratio);
        const float std_ = fixed_large ? std::sqrt(beta_t) : std::sqrt(variance);
        Step s;
        s.index = static_cast<int>(index);
        s.timestep = t;
        s.has_noise = t > 0;
        s.coeffs = {c_sample, c_output, std::sqrt(a_p) * beta_t / b_t, std::sqrt(alpha_t) * b_p / b_t,
                    t > 0 ? std_ : 0.0f, clip};
        steps.push_back(s);
    }
    return steps;
}

}  // namespace svsr
