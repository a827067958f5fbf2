#include "runtime/Kernel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

namespace roformer::runtime {

void KernelRegistry::add(std::string_view domain, std::string_view opType, KernelFactory factory,
                         int minOpset, int maxOpset) {
  entries_.push_back(
      Entry{std::string(domain), std::string(opType), minOpset, maxOpset, std::move(factory)});
}

const KernelFactory* KernelRegistry::find(std::string_view domain, std::string_view opType,
                                          int opset) const {
  for (const Entry& entry : entries_) {
    if (entry.domain == domain && entry.opType == opType && entry.minOpset <= opset &&
        opset <= entry.maxOpset) {
      return &entry.factory;
    }
  }
  return nullptr;
}

bool KernelRegistry::supports(std::string_view domain, std::string_view opType) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const Entry& entry) {
    return entry.domain == domain && entry.opType == opType;
  });
}

std::vector<std::string> KernelRegistry::listOps() const {
  std::set<std::string> names;
  for (const Entry& entry : entries_) {
    names.insert(entry.domain.empty() ? entry.opType : entry.domain + "." + entry.opType);
  }
  return std::vector<std::string>(names.begin(), names.end());
}

// One parallelFor call. Threads claim chunk indices from `next` until none
// are left, so the calling thread finishes the loop alone when every worker
// is busy, and a helper task that starts after the loop has ended finds no
// chunk to claim and never touches `fn`.
struct ParallelLoop {
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t count = 0;
  int64_t chunks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> finished{0};
  std::mutex mutex;
  std::condition_variable allFinished;

  void runChunks() {
    for (int64_t chunk = next.fetch_add(1); chunk < chunks; chunk = next.fetch_add(1)) {
      int64_t begin = count * chunk / chunks;
      int64_t end = count * (chunk + 1) / chunks;
      (*fn)(begin, end);
      if (finished.fetch_add(1) + 1 == chunks) {
        std::lock_guard<std::mutex> lock(mutex);
        allFinished.notify_all();
      }
    }
  }
};

struct ThreadPool::Impl {
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::shared_ptr<ParallelLoop>> queue;
  std::vector<std::thread> workers;
  bool stopping = false;

  void workerMain() {
    while (true) {
      std::shared_ptr<ParallelLoop> loop;
      {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) return;
        loop = std::move(queue.front());
        queue.pop_front();
      }
      loop->runChunks();
    }
  }
};

ThreadPool::ThreadPool(int threads) : impl_(std::make_unique<Impl>()), size_(std::max(1, threads)) {
  // The calling thread takes part in every loop, so the pool starts one
  // thread fewer than its size.
  for (int i = 1; i < size_; ++i) {
    impl_->workers.emplace_back([this] { impl_->workerMain(); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  for (std::thread& worker : impl_->workers) worker.join();
}

void ThreadPool::parallelFor(int64_t count, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (count <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t chunks = std::min<int64_t>(size_, std::max<int64_t>(1, count / grain));
  if (chunks == 1) {
    fn(0, count);
    return;
  }

  auto loop = std::make_shared<ParallelLoop>();
  loop->fn = &fn;
  loop->count = count;
  loop->chunks = chunks;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    for (int64_t i = 1; i < chunks; ++i) impl_->queue.push_back(loop);
  }
  if (chunks == 2) {
    impl_->wake.notify_one();
  } else {
    impl_->wake.notify_all();
  }

  loop->runChunks();
  std::unique_lock<std::mutex> lock(loop->mutex);
  loop->allFinished.wait(lock, [&] { return loop->finished.load() == chunks; });
}

}  // namespace roformer::runtime
