// Occupancy-grid ray marching (fused CPU path of vision3d_kd.kernels.march): uniform steps of `step`
// from t_near to t_far along each ray, keeping the steps whose midpoint lies in an occupied cell.
// Two passes over rays in parallel: count, then fill at offsets (exclusive prefix sum of counts),
// so the packed output is sorted by ray and deterministic. Raw pointers; the Python side validates.
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

struct Grid {
  const uint8_t* occ;
  float lo[3], scale[3];  // cell coordinate = (p - lo) * scale, scale = res / (hi - lo)
  int64_t res;

  bool occupied(float x, float y, float z) const {
    const float u = (x - lo[0]) * scale[0], v = (y - lo[1]) * scale[1], w = (z - lo[2]) * scale[2];
    const float r = static_cast<float>(res);
    if (!(u >= 0.f && u <= r && v >= 0.f && v <= r && w >= 0.f && w <= r)) return false;
    const int64_t i = std::min<int64_t>(static_cast<int64_t>(u), res - 1);
    const int64_t j = std::min<int64_t>(static_cast<int64_t>(v), res - 1);
    const int64_t k = std::min<int64_t>(static_cast<int64_t>(w), res - 1);
    return occ[(i * res + j) * res + k] != 0;
  }
};

template <bool kFill>
int64_t march_one(const Grid& g, const float* o, const float* d, float tn, float tf, float step, int64_t ray,
                  int64_t* out_ray, float* out_ts, float* out_te) {
  int64_t n = 0;
  for (int64_t s = 0;; ++s) {
    const float t0 = tn + static_cast<float>(s) * step;
    if (!(t0 < tf)) break;
    const float t1 = std::min(t0 + step, tf);
    const float tm = 0.5f * (t0 + t1);
    if (g.occ == nullptr || g.occupied(o[0] + d[0] * tm, o[1] + d[1] * tm, o[2] + d[2] * tm)) {
      if (kFill) {
        out_ray[n] = ray;
        out_ts[n] = t0;
        out_te[n] = t1;
      }
      ++n;
    }
  }
  return n;
}

Grid make_grid(const uint8_t* occ, const float* box, int64_t res) {
  Grid g{};
  g.occ = occ;
  g.res = res;
  for (int a = 0; a < 3; ++a) {
    g.lo[a] = box[a];
    g.scale[a] = static_cast<float>(res) / (box[3 + a] - box[a]);
  }
  return g;
}

}  // namespace

namespace v3kd {

// counts[r] = number of kept steps of ray r. occ may be null (no grid: keep every step).
void march_count(const float* o, const float* d, const float* tn, const float* tf, int64_t n_rays, float step,
                 const uint8_t* occ, const float* aabb, int64_t res, int64_t* counts, int nt) {
  const Grid g = make_grid(occ, aabb, res);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 64)
  for (int64_t r = 0; r < n_rays; ++r)
    counts[r] = march_one<false>(g, o + 3 * r, d + 3 * r, tn[r], tf[r], step, r, nullptr, nullptr, nullptr);
}

// Fill packed samples; offsets[r] = exclusive prefix sum of counts.
void march_fill(const float* o, const float* d, const float* tn, const float* tf, int64_t n_rays, float step,
                const uint8_t* occ, const float* aabb, int64_t res, const int64_t* offsets, int64_t* ray_idx,
                float* t_starts, float* t_ends, int nt) {
  const Grid g = make_grid(occ, aabb, res);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 64)
  for (int64_t r = 0; r < n_rays; ++r)
    march_one<true>(g, o + 3 * r, d + 3 * r, tn[r], tf[r], step, r, ray_idx + offsets[r], t_starts + offsets[r],
                    t_ends + offsets[r]);
}

}  // namespace v3kd
