"""Publishing a trained model: the inference-only checkpoint (:func:`experiments.checkpoint.inference_only`)
beside its model card, whose every number comes from ``evaluation.json`` files (``python -m experiments.publish``)."""
