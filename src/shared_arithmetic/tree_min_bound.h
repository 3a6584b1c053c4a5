// The tree-min bound on the error of skipping value rows: for skipped rows S with softmax weights
// p (in any common frame), ||sum_{j in S} p_j v_j|| is at most
//   leaf (a page B):  min(P_B M_B, sigma_B ||p_B||_2)   (M_B: largest row norm, sigma_B: largest
//                     singular value of the page's rows, P_B = sum of p, ||p_B||_2 over skipped rows)
//   node N:           min(sum of its children's bounds, sqrt(lambda_N) ||p_{S in N}||_2)
// with lambda_N an upper bound on lambda_max(V_N^T V_N) of all the node's rows: dropping rows
// subtracts a positive semi-definite term, so it bounds every subset's, and the triangle
// inequality bounds a node by its children. Nodes are aligned to the sequence (level l holds
// kTreeFan^l pages), so a split sums the bounds of its own pages' tree, cutting nodes at its
// ends: a cut node's lambda still bounds the part inside. Never above today's sum of P_B M_B
// (each level takes a minimum with its children's sum). docs/ARCHITECTURE.md, "Spectral
// summaries". Host and device; f32 arithmetic, as the routing's other sums.
#pragma once

#include <math.h>
#include <stdint.h>

#include "shared_arithmetic/host_device.h"

namespace sr {

constexpr int kTreeFan = 4;     // pages of a level-1 node; each level 4 times the one below
constexpr int kTreeLevels = 4;  // levels above the pages: nodes of 4, 16, 64 and 256 pages

// What one page of a split contributes to the bound. A page whose V is read contributes
// nothing: pass TreePage{} (all zero) for it.
struct TreePage {
  float skipped_mass;  // P_B: sum of p over its skipped rows
  float skipped_p2;    // sum of p^2 over the same rows
  float max_norm;      // M_B: the largest row norm of the page (the V-norm summary; +inf: a non-finite row)
  float sigma;         // an upper bound on the largest singular value of the page's rows (+inf: none)
};

// f32 squares of weights below 2^-75 underflow, and a sum of them may fall below the exact sum
// by up to 2^-149 per term: each page's sum of p^2 is raised by this floor (a page holds at most
// 2^9 rows) before its square root bounds ||p||_2.
constexpr float kP2Floor = 0x1p-140f;

// The leaf term of a page: min(P_B M_B, sigma_B ||p_B||_2), 0 when nothing of it is skipped.
// A skipped non-finite row (M_B = +inf) with no mass gives NaN: its page was never read, and the
// dense result there is NaN, so no bound may be finite.
SR_HD float tree_leaf_bound(const TreePage& page) {
  const float l1 = page.skipped_mass * page.max_norm;
  if (l1 == 0.f) return 0.f;
  const float spectral = page.sigma * sqrtf(page.skipped_p2 + kP2Floor);
  return spectral < l1 ? spectral : l1;
}

// The sum of p^2 a page adds to its node (its floor included; nothing when its term is 0).
SR_HD float tree_leaf_p2(const TreePage& page, float leaf_bound) {
  return leaf_bound == 0.f ? 0.f : page.skipped_p2 + kP2Floor;
}

// A node's term from its children's sum and its lambda (+inf or NaN: no spectral term).
SR_HD float tree_node_bound(float children, float lambda, float p2) {
  if (!(children > 0.f)) return children;
  const float spectral = sqrtf(lambda) * sqrtf(p2);
  return spectral < children ? spectral : children;
}

// Where the spectral summaries of a page live (docs/ARCHITECTURE.md, "Spectral summaries"): per
// layer, page and kv-head kSpectralSlots floats; slot 0 is the page's sigma, slot l (1 ..
// kTreeLevels) the lambda of the level-l node this page closes (the node's last page), +inf
// where none is known. Only a full page carries values: a write into a page resets its slots.
constexpr int kSpectralSlots = kTreeLevels + 1;

// Whether logical page `page` of a sequence is the last page of a level-`level` node.
SR_HD bool page_closes_node(int64_t page, int level) {
  return ((page + 1) & ((int64_t{1} << (2 * level)) - 1)) == 0;
}

// The logical page that closes node `node` of level `level`.
SR_HD int64_t node_last_page(int level, int64_t node) { return ((node + 1) << (2 * level)) - 1; }

// The tree-min bound of pages given in increasing sequence order (any gaps), one at a time:
// a node is closed, lowest level first, once a page of another node comes or at the end. The
// running sums can be rescaled (a softmax frame that changes between the GPU's chunks): every
// term is positively homogeneous in p (children times alpha, p^2 times alpha^2).
struct TreeStream {
  float bound[kTreeLevels + 1];  // the open node's children's sum, per level (1-based)
  float p2[kTreeLevels + 1];
  float total;
  int64_t last;  // the last page added; -1: none
};

SR_HD void tree_stream_start(TreeStream& s) {
  SR_UNROLL
  for (int level = 0; level <= kTreeLevels; ++level) s.bound[level] = s.p2[level] = 0.f;
  s.total = 0.f;
  s.last = -1;
}

// Closes the open nodes of levels 1 .. top (those of page s.last), lowest first: each adds its
// term and its p^2 to its parent. lambda(level, node) as for tree_min_bound.
template <class Lambda>
SR_HD void tree_stream_close(TreeStream& s, int top, Lambda&& lambda) {
  SR_UNROLL
  for (int level = 1; level <= kTreeLevels; ++level) {
    if (level > top) break;
    const int64_t node = s.last >> (2 * level);
    const float term = tree_node_bound(s.bound[level], lambda(level, node), s.p2[level]);
    if (level < kTreeLevels) {
      s.bound[level + 1] += term;
      s.p2[level + 1] += s.p2[level];
    } else {
      s.total += term;
    }
    s.bound[level] = 0.f;
    s.p2[level] = 0.f;
  }
}

// Page `page` (after every page added so far) joins with its leaf.
template <class Lambda>
SR_HD void tree_stream_add(TreeStream& s, int64_t page, const TreePage& leaf, Lambda&& lambda) {
  if (s.last >= 0) {
    int top = 0;  // the levels whose node changes from page s.last to this one
    SR_UNROLL
    for (int level = 1; level <= kTreeLevels; ++level) top += (s.last >> (2 * level)) != (page >> (2 * level));
    tree_stream_close(s, top, lambda);
  }
  const float term = tree_leaf_bound(leaf);
  s.bound[1] += term;
  s.p2[1] += tree_leaf_p2(leaf, term);
  s.last = page;
}

// Every sum times alpha (p^2 times alpha^2) for a new frame, alpha <= 1. An f32 square that
// underflows may lose up to 2^-149 per product: kP2Floor covers it, as for the leaves.
SR_HD void tree_stream_scale(TreeStream& s, float alpha) {
  SR_UNROLL
  for (int level = 1; level <= kTreeLevels; ++level) {
    s.bound[level] *= alpha;
    s.p2[level] = s.p2[level] > 0.f ? s.p2[level] * alpha * alpha + kP2Floor : 0.f;
  }
  s.total *= alpha;
}

// The bound of every page added (the stream stays usable: nothing is open after).
template <class Lambda>
SR_HD float tree_stream_finish(TreeStream& s, Lambda&& lambda) {
  if (s.last >= 0) tree_stream_close(s, kTreeLevels, lambda);
  return s.total;
}

// The tree-min bound over the split's pages [first, end) (sequence page numbers).
// page(i) returns the TreePage of page i; lambda(level, node) the bound on lambda_max of node
// `node` of `level` (1 .. kTreeLevels; it covers pages [node * 4^level, (node + 1) * 4^level)),
// or +inf where none is kept (a node not yet closed).
template <class Page, class Lambda>
SR_HD float tree_min_bound(int64_t first, int64_t end, Page&& page, Lambda&& lambda) {
  TreeStream s;
  tree_stream_start(s);
  for (int64_t i = first; i < end; ++i) tree_stream_add(s, i, page(i), lambda);
  return tree_stream_finish(s, lambda);
}

}  // namespace sr

namespace sr {

// ---------------------------------------------------------------- incremental form

// Budget mode's form of the bound: the pages of a split [first, end) join the skip set one at a
// time, in any order, and total is tree_min_bound over the set (up to the rounding of its f32
// sums: a decision aid; the reported bound is tree_min_bound's). Per level, the split's nodes
// hold their children's sum, their p^2 and their term, in arrays the caller provides
// (tree_walk_floats floats).
struct TreeWalk {
  int64_t first;                     // the split's first page
  float* children[kTreeLevels + 1];  // [level][node - (first >> 2 level)], levels 1 ..
  float* p2[kTreeLevels + 1];
  float* term[kTreeLevels + 1];
  float total;
};

SR_HD int64_t tree_walk_nodes(int64_t first, int64_t end, int level) {
  return ((end - 1) >> (2 * level)) - (first >> (2 * level)) + 1;
}

SR_HD int64_t tree_walk_floats(int64_t first, int64_t end) {
  int64_t floats = 0;
  for (int level = 1; level <= kTreeLevels; ++level) floats += 3 * tree_walk_nodes(first, end, level);
  return floats;
}

// An empty skip set over pages [first, end) (end > first), in `storage`.
SR_HD TreeWalk tree_walk_start(int64_t first, int64_t end, float* storage) {
  TreeWalk w;
  w.first = first;
  w.total = 0.f;
  w.children[0] = w.p2[0] = w.term[0] = nullptr;
  for (int level = 1; level <= kTreeLevels; ++level) {
    const int64_t nodes = tree_walk_nodes(first, end, level);
    for (int64_t i = 0; i < 3 * nodes; ++i) storage[i] = 0.f;
    w.children[level] = storage;
    w.p2[level] = storage + nodes;
    w.term[level] = storage + 2 * nodes;
    storage += 3 * nodes;
  }
  return w;
}

// The total once `page` (of the split, not yet in the set) joins with `leaf`; the set changes
// only with commit. lambda(level, node) as for tree_min_bound.
template <class Lambda>
SR_HD float tree_walk_add(TreeWalk& w, int64_t page, const TreePage& leaf, Lambda&& lambda, bool commit) {
  float delta = tree_leaf_bound(leaf);
  const float dp2 = tree_leaf_p2(leaf, delta);
  if (delta == 0.f) return w.total;
  for (int level = 1; level <= kTreeLevels; ++level) {
    const int64_t node = page >> (2 * level);
    const int64_t at = node - (w.first >> (2 * level));
    const float children = w.children[level][at] + delta;
    const float p2 = w.p2[level][at] + dp2;
    const float term = tree_node_bound(children, lambda(level, node), p2);
    delta = term - w.term[level][at];
    if (commit) {
      w.children[level][at] = children;
      w.p2[level][at] = p2;
      w.term[level][at] = term;
    }
  }
  const float total = w.total + delta;
  if (commit) w.total = total;
  return total;
}

}  // namespace sr
