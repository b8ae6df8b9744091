"""What every room agrees on about data: the BioSR folder layout and its checks (``layout``), the pixel-value
normalisation (``normalization``), the two tasks and their grids (``task``), and the nine real BioSR SIM cells
(``real/``, CC BY 4.0). The training pairs are in :mod:`experiments.pairs`, users' image files in
:mod:`experiments.image_io`, the simulated microscope in :mod:`experiments.microscope`."""
