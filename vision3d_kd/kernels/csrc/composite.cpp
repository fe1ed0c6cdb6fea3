// Fused volume compositing of packed samples (nerfacc layout), CPU + OpenMP. Plain C++ on raw
// pointers: kernels/composite.py checks and allocates, bindings.cpp binds.
//
// Samples of ray r are [offsets[r], offsets[r+1]); each ray is handled by one thread (no atomics).
// tau_i = sigma_i * (t_end_i - t_start_i), alpha_i = 1 - exp(-tau_i), T_{i+1} = T_i exp(-tau_i),
// w_i = T_i alpha_i. Backward with v_i = g_rgb . c_i + g_opacity + g_depth * mid_i:
//   dL/dtau_k = v_k T_{k+1} - sum_{i>k} v_i w_i,   sum_{i>k} = total - sum_{i<=k},
// where total = g_rgb . rgb + g_opacity * opacity + g_depth * depth comes from the saved outputs.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace v3kd {

// Fills offsets[0..R] from sorted ray indices. Returns 0, or 1 if the indices are not sorted
// non-decreasing within [0, R).
int composite_offsets(const int64_t* ray_idx, int64_t n_samples, int64_t n_rays, int64_t* offsets, int nt) {
  int bad = 0;
#pragma omp parallel for num_threads(nt) reduction(| : bad) schedule(static)
  for (int64_t i = 0; i < n_samples; ++i) {
    const int64_t r = ray_idx[i];
    if (r < 0 || r >= n_rays || (i > 0 && ray_idx[i - 1] > r)) bad |= 1;
  }
  if (bad) return 1;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t r = 0; r <= n_rays; ++r) {
    offsets[r] = std::lower_bound(ray_idx, ray_idx + n_samples, r) - ray_idx;
  }
  return 0;
}

void composite_forward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                       const int64_t* offsets, int64_t n_rays, float* out_rgb, float* out_opacity,
                       float* out_depth, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static, 64)
  for (int64_t r = 0; r < n_rays; ++r) {
    float trans = 1.0f, cr = 0.0f, cg = 0.0f, cb = 0.0f, op = 0.0f, dp = 0.0f;
    for (int64_t i = offsets[r]; i < offsets[r + 1]; ++i) {
      const float e = std::exp(-sigmas[i] * (t_ends[i] - t_starts[i]));
      const float w = trans * (1.0f - e);
      cr += w * rgbs[3 * i];
      cg += w * rgbs[3 * i + 1];
      cb += w * rgbs[3 * i + 2];
      op += w;
      dp += w * (0.5f * (t_starts[i] + t_ends[i]));
      trans *= e;
    }
    out_rgb[3 * r] = cr;
    out_rgb[3 * r + 1] = cg;
    out_rgb[3 * r + 2] = cb;
    out_opacity[r] = op;
    out_depth[r] = dp;
  }
}

void composite_backward(const float* g_rgb, const float* g_opacity, const float* g_depth, const float* sigmas,
                        const float* rgbs, const float* t_starts, const float* t_ends, const int64_t* offsets,
                        int64_t n_rays, const float* out_rgb, const float* out_opacity, const float* out_depth,
                        float* grad_sigmas, float* grad_rgbs, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static, 64)
  for (int64_t r = 0; r < n_rays; ++r) {
    const float gr = g_rgb[3 * r], gg = g_rgb[3 * r + 1], gb = g_rgb[3 * r + 2];
    const float go = g_opacity[r], gd = g_depth[r];
    const float total =
        gr * out_rgb[3 * r] + gg * out_rgb[3 * r + 1] + gb * out_rgb[3 * r + 2] + go * out_opacity[r] +
        gd * out_depth[r];
    float trans = 1.0f, prefix = 0.0f;
    for (int64_t i = offsets[r]; i < offsets[r + 1]; ++i) {
      const float delta = t_ends[i] - t_starts[i];
      const float e = std::exp(-sigmas[i] * delta);
      const float w = trans * (1.0f - e);
      const float v = gr * rgbs[3 * i] + gg * rgbs[3 * i + 1] + gb * rgbs[3 * i + 2] + go +
                      gd * (0.5f * (t_starts[i] + t_ends[i]));
      prefix += v * w;
      trans *= e;
      grad_sigmas[i] = (v * trans - (total - prefix)) * delta;
      grad_rgbs[3 * i] = w * gr;
      grad_rgbs[3 * i + 1] = w * gg;
      grad_rgbs[3 * i + 2] = w * gb;
    }
  }
}

}  // namespace v3kd
