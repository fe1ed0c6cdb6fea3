// pybind11 bindings of the fused CPU kernels. Tensors cross as raw addresses (int) plus sizes: the
// Python wrappers in kernels/*.py validate dtype/shape/contiguity and allocate every output, which
// keeps this file free of torch headers and the first-use build short. The GIL is released.
#include <pybind11/pybind11.h>

#include <cstdint>

namespace py = pybind11;

namespace v3kd {
void hash_forward(const float* x, const float* table, const int32_t* res, int64_t n, int64_t nl, int64_t ts,
                  int nf, float* out, int64_t out_stride, int nt);
void hash_backward(const float* grad_out, int64_t g_stride, const float* x, const int32_t* res, int64_t n,
                   int64_t nl, int64_t ts, int nf, float* scratch, float* grad_table, int nt);
void hash_backward_x(const float* grad_out, int64_t g_stride, const float* x, const float* table, const int32_t* res,
                     int64_t n, int64_t nl, int64_t ts, int nf, float* grad_x, int nt);
void volume_sort(const float* x, int64_t n, int64_t d, int64_t h, int32_t* order, int64_t* starts, float* xs,
                 int nt);
void volume_forward(const float* grid, int64_t d, int64_t h, int64_t w, int64_t c, const float* x,
                    const int32_t* order, int64_t n, float* out, int nt);
void volume_backward(const float* grad_out, const float* xs, const int32_t* order, const int64_t* starts,
                     int64_t d, int64_t h, int64_t w, int64_t c, float* grad_grid, int nt);
void planes_sort(const float* uv, int64_t np, int64_t n, int64_t h, int32_t* order, int64_t* starts, float* uvs,
                 int nt);
void planes_forward(const float* planes, int64_t np, int64_t h, int64_t w, int64_t c, const float* uv,
                    const int32_t* order, int64_t n, float* out, int nt);
void planes_backward(const float* grad_out, const float* uvs, const int32_t* order, const int64_t* starts,
                     int64_t np, int64_t n, int64_t h, int64_t w, int64_t c, float* grad_planes, int nt);
void lines_sort(const float* t, int64_t np, int64_t n, int64_t len, int32_t* order, int64_t* starts, float* ts,
                int nt);
void lines_forward(const float* lines, int64_t np, int64_t len, int64_t c, const float* t, const int32_t* order,
                   int64_t n, float* out, int nt);
void lines_backward(const float* grad_out, const float* ts, const int32_t* order, const int64_t* starts, int64_t np,
                    int64_t n, int64_t len, int64_t c, float* grad_lines, int nt);
void composite_offsets(const int64_t* ray_idx, int64_t n_samples, int64_t n_rays, int64_t* offsets, int nt);
int composite_forward(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                      const int64_t* ray_idx, int64_t n_samples, const int64_t* offsets, int64_t n_rays,
                      float* out_rgb, float* out_opacity, float* out_depth, int nt);
void composite_backward(const float* g_rgb, const float* g_opacity, const float* g_depth, const float* sigmas,
                        const float* rgbs, const float* t_starts, const float* t_ends, const int64_t* offsets,
                        int64_t n_rays, float* grad_sigmas, float* grad_rgbs, int nt);
void splat_forward(const float* m2d, const float* con, const float* col, const float* opa, const float* dep,
                   const int64_t* offsets, const int64_t* ids, int64_t ntx, int64_t nty, int64_t width,
                   int64_t height, const float* bg, float* out_rgb, float* out_alpha, float* out_depth,
                   int32_t* out_last, int nt);
void splat_backward(const float* g_rgb, const float* g_alpha, const float* g_depth, const float* m2d,
                    const float* con, const float* col, const float* opa, const float* dep, const int64_t* offsets,
                    const int64_t* ids, int64_t ntx, int64_t nty, int64_t width, int64_t height, const float* bg,
                    const float* out_alpha, const int32_t* out_last, float* pair_grads, int nt);
void march_count(const float* o, const float* d, const float* tn, const float* tf, int64_t n_rays, float step,
                 const uint8_t* occ, const float* aabb, int64_t res, int64_t* counts, int nt);
void march_fill(const float* o, const float* d, const float* tn, const float* tf, int64_t n_rays, float step,
                const uint8_t* occ, const float* aabb, int64_t res, const int64_t* offsets, int64_t* ray_idx,
                float* t_starts, float* t_ends, int nt);
void hidden_update(const float* axes, int64_t res, const float* c2w, float fx, float fy, float cx,
                   float cy, int64_t width, int64_t height, const float* depth, float margin, uint8_t* seen,
                   uint8_t* visible, int nt);
}  // namespace v3kd

namespace {
using Addr = std::uintptr_t;
template <class T>
T* ptr(Addr a) {
  return reinterpret_cast<T*>(a);
}
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "vision3d_kd fused CPU kernels (OpenMP); call through vision3d_kd.kernels, not directly";
  const auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def(
      "hash_forward",
      [](Addr x, Addr table, Addr res, int64_t n, int64_t nl, int64_t ts, int nf, Addr out, int64_t os, int nt) {
        v3kd::hash_forward(ptr<const float>(x), ptr<const float>(table), ptr<const int32_t>(res), n, nl, ts, nf,
                           ptr<float>(out), os, nt);
      },
      nogil);
  m.def(
      "hash_backward",
      [](Addr g, int64_t gs, Addr x, Addr res, int64_t n, int64_t nl, int64_t ts, int nf, Addr scratch, Addr gt,
         int nt) {
        v3kd::hash_backward(ptr<const float>(g), gs, ptr<const float>(x), ptr<const int32_t>(res), n, nl, ts, nf,
                            ptr<float>(scratch), ptr<float>(gt), nt);
      },
      nogil);
  m.def(
      "hash_backward_x",
      [](Addr g, int64_t gs, Addr x, Addr table, Addr res, int64_t n, int64_t nl, int64_t ts, int nf, Addr gx,
         int nt) {
        v3kd::hash_backward_x(ptr<const float>(g), gs, ptr<const float>(x), ptr<const float>(table),
                              ptr<const int32_t>(res), n, nl, ts, nf, ptr<float>(gx), nt);
      },
      nogil);
  // Grid samplers: *_sort(coords, sizes..., order, starts, sorted_coords, nt) prepares the backward.
  m.def(
      "volume_sort",
      [](Addr x, int64_t n, int64_t d, int64_t h, Addr order, Addr starts, Addr xs, int nt) {
        v3kd::volume_sort(ptr<const float>(x), n, d, h, ptr<int32_t>(order), ptr<int64_t>(starts), ptr<float>(xs),
                          nt);
      },
      nogil);
  m.def(
      "volume_forward",
      [](Addr grid, int64_t d, int64_t h, int64_t w, int64_t c, Addr x, Addr order, int64_t n, Addr out, int nt) {
        v3kd::volume_forward(ptr<const float>(grid), d, h, w, c, ptr<const float>(x), ptr<const int32_t>(order), n,
                             ptr<float>(out), nt);
      },
      nogil);
  m.def(
      "volume_backward",
      [](Addr g, Addr xs, Addr order, Addr starts, int64_t d, int64_t h, int64_t w, int64_t c, Addr gg, int nt) {
        v3kd::volume_backward(ptr<const float>(g), ptr<const float>(xs), ptr<const int32_t>(order),
                              ptr<const int64_t>(starts), d, h, w, c, ptr<float>(gg), nt);
      },
      nogil);
  m.def(
      "planes_sort",
      [](Addr uv, int64_t np, int64_t n, int64_t h, Addr order, Addr starts, Addr uvs, int nt) {
        v3kd::planes_sort(ptr<const float>(uv), np, n, h, ptr<int32_t>(order), ptr<int64_t>(starts),
                          ptr<float>(uvs), nt);
      },
      nogil);
  m.def(
      "planes_forward",
      [](Addr planes, int64_t np, int64_t h, int64_t w, int64_t c, Addr uv, Addr order, int64_t n, Addr out,
         int nt) {
        v3kd::planes_forward(ptr<const float>(planes), np, h, w, c, ptr<const float>(uv), ptr<const int32_t>(order),
                             n, ptr<float>(out), nt);
      },
      nogil);
  m.def(
      "planes_backward",
      [](Addr g, Addr uvs, Addr order, Addr starts, int64_t np, int64_t n, int64_t h, int64_t w, int64_t c, Addr gp,
         int nt) {
        v3kd::planes_backward(ptr<const float>(g), ptr<const float>(uvs), ptr<const int32_t>(order),
                              ptr<const int64_t>(starts), np, n, h, w, c, ptr<float>(gp), nt);
      },
      nogil);
  m.def(
      "lines_sort",
      [](Addr t, int64_t np, int64_t n, int64_t len, Addr order, Addr starts, Addr ts, int nt) {
        v3kd::lines_sort(ptr<const float>(t), np, n, len, ptr<int32_t>(order), ptr<int64_t>(starts),
                         ptr<float>(ts), nt);
      },
      nogil);
  m.def(
      "lines_forward",
      [](Addr lines, int64_t np, int64_t len, int64_t c, Addr t, Addr order, int64_t n, Addr out, int nt) {
        v3kd::lines_forward(ptr<const float>(lines), np, len, c, ptr<const float>(t), ptr<const int32_t>(order), n,
                            ptr<float>(out), nt);
      },
      nogil);
  m.def(
      "lines_backward",
      [](Addr g, Addr ts, Addr order, Addr starts, int64_t np, int64_t n, int64_t len, int64_t c, Addr gl, int nt) {
        v3kd::lines_backward(ptr<const float>(g), ptr<const float>(ts), ptr<const int32_t>(order),
                             ptr<const int64_t>(starts), np, n, len, c, ptr<float>(gl), nt);
      },
      nogil);
  m.def(
      "composite_offsets",
      [](Addr ridx, int64_t s, int64_t r, Addr offsets, int nt) {
        v3kd::composite_offsets(ptr<const int64_t>(ridx), s, r, ptr<int64_t>(offsets), nt);
      },
      nogil);
  m.def(
      "composite_forward",
      [](Addr sig, Addr rgbs, Addr ts, Addr te, Addr ridx, int64_t s, Addr off, int64_t r, Addr rgb, Addr op,
         Addr dp, int nt) {
        return v3kd::composite_forward(ptr<const float>(sig), ptr<const float>(rgbs), ptr<const float>(ts),
                                       ptr<const float>(te), ptr<const int64_t>(ridx), s, ptr<const int64_t>(off), r,
                                       ptr<float>(rgb), ptr<float>(op), ptr<float>(dp), nt);
      },
      nogil);
  m.def(
      "composite_backward",
      [](Addr grgb, Addr gop, Addr gdp, Addr sig, Addr rgbs, Addr ts, Addr te, Addr off, int64_t r, Addr gsig,
         Addr grgbs, int nt) {
        v3kd::composite_backward(ptr<const float>(grgb), ptr<const float>(gop), ptr<const float>(gdp),
                                 ptr<const float>(sig), ptr<const float>(rgbs), ptr<const float>(ts),
                                 ptr<const float>(te), ptr<const int64_t>(off), r, ptr<float>(gsig),
                                 ptr<float>(grgbs), nt);
      },
      nogil);
  m.def(
      "splat_forward",
      [](Addr m2d, Addr con, Addr col, Addr opa, Addr dep, Addr off, Addr ids, int64_t ntx, int64_t nty, int64_t w,
         int64_t h, Addr bg, Addr rgb, Addr alpha, Addr depth, Addr last, int nt) {
        v3kd::splat_forward(ptr<const float>(m2d), ptr<const float>(con), ptr<const float>(col),
                            ptr<const float>(opa), ptr<const float>(dep), ptr<const int64_t>(off),
                            ptr<const int64_t>(ids), ntx, nty, w, h, ptr<const float>(bg), ptr<float>(rgb),
                            ptr<float>(alpha), ptr<float>(depth), ptr<int32_t>(last), nt);
      },
      nogil);
  m.def(
      "splat_backward",
      [](Addr grgb, Addr galpha, Addr gdepth, Addr m2d, Addr con, Addr col, Addr opa, Addr dep, Addr off, Addr ids,
         int64_t ntx, int64_t nty, int64_t w, int64_t h, Addr bg, Addr alpha, Addr last, Addr pg, int nt) {
        v3kd::splat_backward(ptr<const float>(grgb), ptr<const float>(galpha), ptr<const float>(gdepth),
                             ptr<const float>(m2d), ptr<const float>(con), ptr<const float>(col),
                             ptr<const float>(opa), ptr<const float>(dep), ptr<const int64_t>(off),
                             ptr<const int64_t>(ids), ntx, nty, w, h, ptr<const float>(bg), ptr<const float>(alpha),
                             ptr<const int32_t>(last), ptr<float>(pg), nt);
      },
      nogil);
  // Occupancy-grid marching: occ may be 0 (no grid: keep every step); offsets = exclusive prefix sum of counts.
  m.def(
      "march_count",
      [](Addr o, Addr d, Addr tn, Addr tf, int64_t n, float step, Addr occ, Addr box, int64_t res, Addr counts,
         int nt) {
        v3kd::march_count(ptr<const float>(o), ptr<const float>(d), ptr<const float>(tn), ptr<const float>(tf), n,
                          step, ptr<const uint8_t>(occ), ptr<const float>(box), res, ptr<int64_t>(counts), nt);
      },
      nogil);
  m.def(
      "march_fill",
      [](Addr o, Addr d, Addr tn, Addr tf, int64_t n, float step, Addr occ, Addr box, int64_t res, Addr offsets,
         Addr ridx, Addr ts, Addr te, int nt) {
        v3kd::march_fill(ptr<const float>(o), ptr<const float>(d), ptr<const float>(tn), ptr<const float>(tf), n,
                         step, ptr<const uint8_t>(occ), ptr<const float>(box), res, ptr<const int64_t>(offsets),
                         ptr<int64_t>(ridx), ptr<float>(ts), ptr<float>(te), nt);
      },
      nogil);
  // Hidden-interior test of an implicit lattice against one camera's surface distances (visibility.cpp).
  m.def(
      "hidden_update",
      [](Addr axes, int64_t res, Addr c2w, float fx, float fy, float cx, float cy, int64_t w, int64_t h,
         Addr depth, float margin, Addr seen, Addr visible, int nt) {
        v3kd::hidden_update(ptr<const float>(axes), res, ptr<const float>(c2w), fx, fy, cx, cy, w, h,
                            ptr<const float>(depth), margin, ptr<uint8_t>(seen), ptr<uint8_t>(visible), nt);
      },
      nogil);
}
