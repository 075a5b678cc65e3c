// Step coefficients and sweep order against goldens written by make_golden.py from the Python
// contracts (svsr/contract/scheduler.py, sweeps.py). Coefficients must be float32 bit-identical.
//   test_scheduler scheduler.json
//   test_scheduler --calls frame_calls.json
#include <nlohmann/json.hpp>

#include "check.hpp"

using json = nlohmann::json;

namespace {

uint32_t float_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

svsr::SchedulerConfig config_from(const json& c) {
    svsr::SchedulerConfig s;
    s.num_train_timesteps = c.at("num_train_timesteps").get<int64_t>();
    s.prediction_type = c.value("prediction_type", std::string("epsilon"));
    s.variance_type = c.value("variance_type", std::string("fixed_small"));
    s.timestep_spacing = c.value("timestep_spacing", std::string("leading"));
    s.steps_offset = c.value("steps_offset", int64_t(0));
    s.clip_sample = c.value("clip_sample", false);
    s.clip_sample_range = c.value("clip_sample_range", 1.0);
    s.config_json = c.dump();  // ddim and dpmpp-2m read the whole config, as diffusers' from_config
    return s;
}

int check_scheduler(const json& golden) {
    int runs = 0, steps_checked = 0, refusals = 0;
    for (const json& c : golden.at("cases")) {
        const std::string name = c.at("name").get<std::string>();
        const svsr::SchedulerConfig config = config_from(c.at("config"));
        std::vector<float> acp;
        for (const json& a : golden.at("tables").at(c.at("alphas_cumprod").get<std::string>())) acp.push_back(static_cast<float>(a.get<double>()));
        svsr::Schedule schedule;
        schedule.scheduler = c.value("scheduler", std::string("ddpm"));
        schedule.eta = c.value("eta", 0.0);
        for (const json& run : c.at("runs")) {
            const int count = run.at("num_inference_steps").get<int>();
            if (run.contains("error")) {  // Python refuses this count: so must the C++, in a sentence of its own
                bool refused = false;
                try {
                    svsr::step_coefficients(config, acp, count, schedule);
                } catch (const svsr::Error& e) {
                    refused = e.status() == svsr::Status::invalid_argument || e.status() == svsr::Status::unsupported;
                }
                CHECK_MSG(refused, name + " S=" + std::to_string(count) + ": not refused, Python says: " + run.at("error").get<std::string>());
                ++refusals;
                continue;
            }
            const std::vector<svsr::Step> got = svsr::step_coefficients(config, acp, count, schedule);
            CHECK_MSG(count < 2 || schedule.scheduler != "dpmpp-2m" || count < 3 || got[1].reads_history(), name + ": dpmpp-2m step 1 reads no history");
            const json& want = run.at("steps");
            CHECK_MSG(got.size() == want.size(), name + " S=" + std::to_string(count) + ": " + std::to_string(got.size()) + " steps, want " +
                                                     std::to_string(want.size()));
            bool same = got.size() == want.size();
            std::string first;
            for (size_t i = 0; same && i < got.size(); ++i) {
                const json& w = want[i];
                bool ok = got[i].index == int(i) && got[i].timestep == w[0].get<int64_t>() && int(got[i].has_noise) == w[1].get<int>();
                for (int j = 0; ok && j < svsr::kNumStepCoeffs; ++j) ok = float_bits(got[i].coeffs[j]) == w[2 + j].get<uint32_t>();
                if (!ok) {
                    same = false;
                    std::ostringstream msg;
                    msg << "step " << i << " (t=" << got[i].timestep << ", want " << w[0] << "): coeffs";
                    for (int j = 0; j < svsr::kNumStepCoeffs; ++j)
                        msg << " " << std::hexfloat << got[i].coeffs[j] << "/0x" << std::hex << float_bits(got[i].coeffs[j]) << " vs 0x"
                            << w[2 + j].get<uint32_t>() << std::dec;
                    first = msg.str();
                }
                ++steps_checked;
            }
            CHECK_MSG(same, name + " S=" + std::to_string(count) + ": " + first);
            ++runs;
        }
    }
    std::printf("scheduler golden: %d runs, %d steps compared bit for bit, %d refusals\n", runs, steps_checked, refusals);
    return runs;
}

int check_calls(const json& golden) {
    int sizes = 0;
    for (const json& size : golden.at("sizes")) {
        const int n = size.at("num_frames").get<int>(), s = size.at("num_steps").get<int>();
        const std::vector<svsr::FrameCall> got = svsr::frame_calls(n, s);
        const json& want = size.at("calls");
        bool same = got.size() == want.size();
        for (size_t i = 0; same && i < got.size(); ++i) {
            const json& w = want[i];
            same = got[i].step == w[0].get<int>() && got[i].position == w[1].get<int>() && got[i].frame == w[2].get<int>() &&
                   (got[i].forward ? "fwd" : "bwd") == w[3].get<std::string>() && got[i].flow_index == w[4].get<int>() &&
                   got[i].uses_tcm() == (w[4].get<int>() >= 0);
        }
        CHECK_MSG(same, "frame_calls(" + std::to_string(n) + ", " + std::to_string(s) + ")");
        ++sizes;
    }
    std::printf("frame_calls golden: %d sizes compared\n", sizes);
    return sizes;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 3 && std::string(argv[1]) == "--calls") {
        CHECK(check_calls(json::parse(check::read_file(argv[2]))) >= 1);
        return check::finish("test_scheduler --calls");
    }
    if (argc != 2) {
        std::fprintf(stderr, "usage: test_scheduler scheduler.json | --calls frame_calls.json\n");
        return 2;
    }
    CHECK(check_scheduler(json::parse(check::read_file(argv[1]))) >= 1);

    // refusals
    svsr::SchedulerConfig c;
    c.prediction_type = "v_prediction";
    std::vector<float> acp(1000, 0.5f);
    CHECK_THROWS(svsr::timesteps(c, 0), svsr::Status::invalid_argument, "num_inference_steps must be in 1..1000");
    CHECK_THROWS(svsr::timesteps(c, 1001), svsr::Status::invalid_argument, "got 1001");
    c.steps_offset = 1;
    CHECK_THROWS(svsr::step_coefficients(c, acp, 1000), svsr::Status::invalid_argument,
                 "1000 steps reach timestep 1000, beyond the scheduler's 1000 training timesteps");
    c.steps_offset = 0;
    c.timestep_spacing = "karras";
    CHECK_THROWS(svsr::timesteps(c, 10), svsr::Status::unsupported, "timestep_spacing 'karras'");
    c.timestep_spacing = "leading";
    c.variance_type = "learned_range";
    CHECK_THROWS(svsr::step_coefficients(c, acp, 10), svsr::Status::unsupported, "variance_type 'learned_range'");
    c.variance_type = "fixed_small";
    c.prediction_type = "flow";
    CHECK_THROWS(svsr::step_coefficients(c, acp, 10), svsr::Status::unsupported, "prediction_type 'flow'");
    c.prediction_type = "epsilon";
    c.thresholding = true;
    CHECK_THROWS(svsr::step_coefficients(c, acp, 10), svsr::Status::unsupported, "thresholding");
    // schedules: names, eta, and which ones keep a history
    c = svsr::SchedulerConfig();
    svsr::Schedule sched;
    sched.scheduler = "euler";
    CHECK_THROWS(svsr::step_coefficients(c, acp, 10, sched), svsr::Status::invalid_argument, "scheduler 'euler' is not one of ddpm, ddim, dpmpp-2m");
    sched.scheduler = "ddim";
    sched.eta = -0.1;
    CHECK_THROWS(svsr::step_coefficients(c, acp, 10, sched), svsr::Status::invalid_argument, "eta -0.1 is outside [0, 1]");
    sched.scheduler = "dpmpp-2m";
    sched.eta = 0.5;
    CHECK_THROWS(svsr::step_coefficients(c, acp, 10, sched), svsr::Status::invalid_argument, "has no effect with the dpmpp-2m scheduler");
    CHECK(svsr::needs_history("dpmpp-2m") && !svsr::needs_history("ddim") && !svsr::needs_history("ddpm"));
    CHECK(svsr::default_steps("ddpm") == 50 && svsr::default_steps("ddim") == 25 && svsr::default_steps("dpmpp-2m") == 20);
    // DPM-Solver++ options the formulas do not implement
    c.config_json = R"({"num_train_timesteps": 1000, "solver_order": 3})";
    sched.eta = 0.0;
    CHECK_THROWS(svsr::step_coefficients(c, acp, 10, sched), svsr::Status::unsupported, "DPM-Solver++ 2M with solver_order 3 is not supported");
    c.config_json = R"({"num_train_timesteps": 1000, "use_karras_sigmas": true})";
    CHECK_THROWS(svsr::step_coefficients(c, acp, 10, sched), svsr::Status::unsupported, "use_karras_sigmas true");
    c.config_json = R"({"num_train_timesteps": 1000, "lambda_min_clipped": -5.0})";
    CHECK_THROWS(svsr::step_coefficients(c, acp, 10, sched), svsr::Status::unsupported, "lambda_min_clipped");
    c.config_json = R"({"num_train_timesteps": 1000, "lambda_min_clipped": null, "solver_order": 2.0})";
    CHECK(svsr::step_coefficients(c, acp, 10, sched).size() == 10);
    return check::finish("test_scheduler");
}
