"""How far an output can be trusted, measured without its target: the measures (``measures``: the
re-degradation consistency, the Fourier ring correlation, the calibration of a std map), the per-frame
check of ``predict --check`` and the napari widget (``check``) and their figures (``figures``). Evaluation
averages the same measures over test levels, against targets (:mod:`experiments.evaluation.trust_report`)."""
