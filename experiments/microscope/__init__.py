"""The microscope simulated: the widefield forward model (``widefield``: blur, camera binning, noise, background)
and the data sets made with it, the real-structure set from the nine BioSR SIM cells (``biosr_sim``), the
drawn-filament look-alike (``synthetic``) and their writer in the BioSR layout (``writer``)."""
