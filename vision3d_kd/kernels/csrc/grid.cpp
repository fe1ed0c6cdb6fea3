// Fused channels-last grid interpolation (trilinear volume, bilinear planes, linear lines), CPU +
// OpenMP. Plain C++ on raw pointers: kernels/grid.py checks and allocates, bindings.cpp binds.
//
// Conventions of F.grid_sample(align_corners=True, padding_mode='border'): a coordinate u in [-1, 1]
// maps to v = clamp((u + 1) / 2 * (size - 1), 0, size - 1); corners floor(v) and floor(v) + 1 (the
// latter clamped; its weight is 0 at the border) with weights floor(v) + 1 - v and v - floor(v).
// A NaN coordinate gives NaN outputs (and gradients), never an out-of-range read.
//
// Samples are processed in blocks of kB: a vectorised pass computes every corner offset and weight
// of the block (structure of arrays), a second pass prefetches the rows the block will touch, and
// the last pass gathers (forward) or scatters (backward), with many cache misses in flight at once.
//
// When a gradient is needed, the forward also counting-sorts the samples (stable) by the grid row of
// their lower corner (volume: z * H + y; planes: p * H + y; lines: p * L + i) and keeps a sorted copy
// of the coordinates, so the backward sweeps the gradient row by row (cache-friendly writes).
//
// Backward without atomics (owner computes): "bucket" b holds the samples whose lower corner lies in
// region b (volume: slice z; planes: row; lines: cell); it writes regions b and b + 1 only. A task
// owns a contiguous range of regions [lo, hi), zeroes each just before its first write, and walks
// buckets lo - 1 .. hi - 1 in order, adding only the corners inside its range. Every gradient cell
// sums its contributions in the same order (bucket b - 1, then bucket b, samples in sorted order):
// deterministic, and independent of the thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kB = 128;  // samples per block

// Corner offsets (in floats, relative to the grid or plane base) and weights of a block, per axis.
struct Block {
  int64_t base[kB];           // offset of the lower corner
  int64_t step[3][kB];        // offset from lower to upper corner along x (W), y (H), z (D); 0 at a border
  float w0[3][kB], w1[3][kB];  // lower / upper weight per axis
  int64_t lower[3][kB];       // lower corner index per axis
};

// Continuous grid coordinate of u in [-1, 1], clamped to [0, size - 1]; NaN maps to 0 (a valid
// corner) and the caller adds nan_of(u) to the weights so that the output is NaN, not a clamp.
inline float grid_coord(float u, float hi) {
  const float v = ((u + 1.0f) * 0.5f) * hi;
  const float lo_clamped = v > 0.0f ? v : 0.0f;  // ternaries (std::min/max take references) vectorise
  return lo_clamped < hi ? lo_clamped : hi;
}

inline float nan_of(float u) { return u == u ? 0.0f : u; }

// Fills axis a of the block for m coordinates u[k * stride]; vectorises.
inline void block_axis(Block& b, int a, const float* u, int64_t stride, int64_t m, int64_t size) {
  const float hi = static_cast<float>(size - 1);
#pragma omp simd
  for (int64_t k = 0; k < m; ++k) {
    const float v = grid_coord(u[k * stride], hi);
    const int32_t i0 = static_cast<int32_t>(v);  // v >= 0: truncation is floor (and vectorises)
    const float f = static_cast<float>(i0);
    const float nan = nan_of(u[k * stride]);
    b.lower[a][k] = i0;
    b.step[a][k] = (i0 + 1 < size) ? 1 : 0;
    b.w1[a][k] = (v - f) + nan;
    b.w0[a][k] = ((f + 1.0f) - v) + nan;
  }
}

// Fills base offsets and scales the steps: strides[a] = floats between neighbours along axis a.
inline void block_offsets(Block& b, int dims, const int64_t* strides, int64_t m) {
  for (int64_t k = 0; k < m; ++k) {
    int64_t off = 0;
    for (int a = 0; a < dims; ++a) {
      off += b.lower[a][k] * strides[a];
      b.step[a][k] *= strides[a];
    }
    b.base[k] = off;
  }
}

inline void prefetch_span(const float* p, int64_t floats) {
  const char* c = reinterpret_cast<const char*>(p);
  const int64_t bytes = floats * 4;
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off);
  __builtin_prefetch(c + bytes - 1);
}

// dst[:c] += w * src[:c]; CT > 0 fixes c at compile time.
template <int64_t CT = 0>
inline void axpy(float* __restrict dst, const float* __restrict src, float w, int64_t c) {
  const int64_t nc = CT > 0 ? CT : c;
  for (int64_t k = 0; k < nc; ++k) dst[k] += w * src[k];
}

template <int64_t V>
using CInt = std::integral_constant<int64_t, V>;

// Calls fn(CInt<C>{}) for common channel counts (loops unrolled at compile time), else fn(CInt<0>{}).
#define V3KD_DISPATCH_C(c, ...)             \
  do {                                       \
    auto v3kd_fn_ = __VA_ARGS__;             \
    switch (c) {                             \
      case 1: v3kd_fn_(CInt<1>{}); break;    \
      case 2: v3kd_fn_(CInt<2>{}); break;    \
      case 4: v3kd_fn_(CInt<4>{}); break;    \
      case 8: v3kd_fn_(CInt<8>{}); break;    \
      case 12: v3kd_fn_(CInt<12>{}); break;  \
      case 16: v3kd_fn_(CInt<16>{}); break;  \
      case 24: v3kd_fn_(CInt<24>{}); break;  \
      case 32: v3kd_fn_(CInt<32>{}); break;  \
      case 48: v3kd_fn_(CInt<48>{}); break;  \
      default: v3kd_fn_(CInt<0>{}); break;   \
    }                                        \
  } while (0)

// Stable parallel counting sort of items by key_of(i) in [0, n_keys): order [n], starts [n_keys + 1],
// and sorted[j * dim + k] = coords[order[j] * dim + k] (the coordinates in sorted order).
template <class KeyOf>
void counting_sort(int64_t n, int64_t n_keys, KeyOf key_of, const float* coords, int dim, int32_t* order,
                   int64_t* starts, float* sorted, int nt) {
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
    for (int64_t i = a; i < b; ++i) {
      const int64_t j = h[keys[i]]++;
      order[j] = static_cast<int32_t>(i);
      for (int k = 0; k < dim; ++k) sorted[j * dim + k] = coords[i * dim + k];
    }
  }
}

// Lower corner index along one axis (as block_axis computes it).
inline int32_t lower_index(float u, int64_t size) {
  return static_cast<int32_t>(grid_coord(u, static_cast<float>(size - 1)));
}

// fn(i0, m) for blocks [i0, i0 + m) covering [0, n).
template <class Fn>
void for_each_block(int64_t n, Fn fn, int nt) {
  const int64_t n_blocks = (n + kB - 1) / kB;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 16)
  for (int64_t blk = 0; blk < n_blocks; ++blk) fn(blk * kB, std::min(kB, n - blk * kB));
}

// Copies n floats to dst with non-temporal stores where the ISA has them: each gradient region is
// written once, so this saves reading it into the cache first (read-for-ownership).
inline void stream_copy(float* dst, const float* src, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__) || defined(__AVX__) || defined(__SSE2__)
#if defined(__AVX512F__)
  constexpr int64_t kV = 16;
#elif defined(__AVX__)
  constexpr int64_t kV = 8;
#else
  constexpr int64_t kV = 4;
#endif
  for (; i < n && reinterpret_cast<std::uintptr_t>(dst + i) % (4 * kV) != 0; ++i) dst[i] = src[i];
  for (; i + kV <= n; i += kV) {
#if defined(__AVX512F__)
    _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
#elif defined(__AVX__)
    _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
#else
    _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
#endif
  }
#endif
  for (; i < n; ++i) dst[i] = src[i];
}

// Where a task accumulates region r: large regions go to a two-slot scratch ring (cache resident,
// streamed out once complete), small ones straight into the gradient.
struct Target {
  float* grad;
  int64_t region;
  float* slot[2];
  bool staged;
  // Address of absolute offset off, which lies in region r.
  float* at(int64_t r, int64_t off) const { return staged ? slot[r & 1] + (off - r * region) : grad + off; }
};

constexpr int64_t kStageMin = 1 << 12, kStageMax = 1 << 22;  // region sizes (floats) that are staged

// Owner-computes scatter (see the file comment). Region r is grad[r * region, (r + 1) * region); bucket
// b holds the sorted items [starts[b * kpb], starts[(b + 1) * kpb]). scatter(j0, m, lo, hi, target)
// handles the sorted items [j0, j0 + m) and must add only corners in regions [lo, hi), at target.at().
// Region r is complete after bucket r, which is when a staged region is streamed out.
template <class Scatter>
void owned_scatter(const int64_t* starts, int64_t n_regions, int64_t kpb, float* grad, int64_t region,
                   Scatter scatter, int nt) {
  const int64_t per_task = std::max<int64_t>(2, (n_regions + 8 * nt - 1) / (8 * nt));
  const int64_t n_tasks = (n_regions + per_task - 1) / per_task;
  const bool staged = region >= kStageMin && region <= kStageMax;
#pragma omp parallel num_threads(nt)
  {
    thread_local std::vector<float> scratch;  // OpenMP threads persist: reused across calls
    if (staged && static_cast<int64_t>(scratch.size()) < 2 * region) scratch.resize(2 * region);
    const Target t{grad, region, {scratch.data(), scratch.data() + (staged ? region : 0)}, staged};
    auto zero = [&](int64_t r) { std::fill(t.at(r, r * region), t.at(r, r * region) + region, 0.0f); };
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < n_tasks; ++task) {
      const int64_t lo = task * per_task, hi = std::min(lo + per_task, n_regions);
      zero(lo);
      for (int64_t b = std::max<int64_t>(lo - 1, 0); b < hi; ++b) {
        if (b + 1 > lo && b + 1 < hi) zero(b + 1);
        const int64_t j1 = starts[(b + 1) * kpb];
        for (int64_t j = starts[b * kpb]; j < j1; j += kB) scatter(j, std::min(kB, j1 - j), lo, hi, t);
        if (staged && b >= lo) stream_copy(grad + b * region, t.at(b, b * region), region);
      }
    }
#if defined(__SSE2__)
    _mm_sfence();  // make the streamed stores visible before the region ends
#endif
  }
}

// Geometry of an interpolation: DIMS axes, axis 0 fastest (W, then H, then D); items are grouped in
// planes of per_plane items, plane p reading the grid at p * plane_stride (volume: one plane).
template <int DIMS>
struct Geo {
  int64_t size[DIMS];
  int64_t stride[DIMS];  // floats between neighbours along each axis
  int64_t per_plane, plane_stride;
};

// Offsets and weights of the items [i0, i0 + m) (coordinates at coords + i0 * DIMS; plane of item i0).
template <int DIMS>
inline void setup_block(Block& b, const Geo<DIMS>& g, const float* coords, int64_t i0, int64_t m,
                        const int32_t* order) {
  for (int a = 0; a < DIMS; ++a) block_axis(b, a, coords + i0 * DIMS + a, DIMS, m, g.size[a]);
  block_offsets(b, DIMS, g.stride, m);
  for (int64_t k = 0; k < m; ++k) {
    const int64_t item = order ? static_cast<int64_t>(order[i0 + k]) : i0 + k;
    b.base[k] += (item / g.per_plane) * g.plane_stride;
  }
}

// order == nullptr: coords in item order. Otherwise coords are sorted and item order[j] is at j.
template <int DIMS, int64_t CT>
void interp_forward(const Geo<DIMS>& g, const float* grid, int64_t c, const float* coords, const int32_t* order,
                    int64_t n_items, float* out, int nt) {
  const int64_t nc = CT > 0 ? CT : c;
  for_each_block(
      n_items,
      [&](int64_t i0, int64_t m) {
        Block b;
        setup_block<DIMS>(b, g, coords, i0, m, order);
        for (int64_t k = 0; k < m; ++k) {
          for (int q = 0; q < (1 << (DIMS - 1)); ++q) {
            int64_t off = b.base[k];
            for (int a = 1; a < DIMS; ++a) off += ((q >> (a - 1)) & 1) ? b.step[a][k] : 0;
            prefetch_span(grid + off, b.step[0][k] + nc);
          }
        }
        for (int64_t k = 0; k < m; ++k) {
          const float* p[1 << DIMS];
          float wt[1 << DIMS];
          for (int q = 0; q < (1 << DIMS); ++q) {
            int64_t off = b.base[k];
            float wq = 1.0f;
            for (int a = 0; a < DIMS; ++a) {
              const bool up = (q >> a) & 1;
              off += up ? b.step[a][k] : 0;
              wq = (a == 0) ? (up ? b.w1[0][k] : b.w0[0][k]) : wq * (up ? b.w1[a][k] : b.w0[a][k]);
            }
            p[q] = grid + off;
            wt[q] = wq;
          }
          float* o = out + (order ? static_cast<int64_t>(order[i0 + k]) : i0 + k) * nc;
          for (int64_t ch = 0; ch < nc; ++ch) {
            float acc = 0.0f;
            for (int q = 0; q < (1 << DIMS); ++q) acc += wt[q] * p[q][ch];
            o[ch] = acc;
          }
        }
      },
      nt);
}

// Regions are units of the outermost axis per plane (plane * size[DIMS - 1] + index).
template <int DIMS, int64_t CT>
void interp_backward(const Geo<DIMS>& g, const float* grad_out, int64_t c, const float* sorted,
                     const int32_t* order, const int64_t* starts, int64_t n_regions, int64_t kpb, float* grad,
                     int nt) {
  const int64_t nc = CT > 0 ? CT : c;
  constexpr int O = DIMS - 1;  // outermost axis
  owned_scatter(
      starts, n_regions, kpb, grad, g.stride[O],
      [&](int64_t j0, int64_t m, int64_t lo, int64_t hi, const Target& target) {
        Block b;
        for (int64_t k = 0; k < m; ++k) prefetch_span(grad_out + static_cast<int64_t>(order[j0 + k]) * nc, nc);
        setup_block<DIMS>(b, g, sorted, j0, m, order);
        for (int64_t k = 0; k < m; ++k) {
          const int64_t item = order[j0 + k];
          const float* src = grad_out + item * nc;
          const int64_t r0 = (item / g.per_plane) * g.size[O] + b.lower[O][k];
          for (int up_o = 0; up_o < 2; ++up_o) {
            const int64_t r = r0 + ((up_o && b.step[O][k] != 0) ? 1 : 0);
            if (r < lo || r >= hi) continue;
            for (int q = 0; q < (1 << O); ++q) {
              int64_t off = b.base[k] + (up_o ? b.step[O][k] : 0);
              float wq = up_o ? b.w1[O][k] : b.w0[O][k];
              for (int a = 0; a < O; ++a) {
                const bool up = (q >> a) & 1;
                off += up ? b.step[a][k] : 0;
                wq *= up ? b.w1[a][k] : b.w0[a][k];
              }
              axpy<CT>(target.at(r, off), src, wq, nc);
            }
          }
        }
      },
      nt);
}

template <int DIMS>
Geo<DIMS> make_geo(const int64_t* sizes, int64_t c, int64_t per_plane) {
  Geo<DIMS> g;
  int64_t s = c;
  for (int a = 0; a < DIMS; ++a) {
    g.size[a] = sizes[a];
    g.stride[a] = s;
    s *= sizes[a];
  }
  g.per_plane = per_plane;
  g.plane_stride = s;
  return g;
}

}  // namespace

namespace v3kd {

// Sorting for the backward: order [M], starts [K + 1], sorted coordinates [M, dim].
// volume (x [N, 3], keys z0 * H + y0), planes (uv [P, N, 2], keys p * H + y0), lines (t [P, N], p * L + i0).
void volume_sort(const float* x, int64_t n, int64_t d, int64_t h, int32_t* order, int64_t* starts, float* xs,
                 int nt) {
  auto key = [&](int64_t i) {
    return lower_index(x[3 * i + 2], d) * static_cast<int32_t>(h) + lower_index(x[3 * i + 1], h);
  };
  counting_sort(n, d * h, key, x, 3, order, starts, xs, nt);
}

void planes_sort(const float* uv, int64_t np, int64_t n, int64_t h, int32_t* order, int64_t* starts, float* uvs,
                 int nt) {
  auto key = [&](int64_t j) { return static_cast<int32_t>((j / n) * h) + lower_index(uv[2 * j + 1], h); };
  counting_sort(np * n, np * h, key, uv, 2, order, starts, uvs, nt);
}

void lines_sort(const float* t, int64_t np, int64_t n, int64_t len, int32_t* order, int64_t* starts, float* ts,
                int nt) {
  auto key = [&](int64_t j) { return static_cast<int32_t>((j / n) * len) + lower_index(t[j], len); };
  counting_sort(np * n, np * len, key, t, 1, order, starts, ts, nt);
}

// Forward: volume grid [D, H, W, C] at x [N, 3] -> [N, C]; planes [P, H, W, C] at uv [P, N, 2] ->
// [P, N, C]; lines [P, L, C] at t [P, N] -> [P, N, C]. With order (may be null) the coordinates are
// the sorted copy from *_sort (row-ordered reads: cache friendly for scattered samples).
void volume_forward(const float* grid, int64_t d, int64_t h, int64_t w, int64_t c, const float* x,
                    const int32_t* order, int64_t n, float* out, int nt) {
  const int64_t sizes[3] = {w, h, d};
  const auto g = make_geo<3>(sizes, c, std::max<int64_t>(n, 1));
  V3KD_DISPATCH_C(c, [&](auto cc) { interp_forward<3, decltype(cc)::value>(g, grid, c, x, order, n, out, nt); });
}

void planes_forward(const float* planes, int64_t np, int64_t h, int64_t w, int64_t c, const float* uv,
                    const int32_t* order, int64_t n, float* out, int nt) {
  const int64_t sizes[2] = {w, h};
  const auto g = make_geo<2>(sizes, c, std::max<int64_t>(n, 1));
  V3KD_DISPATCH_C(c, [&](auto cc) {
    interp_forward<2, decltype(cc)::value>(g, planes, c, uv, order, np * n, out, nt);
  });
}

void lines_forward(const float* lines, int64_t np, int64_t len, int64_t c, const float* t, const int32_t* order,
                   int64_t n, float* out, int nt) {
  const int64_t sizes[1] = {len};
  const auto g = make_geo<1>(sizes, c, std::max<int64_t>(n, 1));
  V3KD_DISPATCH_C(c, [&](auto cc) { interp_forward<1, decltype(cc)::value>(g, lines, c, t, order, np * n, out, nt); });
}

// Backward: grad_out of the forward -> gradient of the grid (fully overwritten), from the sort.
void volume_backward(const float* grad_out, const float* xs, const int32_t* order, const int64_t* starts,
                     int64_t d, int64_t h, int64_t w, int64_t c, float* grad_grid, int nt) {
  const int64_t sizes[3] = {w, h, d};
  const auto g = make_geo<3>(sizes, c, std::max<int64_t>(starts[d * h], 1));
  V3KD_DISPATCH_C(c, [&](auto cc) {
    interp_backward<3, decltype(cc)::value>(g, grad_out, c, xs, order, starts, d, h, grad_grid, nt);
  });
}

void planes_backward(const float* grad_out, const float* uvs, const int32_t* order, const int64_t* starts,
                     int64_t np, int64_t n, int64_t h, int64_t w, int64_t c, float* grad_planes, int nt) {
  const int64_t sizes[2] = {w, h};
  const auto g = make_geo<2>(sizes, c, std::max<int64_t>(n, 1));
  V3KD_DISPATCH_C(c, [&](auto cc) {
    interp_backward<2, decltype(cc)::value>(g, grad_out, c, uvs, order, starts, np * h, 1, grad_planes, nt);
  });
}

void lines_backward(const float* grad_out, const float* ts, const int32_t* order, const int64_t* starts, int64_t np,
                    int64_t n, int64_t len, int64_t c, float* grad_lines, int nt) {
  const int64_t sizes[1] = {len};
  const auto g = make_geo<1>(sizes, c, std::max<int64_t>(n, 1));
  V3KD_DISPATCH_C(c, [&](auto cc) {
    interp_backward<1, decltype(cc)::value>(g, grad_out, c, ts, order, starts, np * len, 1, grad_lines, nt);
  });
}

}  // namespace v3kd
