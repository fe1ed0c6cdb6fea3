// Fused volume compositing of packed samples (nerfacc layout), CPU + OpenMP. Plain C++ on raw
// pointers: kernels/composite.py checks and allocates, bindings.cpp binds.
//
// Samples of ray r are [offsets[r], offsets[r+1]); each ray is handled by one thread (no atomics).
// tau_i = sigma_i * (t_end_i - t_start_i), alpha_i = 1 - exp(-tau_i), T_{i+1} = T_i exp(-tau_i),
// w_i = T_i alpha_i. Backward with v_i = g_rgb . c_i + g_opacity + g_depth * mid_i:
//   dL/dtau_k = v_k T_{k+1} - sum_{i>k} v_i w_i   (the suffix sum runs backwards over the ray).
// The outputs are not saved, so callers may modify them in place.
//
// Per ray, everything is a vectorised loop: the exclusive cumulative depth and the backward's suffix
// sum are OpenMP simd scans, and exp is a branch-free polynomial (within 2 ulp of expf). As in the
// reference, T_k = exp(-sum_{j<k} tau_j).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

// exp(x) for -87 <= x <= 0 (Cephes-style range reduction + degree-6 polynomial, within 2 ulp of
// expf); written without libm calls or branches so that loops over it vectorise. NaN stays NaN.
inline float exp_poly(float x) {
  const float z = x * 1.44269504088896341f + 0.5f;
  const float t = static_cast<float>(static_cast<int32_t>(z));
  const float n = t > z ? t - 1.0f : t;  // floor(z)
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  return y * __builtin_bit_cast(float, (static_cast<int32_t>(n) + 127) << 23);  // 2^n (C++17-safe)
}

// out[k] = exp(-min(x[k], 87)) for x >= 0 (exp(-87) ~ 1.6e-38 keeps 2^n a normal number). Two loops:
// GCC vectorises the clamp and the polynomial separately but not fused.
inline void exp_neg(const float* __restrict x, int64_t m, float* __restrict out) {
#pragma omp simd
  for (int64_t k = 0; k < m; ++k) out[k] = x[k] > 87.0f ? -87.0f : -x[k];
#pragma omp simd
  for (int64_t k = 0; k < m; ++k) out[k] = exp_poly(out[k]);
}

// Per-thread scratch for one ray of m samples, in one buffer: optical depths tau_k, exclusive
// cumulative depths, then (at the same distance, so one exp pass covers both) decay factors
// e_k = exp(-tau_k) and transmittances T_k = exp(-sum_{j<k} tau_j) (as the reference), then two free
// rows for the backward.
struct Ray {
  std::vector<float> buf;
  float *tau, *cum, *e, *trans, *a, *b;
  void compute(const float* sigmas, const float* t_starts, const float* t_ends, int64_t i0, int64_t m) {
    if (static_cast<int64_t>(buf.size()) < 6 * m) buf.resize(6 * m);
    float* p = buf.data();
    tau = p, cum = p + m, e = p + 2 * m, trans = p + 3 * m, a = p + 4 * m, b = p + 5 * m;
    const float* __restrict s = sigmas + i0;
    const float* __restrict t0 = t_starts + i0;
    const float* __restrict t1 = t_ends + i0;
    float* __restrict tau_ = tau;
    float* __restrict cum_ = cum;
    float acc = 0.0f;
#pragma omp simd reduction(inscan, + : acc)
    for (int64_t k = 0; k < m; ++k) {
      cum_[k] = acc;
#pragma omp scan exclusive(acc)
      const float t = s[k] * (t1[k] - t0[k]);
      tau_[k] = t;
      acc += t;
    }
    exp_neg(tau, 2 * m, e);  // [tau | cum] -> [e | trans]
  }
};

}  // namespace

namespace v3kd {

// Fills offsets[0..R] (lower_bound of each ray in the sorted ray indices). Each thread binary-searches
// its first ray, then gallops forward from the previous boundary (nearby memory, few probes).
void composite_offsets(const int64_t* ray_idx, int64_t n_samples, int64_t n_rays, int64_t* offsets, int nt) {
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
    const int64_t r0 = (n_rays + 1) * t / team, r1 = (n_rays + 1) * (t + 1) / team;
    int64_t pos = r0 < r1 ? std::lower_bound(ray_idx, ray_idx + n_samples, r0) - ray_idx : 0;
    for (int64_t r = r0; r < r1; ++r) {
      int64_t lo = pos, hi = pos, step = 1;
      while (hi < n_samples && ray_idx[hi] < r) {
        lo = hi;
        hi = std::min(n_samples, hi + step);
        step *= 2;
      }
      pos = std::lower_bound(ray_idx + lo, ray_idx + hi, r) - ray_idx;
      offsets[r] = pos;
    }
  }
}

// Returns 0, or 1 if the ray indices were not sorted within [0, R) (then the outputs are garbage).
int composite_forward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                      const int64_t* ray_idx, int64_t n_samples, const int64_t* offsets, int64_t n_rays,
                      float* out_rgb, float* out_opacity, float* out_depth, int nt) {
  // Every sample lies in some ray's range and ranges start at 0 and end at S, so checking that each
  // sample holds its ray's index proves the indices sorted and within [0, R).
  int bad = (offsets[0] != 0 || offsets[n_rays] != n_samples) ? 1 : 0;
#pragma omp parallel num_threads(nt) reduction(| : bad)
  {
    Ray ray;
#pragma omp for schedule(static, 64)
    for (int64_t r = 0; r < n_rays; ++r) {
      const int64_t i0 = offsets[r], m = offsets[r + 1] - i0;
      ray.compute(sigmas, t_starts, t_ends, i0, m);
      const float* __restrict e = ray.e;
      const float* __restrict tr = ray.trans;
      const float* __restrict c = rgbs + 3 * i0;
      const float* __restrict ta = t_starts + i0;
      const float* __restrict tb = t_ends + i0;
      const int64_t* __restrict ri = ray_idx + i0;
      float cr = 0.0f, cg = 0.0f, cb = 0.0f, op = 0.0f, dp = 0.0f;
      int mismatch = 0;
#pragma omp simd reduction(+ : cr, cg, cb, op, dp) reduction(| : mismatch)
      for (int64_t k = 0; k < m; ++k) {
        const float w = tr[k] * (1.0f - e[k]);
        cr += w * c[3 * k];
        cg += w * c[3 * k + 1];
        cb += w * c[3 * k + 2];
        op += w;
        dp += w * (0.5f * (ta[k] + tb[k]));
        mismatch |= ri[k] != r ? 1 : 0;
      }
      bad |= mismatch;
      out_rgb[3 * r] = cr;
      out_rgb[3 * r + 1] = cg;
      out_rgb[3 * r + 2] = cb;
      out_opacity[r] = op;
      out_depth[r] = dp;
    }
  }
  return bad;
}

void composite_backward(const float* g_rgb, const float* g_opacity, const float* g_depth, const float* sigmas,
                        const float* rgbs, const float* t_starts, const float* t_ends, const int64_t* offsets,
                        int64_t n_rays, float* grad_sigmas, float* grad_rgbs, int nt) {
#pragma omp parallel num_threads(nt)
  {
    Ray ray;
#pragma omp for schedule(static, 64)
    for (int64_t r = 0; r < n_rays; ++r) {
      const int64_t i0 = offsets[r], m = offsets[r + 1] - i0;
      ray.compute(sigmas, t_starts, t_ends, i0, m);
      const float gr = g_rgb[3 * r], gg = g_rgb[3 * r + 1], gb = g_rgb[3 * r + 2];
      const float go = g_opacity[r], gd = g_depth[r];
      const float* __restrict e = ray.e;
      const float* __restrict tr = ray.trans;
      float* __restrict vw = ray.tau;  // v_k w_k (tau is no longer needed)
      float* __restrict v = ray.a;     // slope v_k
      float* __restrict suf = ray.b;   // sum_{i>k} v_i w_i
      const float* __restrict c = rgbs + 3 * i0;
      const float* __restrict ta = t_starts + i0;
      const float* __restrict tb = t_ends + i0;
      float* __restrict gc = grad_rgbs + 3 * i0;
      float* __restrict gs = grad_sigmas + i0;
#pragma omp simd
      for (int64_t k = 0; k < m; ++k) {
        const float w = tr[k] * (1.0f - e[k]);
        v[k] = gr * c[3 * k] + gg * c[3 * k + 1] + gb * c[3 * k + 2] + go + gd * (0.5f * (ta[k] + tb[k]));
        vw[k] = v[k] * w;
        gc[3 * k] = w * gr;
        gc[3 * k + 1] = w * gg;
        gc[3 * k + 2] = w * gb;
      }
      float acc = 0.0f;  // suffix sums, accumulated from the far end (no cancellation)
#pragma omp simd reduction(inscan, + : acc)
      for (int64_t k = 0; k < m; ++k) {
        suf[m - 1 - k] = acc;
#pragma omp scan exclusive(acc)
        acc += vw[m - 1 - k];
      }
#pragma omp simd
      for (int64_t k = 0; k < m; ++k) gs[k] = (v[k] * (tr[k] * e[k]) - suf[k]) * (tb[k] - ta[k]);
    }
  }
}

}  // namespace v3kd
