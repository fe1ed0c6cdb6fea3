// Fused channels-last grid interpolation (trilinear volume, bilinear planes, linear lines), CPU +
// OpenMP. Plain C++ on raw pointers: kernels/grid.py checks and allocates, bindings.cpp binds.
//
// Conventions of F.grid_sample(align_corners=True, padding_mode='border'): a coordinate u in [-1, 1]
// maps to v = clamp((u + 1) / 2 * (size - 1), 0, size - 1); corners floor(v) and floor(v) + 1 (the
// latter clamped; its weight is 0 at the border) with weights floor(v) + 1 - v and v - floor(v).
//
// Backward without atomics: the gradient grid is split into "keys" (volume: z slices; planes:
// rows of each plane; lines: cells of each line). A histogram of the samples' keys balances
// contiguous key ranges over the threads; each thread zeroes its range, then visits all samples in
// order and adds only the corners that fall inside its range. Every gradient cell therefore sums its
// contributions in sample order: deterministic, and independent of the thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

struct Lerp {
  int64_t i0, i1;
  float w0, w1;
};

inline Lerp axis(float u, int64_t size) {
  const float hi = static_cast<float>(size - 1);
  float v = ((u + 1.0f) * 0.5f) * hi;
  v = std::min(hi, std::max(v, 0.0f));
  const float f = std::floor(v);
  Lerp a;
  a.i0 = static_cast<int64_t>(f);
  a.i1 = std::min(a.i0 + 1, size - 1);
  a.w1 = v - f;
  a.w0 = (f + 1.0f) - v;
  return a;
}

// Splits keys [0, n_keys) into n_parts contiguous ranges of about equal histogram mass.
void balanced_bounds(const std::vector<int64_t>& hist, int n_parts, std::vector<int64_t>& bounds) {
  const int64_t n_keys = static_cast<int64_t>(hist.size());
  int64_t total = 0;
  for (int64_t h : hist) total += h;
  bounds.assign(n_parts + 1, n_keys);
  bounds[0] = 0;
  int64_t acc = 0, k = 0;
  for (int t = 1; t < n_parts; ++t) {
    const int64_t target = (total * t + n_parts - 1) / n_parts;
    while (k < n_keys && acc + hist[k] <= target) acc += hist[k++];
    bounds[t] = std::max(k, bounds[t - 1]);
  }
}

// Histogram of keys -> per-thread [lo, hi) key range (shared by the three backward passes).
// key_pair(i, k0, k1) gives the two keys item i touches.
template <class KeyPair>
void partition(int64_t n_items, int64_t n_keys, KeyPair key_pair, int& n_parts, std::vector<int64_t>& hist_all,
               std::vector<int64_t>& bounds) {
  const int tid = omp_get_thread_num();
  int64_t* hist = hist_all.data() + tid * n_keys;
#pragma omp for schedule(static)
  for (int64_t i = 0; i < n_items; ++i) {
    int64_t k0, k1;
    key_pair(i, k0, k1);
    hist[k0] += 1;
    hist[k1] += 1;
  }
#pragma omp single
  {
    n_parts = omp_get_num_threads();
    std::vector<int64_t> merged(n_keys, 0);
    for (int t = 0; t < n_parts; ++t)
      for (int64_t k = 0; k < n_keys; ++k) merged[k] += hist_all[t * n_keys + k];
    balanced_bounds(merged, n_parts, bounds);
  }  // implicit barrier
}

inline void axpy(float* dst, const float* src, float w, int64_t c) {
  for (int64_t k = 0; k < c; ++k) dst[k] += w * src[k];
}

}  // namespace

namespace v3kd {

// grid [D, H, W, C], x [N, 3] (x -> W, y -> H, z -> D), out [N, C].
void volume_forward(const float* grid, int64_t d, int64_t h, int64_t w, int64_t c, const float* x, int64_t n,
                    float* out, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static, 256)
  for (int64_t i = 0; i < n; ++i) {
    const Lerp ax = axis(x[3 * i], w), ay = axis(x[3 * i + 1], h), az = axis(x[3 * i + 2], d);
    const float* p[8];
    float wt[8];
    for (int k = 0; k < 8; ++k) {
      const int64_t zi = (k & 4) ? az.i1 : az.i0, yi = (k & 2) ? ay.i1 : ay.i0, xi = (k & 1) ? ax.i1 : ax.i0;
      p[k] = grid + ((zi * h + yi) * w + xi) * c;
      wt[k] = ((k & 1) ? ax.w1 : ax.w0) * ((k & 2) ? ay.w1 : ay.w0) * ((k & 4) ? az.w1 : az.w0);
    }
    float* o = out + i * c;
    for (int64_t ch = 0; ch < c; ++ch) {
      o[ch] = wt[0] * p[0][ch] + wt[1] * p[1][ch] + wt[2] * p[2][ch] + wt[3] * p[3][ch] + wt[4] * p[4][ch] +
              wt[5] * p[5][ch] + wt[6] * p[6][ch] + wt[7] * p[7][ch];
    }
  }
}

// grad_out [N, C] -> grad_grid [D, H, W, C] (fully overwritten).
void volume_backward(const float* grad_out, const float* x, int64_t n, int64_t d, int64_t h, int64_t w, int64_t c,
                     float* grad_grid, int nt) {
  std::vector<int64_t> hist_all(static_cast<size_t>(nt) * d, 0), bounds;
  int n_parts = 1;
  const int64_t slice = h * w * c;
#pragma omp parallel num_threads(nt)
  {
    partition(
        n, d,
        [&](int64_t i, int64_t& k0, int64_t& k1) {
          const Lerp az = axis(x[3 * i + 2], d);
          k0 = az.i0;
          k1 = az.i1;
        },
        n_parts, hist_all, bounds);
    const int tid = omp_get_thread_num();
    const int64_t lo = bounds[tid], hi = bounds[tid + 1];
    std::fill(grad_grid + lo * slice, grad_grid + hi * slice, 0.0f);
    if (lo < hi) {
      for (int64_t i = 0; i < n; ++i) {
        const Lerp az = axis(x[3 * i + 2], d);
        const bool in0 = az.i0 >= lo && az.i0 < hi, in1 = az.i1 >= lo && az.i1 < hi;
        if (!in0 && !in1) continue;
        const Lerp ax = axis(x[3 * i], w), ay = axis(x[3 * i + 1], h);
        const float* g = grad_out + i * c;
        for (int kz = 0; kz < 2; ++kz) {
          if (!(kz ? in1 : in0)) continue;
          const int64_t zi = kz ? az.i1 : az.i0;
          const float wz = kz ? az.w1 : az.w0;
          for (int k = 0; k < 4; ++k) {
            const int64_t yi = (k & 2) ? ay.i1 : ay.i0, xi = (k & 1) ? ax.i1 : ax.i0;
            const float wk = ((k & 1) ? ax.w1 : ax.w0) * ((k & 2) ? ay.w1 : ay.w0) * wz;
            axpy(grad_grid + ((zi * h + yi) * w + xi) * c, g, wk, c);
          }
        }
      }
    }
  }
}

// planes [P, H, W, C], uv [P, N, 2] (u -> W, v -> H), out [P, N, C].
void planes_forward(const float* planes, int64_t np, int64_t h, int64_t w, int64_t c, const float* uv, int64_t n,
                    float* out, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static, 256)
  for (int64_t j = 0; j < np * n; ++j) {
    const float* base = planes + (j / n) * h * w * c;
    const Lerp ax = axis(uv[2 * j], w), ay = axis(uv[2 * j + 1], h);
    const float* p00 = base + (ay.i0 * w + ax.i0) * c;
    const float* p01 = base + (ay.i0 * w + ax.i1) * c;
    const float* p10 = base + (ay.i1 * w + ax.i0) * c;
    const float* p11 = base + (ay.i1 * w + ax.i1) * c;
    const float w00 = ax.w0 * ay.w0, w01 = ax.w1 * ay.w0, w10 = ax.w0 * ay.w1, w11 = ax.w1 * ay.w1;
    float* o = out + j * c;
    for (int64_t ch = 0; ch < c; ++ch) o[ch] = w00 * p00[ch] + w01 * p01[ch] + w10 * p10[ch] + w11 * p11[ch];
  }
}

// grad_out [P, N, C] -> grad_planes [P, H, W, C] (fully overwritten). Keys are rows p * H + y.
void planes_backward(const float* grad_out, const float* uv, int64_t np, int64_t n, int64_t h, int64_t w, int64_t c,
                     float* grad_planes, int nt) {
  const int64_t n_keys = np * h, row = w * c;
  std::vector<int64_t> hist_all(static_cast<size_t>(nt) * n_keys, 0), bounds;
  int n_parts = 1;
#pragma omp parallel num_threads(nt)
  {
    partition(
        np * n, n_keys,
        [&](int64_t j, int64_t& k0, int64_t& k1) {
          const Lerp ay = axis(uv[2 * j + 1], h);
          k0 = (j / n) * h + ay.i0;
          k1 = (j / n) * h + ay.i1;
        },
        n_parts, hist_all, bounds);
    const int tid = omp_get_thread_num();
    const int64_t lo = bounds[tid], hi = bounds[tid + 1];
    std::fill(grad_planes + lo * row, grad_planes + hi * row, 0.0f);
    for (int64_t p = lo / std::max<int64_t>(h, 1); lo < hi && p < np && p * h < hi; ++p) {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t j = p * n + i;
        const Lerp ay = axis(uv[2 * j + 1], h);
        const int64_t k0 = p * h + ay.i0, k1 = p * h + ay.i1;
        const bool in0 = k0 >= lo && k0 < hi, in1 = k1 >= lo && k1 < hi;
        if (!in0 && !in1) continue;
        const Lerp ax = axis(uv[2 * j], w);
        const float* g = grad_out + j * c;
        if (in0) {
          float* r0 = grad_planes + k0 * row;
          axpy(r0 + ax.i0 * c, g, ax.w0 * ay.w0, c);
          axpy(r0 + ax.i1 * c, g, ax.w1 * ay.w0, c);
        }
        if (in1) {
          float* r1 = grad_planes + k1 * row;
          axpy(r1 + ax.i0 * c, g, ax.w0 * ay.w1, c);
          axpy(r1 + ax.i1 * c, g, ax.w1 * ay.w1, c);
        }
      }
    }
  }
}

// lines [P, L, C], t [P, N], out [P, N, C].
void lines_forward(const float* lines, int64_t np, int64_t len, int64_t c, const float* t, int64_t n, float* out,
                   int nt) {
#pragma omp parallel for num_threads(nt) schedule(static, 256)
  for (int64_t j = 0; j < np * n; ++j) {
    const float* base = lines + (j / n) * len * c;
    const Lerp a = axis(t[j], len);
    const float* p0 = base + a.i0 * c;
    const float* p1 = base + a.i1 * c;
    float* o = out + j * c;
    for (int64_t ch = 0; ch < c; ++ch) o[ch] = a.w0 * p0[ch] + a.w1 * p1[ch];
  }
}

// grad_out [P, N, C] -> grad_lines [P, L, C] (fully overwritten). Keys are cells p * L + i.
void lines_backward(const float* grad_out, const float* t, int64_t np, int64_t n, int64_t len, int64_t c,
                    float* grad_lines, int nt) {
  const int64_t n_keys = np * len;
  std::vector<int64_t> hist_all(static_cast<size_t>(nt) * n_keys, 0), bounds;
  int n_parts = 1;
#pragma omp parallel num_threads(nt)
  {
    partition(
        np * n, n_keys,
        [&](int64_t j, int64_t& k0, int64_t& k1) {
          const Lerp a = axis(t[j], len);
          k0 = (j / n) * len + a.i0;
          k1 = (j / n) * len + a.i1;
        },
        n_parts, hist_all, bounds);
    const int tid = omp_get_thread_num();
    const int64_t lo = bounds[tid], hi = bounds[tid + 1];
    std::fill(grad_lines + lo * c, grad_lines + hi * c, 0.0f);
    for (int64_t p = lo / std::max<int64_t>(len, 1); lo < hi && p < np && p * len < hi; ++p) {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t j = p * n + i;
        const Lerp a = axis(t[j], len);
        const int64_t k0 = p * len + a.i0, k1 = p * len + a.i1;
        const float* g = grad_out + j * c;
        if (k0 >= lo && k0 < hi) axpy(grad_lines + k0 * c, g, a.w0, c);
        if (k1 >= lo && k1 < hi) axpy(grad_lines + k1 * c, g, a.w1, c);
      }
    }
  }
}

}  // namespace v3kd
