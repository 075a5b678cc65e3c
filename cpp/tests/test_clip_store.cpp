// The clip store's pieces: memory sizes as --host-memory takes them, and a ClipArray split between
// RAM and a file (pointers into RAM, pending slots committed to the file, reads after writes).
#include <sys/stat.h>

#include "check.hpp"
#include "clip_store.hpp"

int main() {
    // --host-memory sizes (svsr.runtime.sampling.clip_store.parse_memory_size)
    CHECK(svsr::parse_memory_size("512M") == 512ull << 20);
    CHECK(svsr::parse_memory_size("8G") == 8ull << 30);
    CHECK(svsr::parse_memory_size("1.5g") == 3ull << 29);
    CHECK(svsr::parse_memory_size(" 2GiB ") == 2ull << 30);
    CHECK(svsr::parse_memory_size("64KB") == 64ull << 10);
    CHECK(svsr::parse_memory_size("65536") == 65536);
    for (const char* bad : {"", "0", "-1G", "lots", "1X", "nanG", "infM", "1e30T"})
        CHECK_THROWS(svsr::parse_memory_size(bad, "--host-memory"), svsr::Status::invalid_argument, "is not a memory size");
    CHECK(svsr::default_host_memory() >= 256ull << 20);

    // 5 items of 3 floats, 2 in RAM
    svsr::ClipArray a("test", 3, "/tmp");
    a.place(5, 2);
    CHECK(a.ram_bytes() == 2 * 12 && a.file_bytes() == 3 * 12);
    float* r0 = a.write_target(0);
    CHECK(a.write_target(0) == r0 && !a.has_pending());  // RAM: the item itself
    for (int k = 0; k < 5; ++k) {
        float* p = a.write_target(k);
        CHECK(p != nullptr);
        for (int i = 0; i < 3; ++i) p[i] = float(10 * k + i);
    }
    CHECK(a.has_pending());
    CHECK_THROWS(a.read(3), svsr::Status::internal, "before its write was committed");
    a.commit();
    bool same = true;
    for (int k = 4; k >= 0; --k)
        for (int i = 0; i < 3; ++i) same = same && a.read(k)[i] == float(10 * k + i);
    CHECK(same);
    CHECK(a.read(0) == r0);
    // a new value of a file item replaces the cached read once committed
    const float* cached = a.read(3);
    CHECK(cached[0] == 30.0f);
    a.write_target(3)[0] = 31.0f;
    a.commit();
    CHECK(a.read(3)[0] == 31.0f);
    CHECK_THROWS(a.read(5), svsr::Status::internal, "out of range");

    // pending slots run out: 8 at most, then nullptr until commit()
    svsr::ClipArray b("test", 1, "/tmp");
    b.place(20, 0);
    int taken = 0;
    while (b.write_target(taken)) ++taken;
    CHECK_MSG(taken == 8, std::to_string(taken) + " pending slots");
    b.commit();
    CHECK(b.write_target(taken) != nullptr);

    // growing (the LR frames, before the clip length is known)
    svsr::ClipArray c("test", 2, "/tmp");
    c.place(-1, 3);
    for (int k = 0; k < 6; ++k) {
        float* p = c.write_target(k);
        p[0] = float(k);
        p[1] = -float(k);
        c.commit();
    }
    c.set_count(6);
    CHECK(c.ram_bytes() == 3 * 8 && c.file_bytes() == 3 * 8);
    same = true;
    for (int k = 0; k < 6; ++k) same = same && c.read(k)[0] == float(k) && c.read(k)[1] == -float(k);
    CHECK(same);

    // a work folder that does not exist: one sentence naming it
    svsr::ClipArray d("test", 2, "/nonexistent-svsr-work");
    CHECK_THROWS(d.place(2, 0), svsr::Status::input, "cannot create a file for the clip state in the work folder /nonexistent-svsr-work");
    return check::finish("test_clip_store");
}
