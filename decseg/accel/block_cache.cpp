// decseg's CPU block cache: PyTorch's CPU allocator with large blocks kept for reuse.
//
// Why by hand: PyTorch's CPU allocator is plain malloc/free (its caching allocator is CUDA-only),
// and no library gives a CPU one. A training step frees and re-allocates gigabytes of
// activations, gradients and weight casts of the same sizes every iteration. Returned to the OS,
// every re-allocation page-faults fresh zeroed pages (the paper model in bf16: ~4 M faults per
// step); kept in glibc's heap, the step's memory grows 1.3-1.9 GiB above what it uses, because
// posix_memalign's padding keeps freed blocks from fitting the same request again.
//
// This allocator keeps the blocks of >= min_bytes itself: page-rounded anonymous mappings, freed
// blocks coalesced with free neighbours and reused best-fit (a larger block is split). Its one
// rule is the memory bound: mapped-but-free blocks never make the blocks it holds exceed the
// high-water mark of blocks in use, so the resident set peaks where it would if every block were
// returned at once, and the oldest free blocks are unmapped to keep it so. Smaller requests go
// to c10::alloc_cpu, PyTorch's own path. Loaded through ctypes (decseg/accel/block_cache.py).
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>

#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>

namespace {

constexpr size_t kPage = 4096;

struct Counters {
  uint64_t live = 0;        // bytes of blocks handed out
  uint64_t cached = 0;      // bytes of free blocks kept mapped
  uint64_t high_water = 0;  // most bytes ever live at once: the bound on live + cached
  uint64_t hits = 0;        // requests served from kept blocks
  uint64_t misses = 0;      // requests that mapped fresh memory
  uint64_t mapped = 0;      // bytes mapped fresh, in total
  uint64_t unmapped = 0;    // bytes of free blocks given back to the OS, in total
};

class BlockCache final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n < min_bytes_) {
      void* p = c10::alloc_cpu(n);
      return {p, p, &c10::free_cpu, c10::Device(c10::DeviceType::CPU)};
    }
    const size_t size = (n + kPage - 1) & ~(kPage - 1);
    {
      std::lock_guard<std::mutex> lock(mu_);
      void* base = caching_ ? take_cached(size) : nullptr;
      if (base) {
        c_.hits++;
        note_live(base, size);
        return {base, base, &free_block, c10::Device(c10::DeviceType::CPU)};
      }
      c_.misses++;
      // unmap the oldest free blocks until the fresh mapping keeps live + cached within the
      // high-water mark (which this request may raise)
      const uint64_t bound = std::max<uint64_t>(c_.high_water, c_.live + size);
      while (!lru_.empty() && c_.live + size + c_.cached > bound) unmap_oldest();
    }
    void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TORCH_CHECK_WITH(OutOfMemoryError, base != MAP_FAILED, "decseg CPU block cache: could not map ",
                     size, " bytes (out of memory)");
    {
      std::lock_guard<std::mutex> lock(mu_);
      c_.mapped += size;
      note_live(base, size);
    }
    return {base, base, &free_block, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &free_any; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  void release(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    TORCH_INTERNAL_ASSERT(it != live_.end(), "decseg CPU block cache: freeing an unknown block");
    const size_t size = it->second;
    live_.erase(it);
    c_.live -= size;
    if (!caching_) {
      munmap(p, size);
      c_.unmapped += size;
      return;
    }
    add_free(reinterpret_cast<uintptr_t>(p), size);
  }

  // raw_allocate's deleter: blocks below min_bytes came from c10::alloc_cpu
  bool owns(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    return live_.count(p) != 0;
  }

  void empty() {
    std::lock_guard<std::mutex> lock(mu_);
    while (!lru_.empty()) unmap_oldest();
  }

  void set_min_bytes(size_t min_bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    min_bytes_ = std::max(min_bytes, kPage);
  }

  Counters counters() {
    std::lock_guard<std::mutex> lock(mu_);
    return c_;
  }

  // In a forked child (data-loader workers): return freed blocks at once, keep none of the
  // parent's free blocks. Runs single-threaded, after fork has reset malloc's locks.
  void after_fork_in_child() {
    mu_.unlock();
    caching_ = false;
    while (!lru_.empty()) unmap_oldest();
  }

  std::mutex mu_;

 private:
  void note_live(void* p, size_t size) {  // mu_ held
    live_.emplace(p, size);
    c_.live += size;
    c_.high_water = std::max(c_.high_water, c_.live);
  }

  struct Free {
    size_t size;
    std::multimap<size_t, uintptr_t>::iterator by_size;
    std::list<uintptr_t>::iterator age;
  };

  static void free_block(void* p);
  static void free_any(void* p);

  // mu_ held. Smallest free block of at least `size`, split if larger.
  void* take_cached(size_t size) {
    auto best = by_size_.lower_bound(size);
    if (best == by_size_.end()) return nullptr;
    const uintptr_t addr = best->second;
    const size_t have = remove_free(free_.find(addr));
    if (have > size) add_free(addr + size, have - size);
    return reinterpret_cast<void*>(addr);
  }

  // mu_ held. Keep [addr, addr + size) free, merged with free neighbours (adjacent free blocks
  // are always merged, so a block's neighbours are live or unmapped).
  void add_free(uintptr_t addr, size_t size) {
    auto next = free_.find(addr + size);
    if (next != free_.end()) size += remove_free(next);
    auto after = free_.lower_bound(addr);
    if (after != free_.begin()) {
      auto prev = std::prev(after);
      if (prev->first + prev->second.size == addr) {
        const uintptr_t prev_addr = prev->first;
        size += remove_free(prev);
        addr = prev_addr;
      }
    }
    lru_.push_back(addr);
    auto by_size = by_size_.emplace(size, addr);
    free_.emplace(addr, Free{size, by_size, std::prev(lru_.end())});
    c_.cached += size;
  }

  // mu_ held. Forget a free block (still mapped); returns its size.
  size_t remove_free(std::map<uintptr_t, Free>::iterator it) {
    const size_t size = it->second.size;
    by_size_.erase(it->second.by_size);
    lru_.erase(it->second.age);
    free_.erase(it);
    c_.cached -= size;
    return size;
  }

  void unmap_oldest() {  // mu_ held
    const uintptr_t addr = lru_.front();
    const size_t size = remove_free(free_.find(addr));
    munmap(reinterpret_cast<void*>(addr), size);
    c_.unmapped += size;
  }

  size_t min_bytes_ = 1 << 20;
  bool caching_ = true;
  Counters c_;
  std::unordered_map<void*, size_t> live_;     // blocks handed out -> bytes
  std::map<uintptr_t, Free> free_;              // by address, for merging
  std::multimap<size_t, uintptr_t> by_size_;    // for best fit
  std::list<uintptr_t> lru_;                    // free blocks, least recently freed first
};

// Never destroyed: tensors may be freed during interpreter teardown.
BlockCache* g_cache = nullptr;

void BlockCache::free_block(void* p) { g_cache->release(p); }

void BlockCache::free_any(void* p) {
  if (g_cache->owns(p))
    g_cache->release(p);
  else
    c10::free_cpu(p);
}

}  // namespace

extern "C" {

// Install as PyTorch's CPU allocator (idempotent). Blocks below min_bytes are not cached.
int decseg_cpu_cache_install(uint64_t min_bytes) {
  if (!g_cache) {
    g_cache = new BlockCache();
    // a fork (data-loader workers) must not copy the lock while another thread holds it
    pthread_atfork([] { g_cache->mu_.lock(); }, [] { g_cache->mu_.unlock(); },
                   [] { g_cache->after_fork_in_child(); });
  }
  g_cache->set_min_bytes(min_bytes);
  c10::SetCPUAllocator(g_cache, /*priority=*/100);
  return c10::GetCPUAllocator() == g_cache ? 1 : 0;
}

int decseg_cpu_cache_active() {
  return g_cache && c10::GetCPUAllocator() == g_cache ? 1 : 0;
}

// live, cached, high_water, hits, misses, mapped, unmapped
void decseg_cpu_cache_counters(uint64_t* out) {
  Counters c;
  if (g_cache) c = g_cache->counters();
  const uint64_t v[7] = {c.live, c.cached, c.high_water, c.hits, c.misses, c.mapped, c.unmapped};
  std::copy(v, v + 7, out);
}

// Unmap every free block now.
void decseg_cpu_cache_empty() {
  if (g_cache) g_cache->empty();
}

}  // extern "C"
