// Tile rasterizer of projected 2D Gaussians (3D Gaussian Splatting compositing), forward and backward.
// Same maths as vision3d_kd/render/splat_torch.py (the reference): per pixel, the tile's Gaussians in
// depth order; alpha = min(0.99, o * exp(power)), power = -0.5 (a dx^2 + c dy^2) - b dx dy, skipped
// when power > 0 or alpha < 1/255; a Gaussian that would take the transmittance below 1e-4 ends the
// pixel. Pixel (x, y) is centred at (x + 0.5, y + 0.5).
//
// Parallel over tiles; inside a tile, all 16 rows advance together through the tile's depth-sorted
// list, each row of 16 pixels one vector of lanes (masks and selects instead of per-pixel branches). The backward writes one gradient row per (tile, Gaussian)
// pair, owned by the thread of its tile, and Python sums the rows per Gaussian: no atomics, and the
// result does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace v3kd {
namespace {
constexpr int kTile = 16;
constexpr int kLanes = kTile;
constexpr float kAlphaMin = 1.0f / 255.0f;
constexpr float kAlphaMax = 0.99f;
constexpr float kTMin = 1e-4f;

// One row of a tile = 16 pixel lanes, as a GCC/Clang vector type (AVX-512 with -march=native,
// narrower registers elsewhere). All per-pixel branches become lane masks and selects.
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
static_assert(sizeof(vf) / sizeof(float) == kLanes, "one vector per tile row");

// exp(x) lane-wise: 2^(x log2 e) with the integer part put in the exponent bits and 2^f, |f| <= 1/2,
// from a degree-6 polynomial (relative error ~2e-7, float rounding included). x is clamped to
// [-30, 0] (powers here are <= 0 where they count): exp(-30) ~ 1e-13 is far below any alpha that
// counts, and keeping products with opacity out of the denormal range keeps the arithmetic fast.
inline vf vexp(vf x) {
  x = x < -30.f ? vf{} - 30.f : x;
  x = x > 0.f ? vf{} : x;
  const vf t = x * 1.4426950408889634f;
  const vf n = (t + 12582912.f) - 12582912.f;  // round to nearest (|t| < 2^22)
  const vf f = t - n;
  vf p = 1.5337585e-04f + f * 0.f;
  p = p * f + 1.3399870e-03f;
  p = p * f + 9.6185198e-03f;
  p = p * f + 5.5503290e-02f;
  p = p * f + 2.4022646e-01f;
  p = p * f + 6.9314718e-01f;
  p = p * f + 1.0f;
  const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  return p * (vf)bits;  // vector casts reinterpret the bits
}

inline bool any_lane(vi m) {
  int32_t acc = 0;
  for (int l = 0; l < kLanes; ++l) acc |= m[l];
  return acc != 0;
}

inline float lane_sum(vf v) {
  float acc = 0.f;
  for (int l = 0; l < kLanes; ++l) acc += v[l];
  return acc;
}

// A tile's Gaussians, gathered into contiguous arrays (structure of arrays).
struct TileData {
  std::vector<float> mx, my, a, b, c, o, r, g, bl, z;
  void load(const float* m2d, const float* con, const float* col, const float* opa, const float* dep,
            const int64_t* ids, int64_t n) {
    for (auto* v : {&mx, &my, &a, &b, &c, &o, &r, &g, &bl, &z}) v->resize(n);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t i = ids[k];
      mx[k] = m2d[2 * i];
      my[k] = m2d[2 * i + 1];
      a[k] = con[3 * i];
      b[k] = con[3 * i + 1];
      c[k] = con[3 * i + 2];
      o[k] = opa[i];
      r[k] = col[3 * i];
      g[k] = col[3 * i + 1];
      bl[k] = col[3 * i + 2];
      z[k] = dep[i];
    }
  }
};
}  // namespace

void splat_forward(const float* m2d, const float* con, const float* col, const float* opa, const float* dep,
                   const int64_t* offsets, const int64_t* ids, int64_t ntx, int64_t nty, int64_t width,
                   int64_t height, const float* bg, float* out_rgb, float* out_alpha, float* out_depth,
                   int32_t* out_last, int nt) {
  vf lane_x{};
  for (int l = 0; l < kLanes; ++l) lane_x[l] = l + 0.5f;
#pragma omp parallel num_threads(nt)
  {
    TileData td;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < ntx * nty; ++t) {
      const int64_t s = offsets[t], n = offsets[t + 1] - s;
      td.load(m2d, con, col, opa, dep, ids + s, n);
      const int64_t x0 = (t % ntx) * kTile, y0 = (t / ntx) * kTile;
      const int lanes = static_cast<int>(std::min<int64_t>(kLanes, width - x0));
      const int rows = static_cast<int>(std::min<int64_t>(kTile, height - y0));
      vf T[kTile], cr[kTile], cg[kTile], cb[kTile], cd[kTile];
      vi last[kTile], live[kTile];
      vi lane_ok{};
      for (int l = 0; l < kLanes; ++l) lane_ok[l] = l < lanes ? -1 : 0;
      for (int j = 0; j < kTile; ++j) {
        T[j] = vf{} + 1.f;
        cr[j] = cg[j] = cb[j] = cd[j] = vf{};
        last[j] = vi{};
        live[j] = j < rows ? lane_ok : vi{};
      }
      const vf px = lane_x + static_cast<float>(x0);
      for (int64_t k = 0; k < n; ++k) {
        const float mx = td.mx[k], my = td.my[k], a = td.a[k], b = td.b[k], c = td.c[k], o = td.o[k];
        const float r = td.r[k], g = td.g[k], bl = td.bl[k], z = td.z[k];
        const int32_t kk = static_cast<int32_t>(k + 1);
        const vf dx = px - mx;
        const vf qa = -0.5f * a * dx * dx;
        vi any{};
        for (int j = 0; j < rows; ++j) {
          const float dy = static_cast<float>(y0 + j) + 0.5f - my;
          const vf power = qa - (0.5f * c * dy * dy) - b * dy * dx;
          const vf raw = o * vexp(power);
          const vf alpha = raw < kAlphaMax ? raw : vf{} + kAlphaMax;
          const vi valid = live[j] & (power <= 0.f) & (alpha >= kAlphaMin);
          const vf next = T[j] * (1.f - alpha);
          const vi stop = valid & (next < kTMin);
          const vi use = valid & ~stop;
          const vf w = use ? alpha * T[j] : vf{};
          cr[j] += w * r;
          cg[j] += w * g;
          cb[j] += w * bl;
          cd[j] += w * z;
          T[j] = use ? next : T[j];
          last[j] = use ? vi{} + kk : last[j];
          live[j] &= ~stop;
          any |= live[j];
        }
        if (!any_lane(any)) break;
      }
      for (int j = 0; j < rows; ++j) {
        for (int l = 0; l < lanes; ++l) {
          const int64_t p = (y0 + j) * width + x0 + l;
          out_rgb[3 * p] = cr[j][l] + T[j][l] * bg[0];
          out_rgb[3 * p + 1] = cg[j][l] + T[j][l] * bg[1];
          out_rgb[3 * p + 2] = cb[j][l] + T[j][l] * bg[2];
          out_alpha[p] = 1.f - T[j][l];
          out_depth[p] = cd[j][l];
          out_last[p] = last[j][l];
        }
      }
    }
  }
}

// pair_grads [P, 10] per (tile, Gaussian) entry: d/d(mean2d x, y), d/d(conic a, b, c), d/d(rgb),
// d/d(opacity), d/d(depth). out_alpha and out_last come from splat_forward. Walks each pixel's
// contributors back to front, recovering the transmittance by division (alpha <= 0.99).
void splat_backward(const float* g_rgb, const float* g_alpha, const float* g_depth, const float* m2d,
                    const float* con, const float* col, const float* opa, const float* dep, const int64_t* offsets,
                    const int64_t* ids, int64_t ntx, int64_t nty, int64_t width, int64_t height, const float* bg,
                    const float* out_alpha, const int32_t* out_last, float* pair_grads, int nt) {
  vf lane_x{};
  for (int l = 0; l < kLanes; ++l) lane_x[l] = l + 0.5f;
#pragma omp parallel num_threads(nt)
  {
    TileData td;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < ntx * nty; ++t) {
      const int64_t s = offsets[t], n = offsets[t + 1] - s;
      float* pg = pair_grads + 10 * s;
      std::fill(pg, pg + 10 * n, 0.f);
      td.load(m2d, con, col, opa, dep, ids + s, n);
      const int64_t x0 = (t % ntx) * kTile, y0 = (t / ntx) * kTile;
      const int lanes = static_cast<int>(std::min<int64_t>(kLanes, width - x0));
      const int rows = static_cast<int>(std::min<int64_t>(kTile, height - y0));
      vf T[kTile], S[kTile], gr[kTile], gg[kTile], gb[kTile], gd[kTile];
      vi last[kTile];
      int32_t kmax = 0;
      for (int j = 0; j < kTile; ++j) {
        T[j] = vf{} + 1.f;
        S[j] = gr[j] = gg[j] = gb[j] = gd[j] = vf{};
        last[j] = vi{};
        for (int l = 0; j < rows && l < lanes; ++l) {
          const int64_t p = (y0 + j) * width + x0 + l;
          gr[j][l] = g_rgb[3 * p];
          gg[j][l] = g_rgb[3 * p + 1];
          gb[j][l] = g_rgb[3 * p + 2];
          gd[j][l] = g_depth[p];
          T[j][l] = 1.f - out_alpha[p];  // transmittance after the last contributor
          // S: sum over contributors behind the current one of w_j (g . c_j + gd z_j), plus the
          // background term T_final (g . bg - g_alpha): what a change of transmittance scales.
          S[j][l] = T[j][l] * (gr[j][l] * bg[0] + gg[j][l] * bg[1] + gb[j][l] * bg[2] - g_alpha[p]);
          last[j][l] = out_last[p];
          kmax = std::max(kmax, out_last[p]);
        }
      }
      const vf px = lane_x + static_cast<float>(x0);
      for (int64_t k = kmax - 1; k >= 0; --k) {
        const float mx = td.mx[k], my = td.my[k], a = td.a[k], b = td.b[k], c = td.c[k], o = td.o[k];
        const float r = td.r[k], g = td.g[k], bl = td.bl[k], z = td.z[k];
        const int32_t kk = static_cast<int32_t>(k);
        const vf dx = px - mx;
        const vf qa = -0.5f * a * dx * dx;
        vf s0{}, s1{}, s2{}, s3{}, s4{}, s5{}, s6{}, s7{}, s8{}, s9{};
        for (int j = 0; j < rows; ++j) {
          const float dy = static_cast<float>(y0 + j) + 0.5f - my;
          const vf power = qa - (0.5f * c * dy * dy) - b * dy * dx;
          const vf G = vexp(power);
          const vf raw = o * G;
          const vf alpha = raw < kAlphaMax ? raw : vf{} + kAlphaMax;
          const vi valid = (kk < last[j]) & (power <= 0.f) & (alpha >= kAlphaMin);
          const vf one_m = 1.f - alpha;
          const vf Ti = T[j] / one_m;
          const vf w = valid ? alpha * Ti : vf{};
          const vf gc = gr[j] * r + gg[j] * g + gb[j] * bl + gd[j] * z;
          const vf d_alpha = valid ? Ti * gc - S[j] / one_m : vf{};
          S[j] += w * gc;
          T[j] = valid ? Ti : T[j];
          s5 += w * gr[j];
          s6 += w * gg[j];
          s7 += w * gb[j];
          s9 += w * gd[j];
          // a clamped alpha passes no gradient to opacity or shape
          const vf d_raw = raw < kAlphaMax ? d_alpha : vf{};
          s8 += d_raw * G;
          const vf d_power = d_raw * alpha;
          s0 += d_power * (a * dx + b * dy);
          s1 += d_power * (c * dy + b * dx);
          s2 += -0.5f * d_power * dx * dx;
          s3 += -d_power * dx * dy;
          s4 += -0.5f * d_power * dy * dy;
        }
        float* q = pg + 10 * k;
        q[0] += lane_sum(s0);
        q[1] += lane_sum(s1);
        q[2] += lane_sum(s2);
        q[3] += lane_sum(s3);
        q[4] += lane_sum(s4);
        q[5] += lane_sum(s5);
        q[6] += lane_sum(s6);
        q[7] += lane_sum(s7);
        q[8] += lane_sum(s8);
        q[9] += lane_sum(s9);
      }
    }
  }
}
}  // namespace v3kd
