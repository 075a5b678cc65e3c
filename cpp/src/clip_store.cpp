// The host clip store (see clip_store.hpp) and the host-memory options.
#include "clip_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace svsr {

namespace {

constexpr uint64_t kMiB = uint64_t(1) << 20;
constexpr uint64_t kPendingBytes = 64 * kMiB;  // pending slots per array: up to 8, at most ~64 MiB
constexpr int kMaxPending = 8;

std::string default_work_dir() {
    const char* tmp = std::getenv("TMPDIR");
    return tmp && *tmp ? tmp : "/tmp";
}

std::string mib(uint64_t bytes) { return std::to_string((bytes + kMiB / 2) / kMiB) + " MiB"; }

}  // namespace

uint64_t default_host_memory() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    uint64_t kib = 0;
    std::string unit;
    while (in >> key >> kib >> unit)
        if (key == "MemAvailable:") return std::max<uint64_t>(256 * kMiB, kib * 1024 / 2);
    const long pages = ::sysconf(_SC_AVPHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) return std::max<uint64_t>(256 * kMiB, uint64_t(pages) * uint64_t(page) / 2);
    return 4096 * kMiB;
}

uint64_t parse_memory_size(const std::string& text, const std::string& option) {
    std::string raw;
    for (char c : text)
        if (!std::isspace(static_cast<unsigned char>(c))) raw += char(std::toupper(static_cast<unsigned char>(c)));
    auto strip = [&](const char* suffix) {
        const size_t n = std::strlen(suffix);
        if (raw.size() >= n && raw.compare(raw.size() - n, n, suffix) == 0) raw.resize(raw.size() - n);
    };
    strip("IB");
    strip("B");
    uint64_t unit = 1;
    if (!raw.empty()) {
        const char* units = "KMGT";
        const char* u = std::strchr(units, raw.back());
        if (u && *u) {
            unit = uint64_t(1) << (10 * (u - units + 1));
            raw.pop_back();
        }
    }
    char* end = nullptr;
    errno = 0;
    const double value = raw.empty() ? -1.0 : std::strtod(raw.c_str(), &end);
    if (errno || !end || *end || !(value > 0) || !std::isfinite(value) || value * double(unit) >= 1.8e19)
        throw Error(Status::invalid_argument, option + " '" + text + "' is not a memory size; write it like 512M, 8G or 1.5G.");
    return uint64_t(value * double(unit));
}

// ---------------------------------------------------------------------------------------------
SpillFile::SpillFile(const std::string& dir, const std::string& name) : dir_(dir) {
    std::string path = dir + (dir.empty() || dir.back() == '/' ? "" : "/") + ".svsr-" + name + "-XXXXXX";
    fd_ = ::mkstemp(&path[0]);
    if (fd_ < 0)
        throw Error(Status::input, "cannot create a file for the clip state in the work folder " + dir + " (" + std::strerror(errno) +
                                       "); choose another folder with --work-dir.");
    ::unlink(path.c_str());  // the open descriptor keeps it: no file is left behind, whatever happens
}

SpillFile::~SpillFile() {
    if (fd_ >= 0) ::close(fd_);
}

void SpillFile::fail(const char* what, int err, uint64_t bytes) const {
    if (err == ENOSPC || err == EDQUOT || err == EFBIG)
        throw Error(Status::input, "the work folder " + dir_ + " has no room for " + mib(bytes) + " of clip state (" + std::strerror(err) +
                                       "); free space there or choose another folder with --work-dir.");
    throw Error(Status::internal, std::string("could not ") + what + " the clip state in the work folder " + dir_ + ": " + std::strerror(err) + ".");
}

void SpillFile::reserve(uint64_t bytes) {
    if (bytes <= size_) return;
    const int err = ::posix_fallocate(fd_, 0, off_t(bytes));
    if (err != 0 && err != EOPNOTSUPP && err != EINVAL) fail("reserve", err, bytes);  // some filesystems cannot preallocate
    size_ = bytes;
}

void SpillFile::write(const void* data, size_t bytes, uint64_t offset) {
    const char* p = static_cast<const char*>(data);
    for (size_t done = 0; done < bytes;) {
        const ssize_t got = ::pwrite(fd_, p + done, bytes - done, off_t(offset + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) fail("write", got < 0 ? errno : ENOSPC, offset + bytes);
        done += size_t(got);
    }
    size_ = std::max(size_, offset + bytes);
}

void SpillFile::read(void* data, size_t bytes, uint64_t offset) const {
    char* p = static_cast<char*>(data);
    for (size_t done = 0; done < bytes;) {
        const ssize_t got = ::pread(fd_, p + done, bytes - done, off_t(offset + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            throw Error(Status::internal, "could not read the clip state back from the work folder " + dir_ + ": " +
                                              (got < 0 ? std::strerror(errno) : "the file is shorter than written") + ".");
        done += size_t(got);
    }
}

// ---------------------------------------------------------------------------------------------
ClipArray::ClipArray(std::string name, size_t item_floats, std::string dir)
    : name_(std::move(name)), dir_(std::move(dir)), item_floats_(item_floats) {}

void ClipArray::place(int count, int ram_items) {
    count_ = count;
    ram_items_ = std::max(0, count < 0 ? ram_items : std::min(count, ram_items));
    ram_.clear();
    if (count >= 0) ram_.resize(size_t(ram_items_));  // else grown by write_target
    file_.reset();
    for (Slot& s : read_slots_) s.item = -1;
    pending_.clear();
    if (count_ > ram_items_) file().reserve(uint64_t(count_ - ram_items_) * item_bytes());
}

void ClipArray::set_count(int count) {
    if (count_ >= 0 || count < int(ram_.size())) throw Error(Status::internal, name_ + " already has a count.");
    count_ = count;
}

void ClipArray::check_index(int k) const {
    if (k < 0 || (count_ >= 0 && k >= count_)) throw Error(Status::internal, name_ + " item " + std::to_string(k) + " is out of range.");
}

SpillFile& ClipArray::file() {
    if (!file_) file_ = std::make_unique<SpillFile>(dir_, name_);
    return *file_;
}

const float* ClipArray::read(int k) {
    check_index(k);
    if (k < ram_items_) {
        if (size_t(k) >= ram_.size() || !ram_[size_t(k)]) throw Error(Status::internal, name_ + " item " + std::to_string(k) + " is read before it was written.");
        return ram_[size_t(k)].get();
    }
    for (int p : pending_)
        if (pending_slots_[size_t(p)].item == k)
            throw Error(Status::internal, name_ + " item " + std::to_string(k) + " is read before its write was committed.");
    ++reads_;
    for (Slot& s : read_slots_)
        if (s.item == k) {
            s.used = reads_;
            return s.data.get();
        }
    Slot& s = read_slots_[0].used <= read_slots_[1].used ? read_slots_[0] : read_slots_[1];
    if (!s.data) s.data.reset(new float[item_floats_]);
    s.item = -1;  // until the read succeeds
    file().read(s.data.get(), item_bytes(), offset(k));
    s.item = k;
    s.used = reads_;
    return s.data.get();
}

float* ClipArray::write_target(int k) {
    check_index(k);
    if (k < ram_items_) {
        if (size_t(k) >= ram_.size()) ram_.resize(size_t(k) + 1);
        std::unique_ptr<float[]>& item = ram_[size_t(k)];
        if (!item) item.reset(new float[item_floats_]);  // written in full before it is read
        return item.get();
    }
    for (Slot& s : read_slots_)
        if (s.item == k) s.item = -1;  // stale once the new value is committed
    if (pending_slots_.empty())
        pending_slots_.resize(size_t(std::max<uint64_t>(2, std::min<uint64_t>(kMaxPending, kPendingBytes / std::max<size_t>(1, item_bytes())))));
    if (pending_.size() == pending_slots_.size()) return nullptr;
    for (size_t i = 0; i < pending_slots_.size(); ++i) {
        Slot& s = pending_slots_[i];
        if (std::find(pending_.begin(), pending_.end(), int(i)) != pending_.end()) continue;
        if (!s.data) s.data.reset(new float[item_floats_]);
        s.item = k;
        pending_.push_back(int(i));
        return s.data.get();
    }
    return nullptr;
}

void ClipArray::commit() {
    for (int p : pending_) {
        const Slot& s = pending_slots_[size_t(p)];
        file().write(s.data.get(), item_bytes(), offset(s.item));
    }
    pending_.clear();
}

uint64_t ClipArray::ram_bytes() const {
    const int count = count_ >= 0 ? count_ : int(ram_.size());
    return uint64_t(std::min(count, ram_items_)) * item_bytes();
}

uint64_t ClipArray::file_bytes() const {
    const int count = count_ >= 0 ? count_ : int(ram_.size());
    return count > ram_items_ ? uint64_t(count - ram_items_) * item_bytes() : 0;
}

// ---------------------------------------------------------------------------------------------
ClipStore::ClipStore(const HostMemoryOptions& options, size_t lr_floats, size_t z_floats, size_t flow_floats)
    : lr("lr", lr_floats, options.work_dir.empty() ? default_work_dir() : options.work_dir),
      z("latents", z_floats, options.work_dir.empty() ? default_work_dir() : options.work_dir),
      fwd("flows_fwd", flow_floats, options.work_dir.empty() ? default_work_dir() : options.work_dir),
      bwd("flows_bwd", flow_floats, options.work_dir.empty() ? default_work_dir() : options.work_dir),
      history{{"x0_history0", z_floats, options.work_dir.empty() ? default_work_dir() : options.work_dir},
              {"x0_history1", z_floats, options.work_dir.empty() ? default_work_dir() : options.work_dir}},
      budget_(options.budget ? options.budget : default_host_memory()) {
    lr.place(-1, int(std::min<uint64_t>(budget_ / lr.item_bytes(), uint64_t(1) << 30)));
}

void ClipStore::frames_known(int n, bool with_history) {
    lr.set_count(n);
    uint64_t left = budget_ - std::min<uint64_t>(budget_, uint64_t(std::min(n, lr.ram_items())) * lr.item_bytes());
    auto place = [&](ClipArray& a, int count) {
        const int in_ram = int(std::min<uint64_t>(uint64_t(count), left / a.item_bytes()));
        a.place(count, in_ram);
        left -= uint64_t(in_ram) * a.item_bytes();
    };
    place(z, n);
    place(history[0], with_history ? n : 0);
    place(history[1], with_history ? n : 0);
    place(fwd, n - 1);
    place(bwd, n - 1);
}

void ClipStore::commit() {
    for (ClipArray* a : {&lr, &z, &history[0], &history[1], &fwd, &bwd}) a->commit();
}

HostMemoryUse ClipStore::use() const {
    HostMemoryUse u;
    for (const ClipArray* a : {&lr, &z, &history[0], &history[1], &fwd, &bwd}) {
        u.in_ram += a->ram_bytes();
        u.in_files += a->file_bytes();
    }
    return u;
}

}  // namespace svsr
