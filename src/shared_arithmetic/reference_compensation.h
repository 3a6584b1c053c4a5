// Reference compensation (docs/ARCHITECTURE.md, "Reference compensation"): per layer and kv-head
// a reference vector c, frozen once. A split that skips rows S may add (sum_{j in S} p_j) c to
// its output; what it then leaves out is sum_{j in S} p_j (v_j - c), which the tree-min bound
// over the centred rows v_j - c bounds (their own summaries, kept beside the plain ones). Per
// head the split takes whichever of the two bounds is smaller, and compensates only when it is
// the centred one. Values that share a large mean direction (common in trained models) cancel
// against c, so the centred bound is much smaller than the plain one there. Host and device.
#pragma once

#include <math.h>
#include <stdint.h>

#include "shared_arithmetic/host_device.h"
#include "shared_arithmetic/tree_min_bound.h"

namespace sr {

// A page's centred summaries: kSpectralSlots slots laid out as the plain ones (sigma, then the
// lambda of each node the page closes) over the rows minus the reference, then the largest
// centred row norm. +inf wherever none is known (no reference yet, page not full).
constexpr int kCentredSlots = kSpectralSlots + 1;
constexpr int kCentredNormSlot = kSpectralSlots;

// The reference freezes when a write fills the last page of some sequence's first level-3 node
// (64 pages): c is the mean of that node's finite V rows. Pages filled before that (of other
// sequences) keep no centred summaries, so skipping them leaves the centred bound infinite.
constexpr int kReferenceLevel = 3;
constexpr int64_t kReferencePages = int64_t{1} << (2 * kReferenceLevel);

// The summaries are computed from the f32 rows x_j = fl(v_j - c), each element within 2^-24 of
// the exact difference, so ||sum p_j (v_j - c)|| <= sigma(X) ||p||_2 + 2^-24 sum p_j ||x_j||
// <= ||p||_2 (sigma(X) + 2^-24 ||X||_F) <= ||p||_2 sigma(X) (1 + 2^-24 sqrt(head_dim)). For
// head_dim <= 256 the factor is below kCentringSlack, which multiplies sigma (and, squared, each
// lambda) of the centred rows.
constexpr double kCentringSlack = 1.0 + 0x1p-19;

// Whether head h's split compensates: the centred bound is the smaller one (NaN never is).
SR_HD bool compensation_pays(float plain_bound, float centred_bound) { return centred_bound < plain_bound; }

// The TreePage of a skipped page on the centred rows: the same weights, the centred summaries.
SR_HD TreePage centred_page(float skipped_mass, float skipped_p2, const float* centred_slots) {
  return TreePage{skipped_mass, skipped_p2, centred_slots[kCentredNormSlot], centred_slots[0]};
}

}  // namespace sr
