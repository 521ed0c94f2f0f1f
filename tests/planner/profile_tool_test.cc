// pd-profile on the CPU backend: a tiny random model -> a valid profile whose KV geometry matches
// the model config and whose times are positive (the tool is the one the GPU machine runs).
#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "model/makemodel.h"
#include "planner/profile.h"
#include "planner/sim/serving_sim.h"

namespace pd::planner {
namespace {

TEST(PdProfile, TinyCpuModelGivesAUsableProfile) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("pd_profile_test_" + std::to_string(getpid()));
  MakeModelOptions mo;
  mo.preset = "tiny";
  mo.out_dir = (dir / "model").string();
  mo.seed = 3;
  ASSERT_TRUE(WriteRandomModel(mo).ok());
  const std::string out = (dir / "p.json").string();
  const std::string cmd = std::string(PD_BUILD_DIR) + "/src/planner/pd-profile --model " +
                          mo.out_dir + " --out " + out +
                          " --reps 1 --warmup 0 --threads 1 --kv-memory-mb 16"
                          " --prefill-tokens 8,32 --decode-batches 1,2 --decode-contexts 8,32"
                          " 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  StatusOr<Profile> p = LoadProfile(out);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  // tiny: 4 layers x 2 KV heads x 32 dims x 2 (K, V) x 2 bytes
  EXPECT_EQ(p->kv_bytes_per_token, 4 * 2 * 32 * 2 * 2);
  EXPECT_EQ(p->kv_pool_tokens, 16 * 1024 * 1024 / p->kv_bytes_per_token);
  EXPECT_EQ(p->prefill.size(), 2u);
  EXPECT_EQ(p->decode.size(), 4u);
  EXPECT_EQ(p->hardware.backend, "cpu");
  for (const PrefillPoint& x : p->prefill) EXPECT_GT(x.ms, 0);
  // The default CPU chunk points: two pure chunks and one next to 2 decoding sequences.
  ASSERT_EQ(p->chunks.size(), 3u);
  EXPECT_EQ(p->chunks[1].tokens, 16);
  EXPECT_EQ(p->chunks[1].cached, 64);
  EXPECT_EQ(p->chunks[2].decode_batch, 2);
  EXPECT_EQ(p->chunks[2].decode_context, 32);
  for (const ChunkPoint& c : p->chunks) EXPECT_GT(c.ms, 0);
  // It drives the simulator.
  Deployment d;
  d.prefill_profile = d.decode_profile = *p;
  const SimResult r = Simulate(d, {{0.0, 300, 4}, {0.01, 20, 4}}, {});
  EXPECT_TRUE(r.requests[0].ok && r.requests[1].ok);
  EXPECT_TRUE(r.requests[0].remote_prefill);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace pd::planner
