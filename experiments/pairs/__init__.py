"""The training pairs a run reads: a BioSR-layout data set as a dataset with its memory-mapped cache and loader
(``dataset``, ``cache``), the dihedral augmentation (``augment``) and the download of the real BioSR data
(``biosr_download``)."""
