#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "runtime/Planner.h"

namespace roformer::runtime {
namespace {

bool lifetimesOverlap(const BufferLifetime& a, const BufferLifetime& b) {
  return a.firstStep <= b.lastStep && b.firstStep <= a.lastStep;
}

void expectValidPlacement(const std::vector<BufferLifetime>& buffers,
                          const std::vector<size_t>& offsets, size_t arenaBytes) {
  ASSERT_EQ(offsets.size(), buffers.size());
  for (size_t i = 0; i < buffers.size(); ++i) {
    EXPECT_EQ(offsets[i] % kBufferAlignment, 0u) << "buffer " << i;
    EXPECT_LE(offsets[i] + buffers[i].bytes, arenaBytes) << "buffer " << i;
    for (size_t j = i + 1; j < buffers.size(); ++j) {
      if (buffers[i].bytes == 0 || buffers[j].bytes == 0) continue;
      if (!lifetimesOverlap(buffers[i], buffers[j])) continue;
      bool disjoint = offsets[i] + buffers[i].bytes <= offsets[j] ||
                      offsets[j] + buffers[j].bytes <= offsets[i];
      EXPECT_TRUE(disjoint) << "buffers " << i << " and " << j << " are live together at "
                            << offsets[i] << " and " << offsets[j];
    }
  }
}

TEST(SessionPlannerTest, DisjointLifetimesShareMemory) {
  std::vector<BufferLifetime> buffers = {{1000, 0, 1}, {1000, 2, 3}, {1000, 4, 5}};
  size_t arenaBytes = 0;
  std::vector<size_t> offsets = assignArenaOffsets(buffers, arenaBytes);
  expectValidPlacement(buffers, offsets, arenaBytes);
  EXPECT_EQ(arenaBytes, 1024u);
}

TEST(SessionPlannerTest, OverlappingLifetimesStack) {
  std::vector<BufferLifetime> buffers = {{100, 0, 5}, {200, 1, 3}, {300, 2, 4}};
  size_t arenaBytes = 0;
  std::vector<size_t> offsets = assignArenaOffsets(buffers, arenaBytes);
  expectValidPlacement(buffers, offsets, arenaBytes);
  EXPECT_EQ(arenaBytes, 128u + 256u + 320u);
}

TEST(SessionPlannerTest, SmallBufferFillsGap) {
  // A and C are live at step 2 with B dead between them; D (small) then fits
  // in B's old place instead of growing the arena.
  std::vector<BufferLifetime> buffers = {
      {4096, 0, 4},  // A
      {1024, 0, 1},  // B
      {4096, 0, 4},  // C
      {512, 2, 3},   // D
  };
  size_t arenaBytes = 0;
  std::vector<size_t> offsets = assignArenaOffsets(buffers, arenaBytes);
  expectValidPlacement(buffers, offsets, arenaBytes);
  EXPECT_EQ(arenaBytes, 4096u + 4096u + 1024u);
}

TEST(SessionPlannerTest, EmptyBuffersTakeNoSpace) {
  std::vector<BufferLifetime> buffers = {{0, 0, 9}, {64, 0, 9}};
  size_t arenaBytes = 0;
  std::vector<size_t> offsets = assignArenaOffsets(buffers, arenaBytes);
  EXPECT_EQ(arenaBytes, 64u);
  EXPECT_EQ(offsets[0], 0u);
}

TEST(SessionPlannerTest, RandomPlansNeverOverlap) {
  std::mt19937 random(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<BufferLifetime> buffers;
    size_t peakLive = 0;
    for (int i = 0; i < 60; ++i) {
      int first = static_cast<int>(random() % 40);
      int last = first + static_cast<int>(random() % 8);
      buffers.push_back({1 + random() % 5000, first, last});
    }
    for (int step = 0; step < 48; ++step) {
      size_t live = 0;
      for (const BufferLifetime& buffer : buffers) {
        if (buffer.firstStep <= step && step <= buffer.lastStep) {
          live += (buffer.bytes + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment;
        }
      }
      peakLive = std::max(peakLive, live);
    }
    size_t arenaBytes = 0;
    std::vector<size_t> offsets = assignArenaOffsets(buffers, arenaBytes);
    expectValidPlacement(buffers, offsets, arenaBytes);
    // No placement can beat the peak of live bytes; best fit stays close to it.
    EXPECT_GE(arenaBytes, peakLive);
    EXPECT_LE(arenaBytes, 2 * peakLive) << "trial " << trial;
  }
}

TEST(SessionPlannerTest, DescribesDims) {
  std::vector<ir::Dim> dims = {ir::Dim::symbolic("batch"), ir::Dim::known(128),
                               ir::Dim::unknown()};
  EXPECT_EQ(describeDims(dims), "[batch, 128, ?]");
  EXPECT_EQ(describeDims(std::nullopt), "[unknown rank]");
}

}  // namespace
}  // namespace roformer::runtime
