// Hidden-interior test over a lattice (fused CPU path of vision3d_kd.kernels.visibility): every lattice
// point of a box is projected into one camera (OpenGL: looks down -z); inside the image it is "seen", and
// "visible" unless it lies more than `margin` behind the surface distance of its pixel. The lattice is
// given by its per-axis coordinates axes [3, res] (index order x, y, z), so no point array is stored.
// Raw pointers; Python validates.
#include <cmath>
#include <cstdint>

namespace v3kd {

void hidden_update(const float* axes, int64_t res, const float* c2w, float fx, float fy, float cx,
                   float cy, int64_t width, int64_t height, const float* depth, float margin, uint8_t* seen,
                   uint8_t* visible, int nt) {
  // c2w: 3x4 row-major (rotation columns = camera axes in world, last column = centre)
  const float tx = c2w[3], ty = c2w[7], tz = c2w[11];
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t i = 0; i < res; ++i) {
    const float dx = axes[i] - tx;
    for (int64_t j = 0; j < res; ++j) {
      const float dy = axes[res + j] - ty;
      int64_t idx = (i * res + j) * res;
      for (int64_t k = 0; k < res; ++k, ++idx) {
        const float dz = axes[2 * res + k] - tz;
        // camera coordinates: R^T (p - t)
        const float lx = c2w[0] * dx + c2w[4] * dy + c2w[8] * dz;
        const float ly = c2w[1] * dx + c2w[5] * dy + c2w[9] * dz;
        const float z = -(c2w[2] * dx + c2w[6] * dy + c2w[10] * dz);
        if (!(z > 0.f)) continue;
        const float safe = z > 1e-6f ? z : 1.f;
        const float px = fx * lx / safe + cx, py = -fy * ly / safe + cy;
        const float fxp = std::floor(px), fyp = std::floor(py);
        if (!(fxp >= 0.f && fxp < static_cast<float>(width) && fyp >= 0.f && fyp < static_cast<float>(height)))
          continue;
        seen[idx] = 1;
        if (visible[idx]) continue;
        const int64_t pix = static_cast<int64_t>(fyp) * width + static_cast<int64_t>(fxp);
        const float dist = std::sqrt(dx * dx + dy * dy + dz * dz);
        if (depth[pix] - dist > -margin) visible[idx] = 1;
      }
    }
  }
}

}  // namespace v3kd
