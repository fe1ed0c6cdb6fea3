"""EventVGGT: a geometry teacher on RGB frames distilled into an event-camera depth student (simulated
street data with ground truth, event simulator, CMFM / STFD / TCD losses, depth metrics)."""
