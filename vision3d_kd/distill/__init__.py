"""Distillation into 3D students: Progressive Volume Distillation (field <-> field <-> splats)."""
