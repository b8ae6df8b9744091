"""Using a trained checkpoint: loading it for inference, tiled prediction, the scripted sampler and the
BioImage Model Zoo package."""
