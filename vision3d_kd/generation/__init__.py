"""Text-to-3D generation by score distillation (`v3kd generate`): configuration, loop and outputs."""
