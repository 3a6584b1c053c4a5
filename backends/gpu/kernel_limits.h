// The decode kernel's fixed shape, in plain C++: the kernels (block_base.cuh, gpu_types.h) and
// the launch planning on the host (launch_plan.h, which the CPU-only tests compile) read the
// same constants.
#pragma once

namespace sr::gpu {

constexpr int kThreads = 128;                 // threads of a decode block (4 logical warps of 32)
constexpr int kChunk = 512;                   // tokens whose logits sit in shared memory at once
constexpr int kMaxChunkBlocks = kChunk / 16;  // pages hold at least 16 tokens
// The merge keeps one weight per (head, split) in the chunk's logit buffer.
constexpr int kMaxMergeSplits = kChunk;  // x kMaxTileHeads heads fill SharedState::w
// The q-heads of a GQA group scored together by one block; larger groups are split into tiles.
constexpr int kMaxTileHeads = 8;
// Up to this many batch entries travel inside one launch's parameters (their cache slots), so
// a captured graph needs no host-to-device copy; larger batches run as several launches.
constexpr int kLaunchBatch = 256;

}  // namespace sr::gpu
