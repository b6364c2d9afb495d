"""The delivery layer: intake, dispatcher, per-sink workers, spill and the pipeline."""
