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

// What one page of a split contributes to the bound.
struct TreePage {
  float skipped_mass;  // P_B: sum of p over its skipped rows (0: nothing skipped)
  float skipped_p2;    // sum of p^2 over the same rows
  float max_norm;      // M_B: the largest row norm of the page (the V-norm summary)
  float sigma;         // an upper bound on the largest singular value of the page's rows (+inf: none)
};

// The leaf term of a page (0 when nothing of it is skipped).
SR_HD float tree_leaf_bound(const TreePage& page) {
  if (!(page.skipped_mass > 0.f)) return 0.f;
  const float l1 = page.skipped_mass * page.max_norm;
  const float spectral = page.sigma * sqrtf(page.skipped_p2);
  return spectral < l1 ? spectral : l1;
}

// A node's term from its children's sum and its lambda (+inf or NaN: no spectral term).
SR_HD float tree_node_bound(float children, float lambda, float p2) {
  if (!(children > 0.f)) return children;
  const float spectral = sqrtf(lambda) * sqrtf(p2);
  return spectral < children ? spectral : children;
}

// The tree-min bound over the split's pages [first, end) (sequence page numbers).
// page(i) returns the TreePage of page i; lambda(level, node) the bound on lambda_max of node
// `node` of `level` (1 .. kTreeLevels; it covers pages [node * 4^level, (node + 1) * 4^level)),
// or +inf where none is kept (a node not yet closed).
template <class Page, class Lambda>
SR_HD float tree_min_bound(int64_t first, int64_t end, Page&& page, Lambda&& lambda) {
  float bound[kTreeLevels + 1] = {};  // the open node's children's sum, per level (1-based)
  float p2[kTreeLevels + 1] = {};
  float total = 0.f;
  // Closes the open nodes of levels 1 .. top, the nodes of `last_page` (lowest first: each adds
  // its term and its p^2 to its parent).
  auto close = [&](int64_t last_page, int top) {
    for (int level = 1; level <= top; ++level) {
      const int64_t node = last_page >> (2 * level);
      const float term = tree_node_bound(bound[level], lambda(level, node), p2[level]);
      if (level < kTreeLevels) {
        bound[level + 1] += term;
        p2[level + 1] += p2[level];
      } else {
        total += term;
      }
      bound[level] = 0.f;
      p2[level] = 0.f;
    }
  };
  for (int64_t i = first; i < end; ++i) {
    if (i > first) {
      // The levels whose node changes between pages i - 1 and i close, lowest first.
      int top = 0;
      while (top < kTreeLevels && ((i - 1) >> (2 * (top + 1))) != (i >> (2 * (top + 1)))) ++top;
      close(i - 1, top);
    }
    const TreePage pg = page(i);
    bound[1] += tree_leaf_bound(pg);
    p2[1] += pg.skipped_mass > 0.f ? pg.skipped_p2 : 0.f;
  }
  if (end > first) close(end - 1, kTreeLevels);
  return total;
}

}  // namespace sr
