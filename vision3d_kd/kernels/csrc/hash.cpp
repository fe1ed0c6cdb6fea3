// Fused multiresolution hash encoding (Instant-NGP), CPU + OpenMP. Plain C++ on raw pointers:
// the Python wrapper (kernels/hash.py) checks shapes/dtypes and allocates; bindings.cpp binds.
//
// x: [N, 3] float32 in [0, 1]; table: [L, T, F] float32; resolutions: [L] int32.
// Output [N, L*F], level-major columns. Maths mirrors kernels/hash_ref.py exactly.
//
// Forward: blocks of kBlock points are independent tasks (no barrier per level); a task walks the
// levels and, per level, first computes all corner rows and weights of its block (prefetching the
// rows), then gathers, so many random table reads are in flight at once. The output rows of a
// block (kBlock * L * F floats) stay in L2 while the levels fill them.
// Backward: parallel over levels; each thread owns whole table blocks -> no atomics and a
// deterministic result (points visited in order). grad_out [N, L*F] is first transposed to a
// level-major scratch [L, N, F] so each level streams its own gradients. grad_out's rows may be strided
// (g_stride >= L*F floats apart: a slice of a wider gradient, no copy needed).
// Backward to the points (camera-pose refinement): parallel over blocks of points, each point's
// gradient a sum over levels and corners of <grad_out, row> times the corner weight's derivative.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr uint32_t kPrimeY = 2654435761u;
constexpr uint32_t kPrimeZ = 805459861u;

struct Level {
  int32_t res;
  uint32_t size;  // T
  bool dense;
  bool pow2;
};

inline Level make_level(int32_t res, int64_t table_size) {
  Level lv;
  lv.res = res;
  lv.size = static_cast<uint32_t>(table_size);
  const int64_t r1 = static_cast<int64_t>(res) + 1;
  lv.dense = r1 * r1 * r1 <= table_size;
  lv.pow2 = (table_size & (table_size - 1)) == 0;
  return lv;
}

// Rows of the 8 corners (bit k of the corner number = offset along axis k) and their weights; the
// fractional coordinates w (per axis) go to w_out when given.
inline void corners(const float* xp, const Level& lv, uint32_t* idx, float* wt, float* w_out = nullptr) {
  const float rf = static_cast<float>(lv.res);
  const float hi = static_cast<float>(lv.res - 1);
  uint32_t c[3];
  float w[3];
  for (int d = 0; d < 3; ++d) {
    const float p = xp[d] * rf;
    float cf = std::floor(p);
    cf = cf >= 0.0f ? cf : 0.0f;  // also maps NaN to 0: a valid row, and w stays NaN below
    cf = cf <= hi ? cf : hi;
    c[d] = static_cast<uint32_t>(cf);
    w[d] = p - cf;
    if (w_out != nullptr) w_out[d] = w[d];
  }
  uint32_t ax[2], ay[2], az[2];
  if (lv.dense) {
    const uint32_t r1 = static_cast<uint32_t>(lv.res) + 1u;
    ax[0] = c[0];
    ax[1] = c[0] + 1u;
    ay[0] = c[1] * r1;
    ay[1] = (c[1] + 1u) * r1;
    az[0] = c[2] * r1 * r1;
    az[1] = (c[2] + 1u) * r1 * r1;
  } else {
    ax[0] = c[0];
    ax[1] = c[0] + 1u;
    ay[0] = c[1] * kPrimeY;
    ay[1] = (c[1] + 1u) * kPrimeY;
    az[0] = c[2] * kPrimeZ;
    az[1] = (c[2] + 1u) * kPrimeZ;
  }
  const float wx[2] = {1.0f - w[0], w[0]};
  const float wy[2] = {1.0f - w[1], w[1]};
  const float wz[2] = {1.0f - w[2], w[2]};
  for (int k = 0; k < 8; ++k) {
    const int bx = k & 1, by = (k >> 1) & 1, bz = (k >> 2) & 1;
    uint32_t i;
    if (lv.dense) {
      i = ax[bx] + ay[by] + az[bz];
    } else {
      i = ax[bx] ^ ay[by] ^ az[bz];
      i = lv.pow2 ? (i & (lv.size - 1u)) : (i % lv.size);
    }
    idx[k] = i;
    wt[k] = wx[bx] * wy[by] * wz[bz];
  }
}

constexpr int64_t kBlock = 1024;

template <int F>
void block_forward(const float* x, const float* tab, const Level& lv, int64_t i0, int64_t i1, int nf,
                   int64_t out_stride, float* out, uint32_t* idx, float* wt) {
  const int f_count = F > 0 ? F : nf;
  for (int64_t i = i0; i < i1; ++i) {
    uint32_t* id = idx + 8 * (i - i0);
    corners(x + 3 * i, lv, id, wt + 8 * (i - i0));
    for (int k = 0; k < 8; ++k) __builtin_prefetch(tab + static_cast<int64_t>(id[k]) * f_count);
  }
  for (int64_t i = i0; i < i1; ++i) {
    const uint32_t* id = idx + 8 * (i - i0);
    const float* w = wt + 8 * (i - i0);
    float acc[F > 0 ? F : 64];
    for (int f = 0; f < f_count; ++f) acc[f] = 0.0f;
    for (int k = 0; k < 8; ++k) {
      const float* row = tab + static_cast<int64_t>(id[k]) * f_count;
      for (int f = 0; f < f_count; ++f) acc[f] += w[k] * row[f];
    }
    float* o = out + i * out_stride;
    for (int f = 0; f < f_count; ++f) o[f] = acc[f];
  }
}

template <int F>
void level_backward(const float* x, const float* g, const Level& lv, int64_t n, int nf, float* gtab) {
  const int f_count = F > 0 ? F : nf;
  std::vector<uint32_t> idx_buf(8 * kBlock);
  std::vector<float> wt_buf(8 * kBlock);
  uint32_t* idx = idx_buf.data();
  float* wt = wt_buf.data();
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t i1 = std::min(i0 + kBlock, n);
    for (int64_t i = i0; i < i1; ++i) {
      uint32_t* id = idx + 8 * (i - i0);
      corners(x + 3 * i, lv, id, wt + 8 * (i - i0));
      for (int k = 0; k < 8; ++k) __builtin_prefetch(gtab + static_cast<int64_t>(id[k]) * f_count, 1);
    }
    for (int64_t i = i0; i < i1; ++i) {
      const uint32_t* id = idx + 8 * (i - i0);
      const float* w = wt + 8 * (i - i0);
      const float* gi = g + i * f_count;
      for (int k = 0; k < 8; ++k) {
        float* row = gtab + static_cast<int64_t>(id[k]) * f_count;
        for (int f = 0; f < f_count; ++f) row[f] += w[k] * gi[f];
      }
    }
  }
}

// d(out)/d(x) contracted with grad_out, points i0..i1 of one level, accumulated into gx [N, 3].
// Weight of corner (bx, by, bz) = wx[bx] wy[by] wz[bz] with w = x * R - c (c constant), so
// d w / d x = R per axis; the border cell extrapolates linearly, exactly as the forward.
template <int F>
void block_backward_x(const float* x, const float* tab, const float* g, const Level& lv, int64_t i0, int64_t i1,
                      int nf, int64_t g_stride, float* gx) {
  const int f_count = F > 0 ? F : nf;
  const float rf = static_cast<float>(lv.res);
  uint32_t id[8];
  float wt[8];
  for (int64_t i = i0; i < i1; ++i) {
    const float* xp = x + 3 * i;
    float w[3];
    corners(xp, lv, id, wt, w);
    const float* gi = g + i * g_stride;
    float s[8];
    for (int k = 0; k < 8; ++k) {
      const float* row = tab + static_cast<int64_t>(id[k]) * f_count;
      float acc = 0.0f;
      for (int f = 0; f < f_count; ++f) acc += gi[f] * row[f];
      s[k] = acc;
    }
    const float wx[2] = {1.0f - w[0], w[0]}, wy[2] = {1.0f - w[1], w[1]}, wz[2] = {1.0f - w[2], w[2]};
    float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f;
    for (int k = 0; k < 8; ++k) {
      const int bx = k & 1, by = (k >> 1) & 1, bz = (k >> 2) & 1;
      d0 += s[k] * (bx ? 1.0f : -1.0f) * wy[by] * wz[bz];
      d1 += s[k] * wx[bx] * (by ? 1.0f : -1.0f) * wz[bz];
      d2 += s[k] * wx[bx] * wy[by] * (bz ? 1.0f : -1.0f);
    }
    float* o = gx + 3 * i;
    o[0] += rf * d0;
    o[1] += rf * d1;
    o[2] += rf * d2;
  }
}

#define V3KD_DISPATCH_F(nf, FN, ...)   \
  switch (nf) {                        \
    case 1: FN<1>(__VA_ARGS__); break; \
    case 2: FN<2>(__VA_ARGS__); break; \
    case 4: FN<4>(__VA_ARGS__); break; \
    case 8: FN<8>(__VA_ARGS__); break; \
    default: FN<0>(__VA_ARGS__); break; \
  }

}  // namespace

namespace v3kd {

// out: [N, L*F] in the first L*F columns of rows out_stride floats apart (>= L*F: the rest is the caller's).
void hash_forward(const float* x, const float* table, const int32_t* res, int64_t n, int64_t nl, int64_t ts,
                  int nf, float* out, int64_t out_stride, int nt) {
  std::vector<Level> levels;
  for (int64_t l = 0; l < nl; ++l) levels.push_back(make_level(res[l], ts));
  const int64_t n_blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel num_threads(nt)
  {
    std::vector<uint32_t> idx(8 * kBlock);
    std::vector<float> wt(8 * kBlock);
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t i0 = b * kBlock, i1 = std::min(i0 + kBlock, n);
      for (int64_t l = 0; l < nl; ++l) {
        V3KD_DISPATCH_F(nf, block_forward, x, table + l * ts * nf, levels[l], i0, i1, nf, out_stride, out + l * nf,
                        idx.data(), wt.data())
      }
    }
  }
}

// grad_table: [L, T, F] (any contents, fully overwritten); scratch: [L, N, F]; row i of grad_out at i * g_stride.
void hash_backward(const float* grad_out, int64_t g_stride, const float* x, const int32_t* res, int64_t n,
                   int64_t nl, int64_t ts, int nf, float* scratch, float* grad_table, int nt) {
#pragma omp parallel num_threads(nt)
  {
    // [N, L*F] -> level-major [L, N, F] so each level streams its own gradients.
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const float* g = grad_out + i * g_stride;
      for (int64_t l = 0; l < nl; ++l) {
        float* s = scratch + (l * n + i) * nf;
        for (int f = 0; f < nf; ++f) s[f] = g[l * nf + f];
      }
    }
    // One level per task: the thread zeroes and fills its own table block.
#pragma omp for schedule(dynamic, 1)
    for (int64_t l = 0; l < nl; ++l) {
      float* block = grad_table + l * ts * nf;
      std::fill(block, block + ts * nf, 0.0f);
      const Level lv = make_level(res[l], ts);
      V3KD_DISPATCH_F(nf, level_backward, x, scratch + l * n * nf, lv, n, nf, block)
    }
  }
}

// grad_x: [N, 3] (fully overwritten) = sum over levels of grad_out's level block through the weights; row i of
// grad_out at i * g_stride.
void hash_backward_x(const float* grad_out, int64_t g_stride, const float* x, const float* table, const int32_t* res,
                     int64_t n, int64_t nl, int64_t ts, int nf, float* grad_x, int nt) {
  std::vector<Level> levels;
  for (int64_t l = 0; l < nl; ++l) levels.push_back(make_level(res[l], ts));
  const int64_t n_blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int64_t i0 = b * kBlock, i1 = std::min(i0 + kBlock, n);
    std::fill(grad_x + 3 * i0, grad_x + 3 * i1, 0.0f);
    for (int64_t l = 0; l < nl; ++l) {
      V3KD_DISPATCH_F(nf, block_backward_x, x, table + l * ts * nf, grad_out + l * nf, levels[l], i0, i1, nf,
                      g_stride, grad_x)
    }
  }
}

}  // namespace v3kd
