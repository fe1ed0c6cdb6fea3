// Fused channels-last grid interpolation (trilinear volume, bilinear planes, linear lines), CPU +
// OpenMP. Plain C++ on raw pointers: kernels/grid.py checks and allocates, bindings.cpp binds.
//
// Conventions of F.grid_sample(align_corners=True, padding_mode='border'): a coordinate u in [-1, 1]
// maps to v = clamp((u + 1) / 2 * (size - 1), 0, size - 1); corners floor(v) and floor(v) + 1 (the
// latter clamped; its weight is 0 at the border) with weights floor(v) + 1 - v and v - floor(v).
//
// Memory locality: the samples are first counting-sorted (stable) by the grid row they read
// (volume: z * H + y; planes: p * H + y; lines: p * L + i), and both passes visit them in that order,
// so the rows being read or written stay in cache even for scattered samples.
//
// Backward without atomics: a "bucket" is the set of samples whose lower corner lies in region b
// (volume: slice z; planes: row; lines: cell); it writes regions b and b + 1 only. Even buckets run
// in parallel first (each zeroes regions b and b + 1, then scatters), then odd buckets. Every
// gradient cell therefore sums its contributions in a fixed order: deterministic, and independent
// of the thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
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

// Stable parallel counting sort of items by key_of(i) in [0, n_keys): order [n] and starts [n_keys + 1].
template <class KeyOf>
void counting_sort(int64_t n, int64_t n_keys, KeyOf key_of, int32_t* order, int64_t* starts, int nt) {
  std::vector<int32_t> keys(static_cast<size_t>(n));
  std::vector<int64_t> hist(static_cast<size_t>(nt) * n_keys);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
    const int64_t a = n * t / team, b = n * (t + 1) / team;
    int64_t* h = hist.data() + t * n_keys;
    std::fill(h, h + n_keys, 0);
    for (int64_t i = a; i < b; ++i) {
      const int32_t k = key_of(i);
      keys[i] = k;
      ++h[k];
    }
#pragma omp barrier
#pragma omp single
    {
      int64_t acc = 0;
      for (int64_t k = 0; k < n_keys; ++k) {
        starts[k] = acc;
        for (int tt = 0; tt < team; ++tt) {
          const int64_t v = hist[tt * n_keys + k];
          hist[tt * n_keys + k] = acc;
          acc += v;
        }
      }
      starts[n_keys] = acc;
    }  // implicit barrier
    for (int64_t i = a; i < b; ++i) order[h[keys[i]]++] = static_cast<int32_t>(i);
  }
}

// Visits every item in sorted order: fn(item).
template <class Fn>
void for_sorted(const int32_t* order, int64_t n, Fn fn, int nt) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 2048)
  for (int64_t j = 0; j < n; ++j) fn(static_cast<int64_t>(order[j]));
}

// Two-phase bucket scatter (see the file comment). Bucket b holds the sorted items with keys in
// [b * keys_per_bucket, (b + 1) * keys_per_bucket) and owns grad[b * region, (b + 1) * region).
template <class Scatter>
void bucket_scatter(const int32_t* order, const int64_t* starts, int64_t n_buckets, int64_t keys_per_bucket,
                    float* grad, int64_t region, int64_t chunk, Scatter scatter, int nt) {
#pragma omp parallel num_threads(nt)
  for (int phase = 0; phase < 2; ++phase) {
#pragma omp for schedule(dynamic, chunk)
    for (int64_t half = 0; half < (n_buckets + 1 - phase) / 2; ++half) {
      const int64_t b = 2 * half + phase;
      if (phase == 0) {
        const int64_t end = std::min(b + 2, n_buckets);
        std::fill(grad + b * region, grad + end * region, 0.0f);
      }
      const int64_t j1 = starts[(b + 1) * keys_per_bucket];
      for (int64_t j = starts[b * keys_per_bucket]; j < j1; ++j) scatter(static_cast<int64_t>(order[j]));
    }
  }
}

// dst[:c] += w * src[:c]; CT > 0 fixes c at compile time.
template <int64_t CT = 0>
inline void axpy(float* __restrict dst, const float* __restrict src, float w, int64_t c) {
  const int64_t nc = CT > 0 ? CT : c;
  for (int64_t k = 0; k < nc; ++k) dst[k] += w * src[k];
}

template <int64_t V>
using CInt = std::integral_constant<int64_t, V>;

// Calls fn(CInt<C>) for common channel counts (loops unrolled at compile time), else fn(CInt<0>).
#define V3KD_DISPATCH_C(c, fn)              \
  switch (c) {                              \
    case 1: fn(CInt<1>{}); break;           \
    case 2: fn(CInt<2>{}); break;           \
    case 4: fn(CInt<4>{}); break;           \
    case 8: fn(CInt<8>{}); break;           \
    case 12: fn(CInt<12>{}); break;         \
    case 16: fn(CInt<16>{}); break;         \
    case 24: fn(CInt<24>{}); break;         \
    case 32: fn(CInt<32>{}); break;         \
    case 48: fn(CInt<48>{}); break;         \
    default: fn(CInt<0>{}); break;          \
  }

}  // namespace

namespace v3kd {

// ---- volume: grid [D, H, W, C], x [N, 3] (x -> W, y -> H, z -> D) -------------------------------

// order [N], starts [D * H + 1]: samples sorted by row z0 * H + y0.
void volume_sort(const float* x, int64_t n, int64_t d, int64_t h, int32_t* order, int64_t* starts, int nt) {
  counting_sort(
      n, d * h,
      [&](int64_t i) { return static_cast<int32_t>(axis(x[3 * i + 2], d).i0 * h + axis(x[3 * i + 1], h).i0); },
      order, starts, nt);
}

void volume_forward(const float* grid, int64_t d, int64_t h, int64_t w, int64_t c, const float* x,
                    const int32_t* order, int64_t n, float* out, int nt) {
  V3KD_DISPATCH_C(c, [&](auto cc) {
    constexpr int64_t CT = decltype(cc)::value;
    for_sorted(
        order, n,
        [&](int64_t i) {
          const int64_t nc = CT > 0 ? CT : c;
          const Lerp ax = axis(x[3 * i], w), ay = axis(x[3 * i + 1], h), az = axis(x[3 * i + 2], d);
          const float* p[8];
          float wt[8];
          for (int k = 0; k < 8; ++k) {
            const int64_t zi = (k & 4) ? az.i1 : az.i0, yi = (k & 2) ? ay.i1 : ay.i0;
            const int64_t xi = (k & 1) ? ax.i1 : ax.i0;
            p[k] = grid + ((zi * h + yi) * w + xi) * nc;
            wt[k] = ((k & 1) ? ax.w1 : ax.w0) * ((k & 2) ? ay.w1 : ay.w0) * ((k & 4) ? az.w1 : az.w0);
          }
          float* o = out + i * nc;
          for (int64_t ch = 0; ch < nc; ++ch) {
            o[ch] = wt[0] * p[0][ch] + wt[1] * p[1][ch] + wt[2] * p[2][ch] + wt[3] * p[3][ch] +
                    wt[4] * p[4][ch] + wt[5] * p[5][ch] + wt[6] * p[6][ch] + wt[7] * p[7][ch];
          }
        },
        nt);
  });
}

// grad_out [N, C] -> grad_grid [D, H, W, C] (fully overwritten); buckets are z slices.
void volume_backward(const float* grad_out, const float* x, const int32_t* order, const int64_t* starts, int64_t n,
                     int64_t d, int64_t h, int64_t w, int64_t c, float* grad_grid, int nt) {
  (void)n;
  V3KD_DISPATCH_C(c, [&](auto cc) {
    constexpr int64_t CT = decltype(cc)::value;
    bucket_scatter(
        order, starts, d, h, grad_grid, h * w * c, 1,
        [&](int64_t i) {
          const int64_t nc = CT > 0 ? CT : c;
          const Lerp ax = axis(x[3 * i], w), ay = axis(x[3 * i + 1], h), az = axis(x[3 * i + 2], d);
          const float* g = grad_out + i * nc;
          for (int k = 0; k < 8; ++k) {
            const int64_t zi = (k & 4) ? az.i1 : az.i0, yi = (k & 2) ? ay.i1 : ay.i0;
            const int64_t xi = (k & 1) ? ax.i1 : ax.i0;
            const float wk = ((k & 1) ? ax.w1 : ax.w0) * ((k & 2) ? ay.w1 : ay.w0) * ((k & 4) ? az.w1 : az.w0);
            axpy<CT>(grad_grid + ((zi * h + yi) * w + xi) * nc, g, wk, nc);
          }
        },
        nt);
  });
}

// ---- planes: planes [P, H, W, C], uv [P, N, 2] (u -> W, v -> H) -----------------------------------

// order [P * N], starts [P * H + 1]: samples sorted by row p * H + y0.
void planes_sort(const float* uv, int64_t np, int64_t n, int64_t h, int32_t* order, int64_t* starts, int nt) {
  counting_sort(
      np * n, np * h, [&](int64_t j) { return static_cast<int32_t>((j / n) * h + axis(uv[2 * j + 1], h).i0); },
      order, starts, nt);
}

void planes_forward(const float* planes, int64_t np, int64_t h, int64_t w, int64_t c, const float* uv,
                    const int32_t* order, int64_t n, float* out, int nt) {
  for_sorted(
      order, np * n,
      [&](int64_t j) {
        const float* base = planes + (j / n) * h * w * c;
        const Lerp ax = axis(uv[2 * j], w), ay = axis(uv[2 * j + 1], h);
        const float* p00 = base + (ay.i0 * w + ax.i0) * c;
        const float* p01 = base + (ay.i0 * w + ax.i1) * c;
        const float* p10 = base + (ay.i1 * w + ax.i0) * c;
        const float* p11 = base + (ay.i1 * w + ax.i1) * c;
        const float w00 = ax.w0 * ay.w0, w01 = ax.w1 * ay.w0, w10 = ax.w0 * ay.w1, w11 = ax.w1 * ay.w1;
        float* o = out + j * c;
        for (int64_t ch = 0; ch < c; ++ch) o[ch] = w00 * p00[ch] + w01 * p01[ch] + w10 * p10[ch] + w11 * p11[ch];
      },
      nt);
}

// grad_out [P, N, C] -> grad_planes [P, H, W, C] (fully overwritten); buckets are rows.
void planes_backward(const float* grad_out, const float* uv, const int32_t* order, const int64_t* starts,
                     int64_t np, int64_t n, int64_t h, int64_t w, int64_t c, float* grad_planes, int nt) {
  bucket_scatter(
      order, starts, np * h, 1, grad_planes, w * c, 4,
      [&](int64_t j) {
        float* base = grad_planes + (j / n) * h * w * c;
        const Lerp ax = axis(uv[2 * j], w), ay = axis(uv[2 * j + 1], h);
        const float* g = grad_out + j * c;
        axpy(base + (ay.i0 * w + ax.i0) * c, g, ax.w0 * ay.w0, c);
        axpy(base + (ay.i0 * w + ax.i1) * c, g, ax.w1 * ay.w0, c);
        axpy(base + (ay.i1 * w + ax.i0) * c, g, ax.w0 * ay.w1, c);
        axpy(base + (ay.i1 * w + ax.i1) * c, g, ax.w1 * ay.w1, c);
      },
      nt);
}

// ---- lines: lines [P, L, C], t [P, N] -------------------------------------------------------------

// order [P * N], starts [P * L + 1]: samples sorted by cell p * L + i0.
void lines_sort(const float* t, int64_t np, int64_t n, int64_t len, int32_t* order, int64_t* starts, int nt) {
  counting_sort(
      np * n, np * len, [&](int64_t j) { return static_cast<int32_t>((j / n) * len + axis(t[j], len).i0); },
      order, starts, nt);
}

void lines_forward(const float* lines, int64_t np, int64_t len, int64_t c, const float* t, const int32_t* order,
                   int64_t n, float* out, int nt) {
  for_sorted(
      order, np * n,
      [&](int64_t j) {
        const float* base = lines + (j / n) * len * c;
        const Lerp a = axis(t[j], len);
        const float* p0 = base + a.i0 * c;
        const float* p1 = base + a.i1 * c;
        float* o = out + j * c;
        for (int64_t ch = 0; ch < c; ++ch) o[ch] = a.w0 * p0[ch] + a.w1 * p1[ch];
      },
      nt);
}

// grad_out [P, N, C] -> grad_lines [P, L, C] (fully overwritten); buckets are cells.
void lines_backward(const float* grad_out, const float* t, const int32_t* order, const int64_t* starts, int64_t np,
                    int64_t n, int64_t len, int64_t c, float* grad_lines, int nt) {
  bucket_scatter(
      order, starts, np * len, 1, grad_lines, c, 16,
      [&](int64_t j) {
        float* base = grad_lines + (j / n) * len * c;
        const Lerp a = axis(t[j], len);
        const float* g = grad_out + j * c;
        axpy(base + a.i0 * c, g, a.w0, c);
        axpy(base + a.i1 * c, g, a.w1, c);
      },
      nt);
}

}  // namespace v3kd
