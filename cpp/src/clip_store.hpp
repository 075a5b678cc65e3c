// The host clip store (svsr/runtime/sampling/clip_store.py): every frame's state between the runner's fixed
// slots, in RAM up to a byte budget and beyond it in files of the work folder, so host memory is
// bounded whatever the clip length.
//
// * Items in RAM are handed out by pointer (uploads read them, downloads land in them): no copy.
// * Items in a file are read with pread into one of two read slots, and written through a few
//   pending slots: a download lands in a pending slot, and commit() writes it to the file once the
//   runner's synchronize() has returned. pread/pwrite rather than mmap: touched pages of a mapping
//   count towards RSS, page-cache pages of a file do not.
// * Spill files are unlinked as soon as they are created: nothing is left behind, even after a crash.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "svsr/host.hpp"

namespace svsr {

// An unlinked temporary file in the work folder.
class SpillFile {
public:
    SpillFile(const std::string& dir, const std::string& name);
    ~SpillFile();
    SpillFile(const SpillFile&) = delete;
    SpillFile& operator=(const SpillFile&) = delete;
    void reserve(uint64_t bytes);  // allocates the blocks now, so a full disk fails here, in one sentence
    void write(const void* data, size_t bytes, uint64_t offset);
    void read(void* data, size_t bytes, uint64_t offset) const;
    uint64_t size() const { return size_; }

private:
    [[noreturn]] void fail(const char* what, int err, uint64_t bytes) const;
    std::string dir_;
    int fd_ = -1;
    uint64_t size_ = 0;
};

// `count` float32 items of one size, indexed by frame: items [0, ram_items) in RAM, the rest in a file.
class ClipArray {
public:
    ClipArray(std::string name, size_t item_floats, std::string dir);
    ClipArray(const ClipArray&) = delete;
    ClipArray& operator=(const ClipArray&) = delete;

    // count < 0: not known yet (the array grows as items are written). Frees what was held.
    void place(int count, int ram_items);
    void set_count(int count);  // the count of an array placed with count < 0, once known
    size_t item_bytes() const { return item_floats_ * sizeof(float); }
    int ram_items() const { return ram_items_; }

    // Item k for reading: valid until the second read after this one, or a write_target(k).
    const float* read(int k);
    // Where item k is to be written: the item in RAM, or a pending slot; nullptr when every pending
    // slot is taken (synchronize the runner, commit(), ask again).
    float* write_target(int k);
    // Writes the pending slots to the file (only once whatever writes into them has finished).
    void commit();
    bool has_pending() const { return !pending_.empty(); }

    uint64_t ram_bytes() const;   // as placed
    uint64_t file_bytes() const;

private:
    struct Slot {
        std::unique_ptr<float[]> data;
        int item = -1;
        uint64_t used = 0;  // read slots: last use, for LRU
    };
    SpillFile& file();
    uint64_t offset(int k) const { return uint64_t(k - ram_items_) * item_bytes(); }
    void check_index(int k) const;

    std::string name_, dir_;
    size_t item_floats_;
    int count_ = -1, ram_items_ = 0;
    std::vector<std::unique_ptr<float[]>> ram_;  // allocated on first write
    std::unique_ptr<SpillFile> file_;
    Slot read_slots_[2];
    std::vector<Slot> pending_slots_;
    std::vector<int> pending_;  // indices into pending_slots_ holding an uncommitted item
    uint64_t reads_ = 0;
};

// The clip's LR inputs, latest latents, forward/backward flows and, for multistep schedules
// (dpmpp-2m), two x0 history planes by step parity (step s reads plane s % 2 and writes plane
// (s + 1) % 2). The budget goes to the LR frames first (as they are read, before the clip length is
// known), then the latents, the history planes, then the flows.
class ClipStore {
public:
    ClipStore(const HostMemoryOptions& options, size_t lr_floats, size_t z_floats, size_t flow_floats);
    // Once every frame is read: places the latents, history planes (with_history; else empty) and
    // flows, reserving their file space.
    void frames_known(int n, bool with_history = false);
    void commit();  // every array's pending slots (after the runner's synchronize)
    HostMemoryUse use() const;

    ClipArray lr, z, fwd, bwd;
    ClipArray history[2];

private:
    uint64_t budget_;
};

}  // namespace svsr
