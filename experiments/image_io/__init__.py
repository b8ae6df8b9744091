"""Users' images in and out: the one TIF reader (``images``) with its OME-TIFF metadata (``ome_tiff``), OME-Zarr
images read and written frame by frame (``ome_zarr``), prediction's inputs and TIFs (``tif_io``) and its result
files, written a frame at a time and resumable (``output_files``)."""
