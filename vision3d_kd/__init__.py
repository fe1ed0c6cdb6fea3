"""vision3d_kd: distil vision foundation models and 3D representations into 3D students."""

__version__ = "0.1.0"
