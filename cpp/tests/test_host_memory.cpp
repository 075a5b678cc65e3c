// Host memory of svsr-host-like upscaling (svsr_upscale_stream_u8 through the C ABI, frames made on
// the fly, output frames hashed as they come) with a stand-in runner: under a small host-memory
// budget the peak RSS of a 300-frame clip is within a few MB of a 30-frame one, and the frames are
// the same whether the clip state is in files or in RAM. Each clip runs in a child process (a fresh
// VmHWM).
//   test_host_memory FIXTURE_DIR                       the checks (runs the children)
//   test_host_memory FIXTURE_DIR --child N BUDGET      one clip: prints "hwm_kib ram files digest"
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cinttypes>

#include "fixtures.hpp"
#include "svsr.h"

extern char** environ;

namespace {

constexpr int kHeight = 32, kWidth = 32, kSteps = 2;
constexpr uint64_t kSmallBudget = uint64_t(1) << 20, kLargeBudget = uint64_t(1) << 30;

// The test double: svsr's callback runner over the stand-in graphs of fixtures.hpp (simple
// arithmetic on host vectors), delivering downloads at once like a synchronous runner.
struct ArithmeticRunnerDouble {
    fixtures::FakeRunner runner;
    ArithmeticRunnerDouble() {
        runner.record_calls = false;
        runner.deliver_at_once = true;
    }
};

ArithmeticRunnerDouble& self(void* u) { return *static_cast<ArithmeticRunnerDouble*>(u); }

svsr_runner_callbacks callbacks(ArithmeticRunnerDouble* d) {
    svsr_runner_callbacks t{};
    t.abi_version = SVSR_ABI_VERSION;
    t.user = d;
    t.allocate = [](void* u, const char* label, const int64_t* shape, int ndim, svsr_dtype, svsr_buffer* out) {
        *out = self(u).runner.allocate(label, std::vector<int64_t>(shape, shape + ndim));
        return 0;
    };
    t.upload = [](void* u, svsr_buffer b, const void* host, size_t bytes) {
        self(u).runner.upload(b, host, bytes);
        return 0;
    };
    t.download = [](void* u, svsr_buffer b, void* host, size_t bytes) {
        self(u).runner.download(b, host, bytes);
        return 0;
    };
    t.run = [](void* u, const char* graph, const char* const* in_names, const svsr_buffer* in, int n_in, const char* const* out_names,
               const svsr_buffer* out, int n_out) {
        std::vector<svsr::Binding> i, o;
        for (int k = 0; k < n_in; ++k) i.push_back({in_names[k], in[k]});
        for (int k = 0; k < n_out; ++k) o.push_back({out_names[k], out[k]});
        self(u).runner.run(graph, i, o);
        return 0;
    };
    t.synchronize = [](void* u) {
        self(u).runner.synchronize();
        return 0;
    };
    t.free = [](void* u, svsr_buffer b) { self(u).runner.free(b); };
    return t;
}

struct Clip {
    int frames = 0;
    uint64_t digest = 1469598103934665603ull;  // FNV-1a over every output byte
    int written = 0;
};

long vm_hwm_kib() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

int child(const std::string& dir, int n, uint64_t budget) {
    ArithmeticRunnerDouble runner;
    const svsr_runner_callbacks table = callbacks(&runner);
    svsr_open_options options{};
    options.struct_size = sizeof(options);
    options.skip_file_checks = 1;
    svsr_upscaler* up = nullptr;
    if (svsr_open_ex((dir + "/build").c_str(), &table, &options, &up) != SVSR_OK) {
        std::fprintf(stderr, "open: %s\n", svsr_last_error(nullptr));
        return 1;
    }
    if (svsr_set_host_memory(up, budget, (dir + "/work").c_str()) != SVSR_OK) return 1;
    Clip clip;
    clip.frames = n;
    auto read = [](void* u, int index, uint8_t* frame) {
        const Clip& c = *static_cast<Clip*>(u);
        if (index >= c.frames) return 0;
        uint32_t s = uint32_t(index) * 2654435761u + 12345u;  // a different frame each index, made on the fly
        for (int i = 0; i < kHeight * kWidth * 3; ++i) {
            s = s * 1664525u + 1013904223u;
            frame[i] = uint8_t(s >> 24);
        }
        return 1;
    };
    auto write = [](void* u, int index, const uint8_t* frame) {
        Clip& c = *static_cast<Clip*>(u);
        if (index != c.written++) return 1;
        for (int i = 0; i < 16 * kHeight * kWidth * 3; ++i) c.digest = (c.digest ^ frame[i]) * 1099511628211ull;
        return 0;
    };
    if (svsr_upscale_stream_u8(up, kHeight, kWidth, kSteps, 5, read, write, &clip) != SVSR_OK || clip.written != n) {
        std::fprintf(stderr, "upscale: %s\n", svsr_last_error(up));
        return 1;
    }
    uint64_t in_ram = 0, in_files = 0;
    svsr_host_memory_used(up, &in_ram, &in_files);
    svsr_close(up);
    std::printf("%ld %" PRIu64 " %" PRIu64 " %016" PRIx64 "\n", vm_hwm_kib(), in_ram, in_files, clip.digest);
    return 0;
}

struct Result {
    long hwm_kib = -1;
    uint64_t in_ram = 0, in_files = 0;
    std::string digest;
};

Result run_child(const std::string& dir, int n, uint64_t budget) {
    int fds[2];
    Result r;
    if (::pipe(fds) != 0) return r;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    const std::string exe = "/proc/self/exe", count = std::to_string(n), bytes = std::to_string(budget);
    std::vector<char*> argv = {const_cast<char*>("test_host_memory"), const_cast<char*>(dir.c_str()), const_cast<char*>("--child"),
                               const_cast<char*>(count.c_str()), const_cast<char*>(bytes.c_str()), nullptr};
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, exe.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    std::string out;
    char buf[256];
    for (ssize_t got; (got = ::read(fds[0], buf, sizeof(buf))) > 0;) out.append(buf, size_t(got));
    ::close(fds[0]);
    int status = 0;
    if (rc != 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return r;
    std::istringstream in(out);
    in >> r.hwm_kib >> r.in_ram >> r.in_files >> r.digest;
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) return 2;
    const std::string dir = argv[1];
    if (argc == 5 && std::string(argv[2]) == "--child") return child(dir, std::atoi(argv[3]), std::strtoull(argv[4], nullptr, 10));

    ::mkdir(dir.c_str(), 0755);
    ::mkdir((dir + "/build").c_str(), 0755);
    ::mkdir((dir + "/work").c_str(), 0755);
    check::write_file(dir + "/build/manifest.json", fixtures::valid_manifest().dump());

    const Result small30 = run_child(dir, 30, kSmallBudget), small300 = run_child(dir, 300, kSmallBudget);
    const Result large30 = run_child(dir, 30, kLargeBudget), large300 = run_child(dir, 300, kLargeBudget);
    for (const Result* r : {&small30, &small300, &large30, &large300}) CHECK_MSG(r->hwm_kib > 0, "a child failed");
    std::printf("peak RSS (VmHWM) with a %" PRIu64 " KiB budget: 30 frames %ld KiB, 300 frames %ld KiB (+%ld KiB); "
                "all in RAM: 30 frames %ld KiB, 300 frames %ld KiB\n",
                kSmallBudget >> 10, small30.hwm_kib, small300.hwm_kib, small300.hwm_kib - small30.hwm_kib, large30.hwm_kib,
                large300.hwm_kib);
    std::printf("clip state of 300 frames: %" PRIu64 " KiB in RAM + %" PRIu64 " KiB in files (budget %" PRIu64 " KiB); %" PRIu64
                " KiB in RAM (budget 1 GiB)\n",
                small300.in_ram >> 10, small300.in_files >> 10, kSmallBudget >> 10, large300.in_ram >> 10);

    // flat: 270 more frames (~76 MB more clip state) add at most 3 MiB of peak RSS
    CHECK_MSG(small300.hwm_kib - small30.hwm_kib <= 3 * 1024, std::to_string(small300.hwm_kib - small30.hwm_kib) + " KiB more");
    CHECK(small300.in_ram <= kSmallBudget && small300.in_files > 60 * 1048576ull);
    // the measurement sees clip state held in RAM
    CHECK_MSG(large300.hwm_kib - small300.hwm_kib > 60 * 1024, "the all-in-RAM clip should show its ~76 MB");
    CHECK(large300.in_files == 0 && large30.in_files == 0);
    // the same frames whether spilled or in RAM
    CHECK(!small30.digest.empty() && small30.digest == large30.digest);
    CHECK(!small300.digest.empty() && small300.digest == large300.digest);
    return check::finish("test_host_memory");
}
