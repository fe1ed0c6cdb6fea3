"""GSV3D: image-to-3D from a multi-view latent generator (the real SV3D through `sv3d.py`, a bundled small one
to come) and a Gaussian-splat decoder."""
