"""Reading and making images. Paired microscopy data in the BioSR layout (``layout``: strict pairing and
checks; ``dataset``: the pairs a run reads, ``read_pairs``, its cache and loader), normalisation, the one TIF
reader (``images``), prediction TIFs (``tif_io``, OME-TIFF metadata in ``ome_tiff``), OME-Zarr
(``ome_zarr``), the generated data sets (``synthetic``, ``biosr_sim``, ``widefield``, ``writer``) and the
BioSR download (``biosr_download``). Import the module you need: the package itself imports nothing, so
that reading a setting does not load the training data's loader.

    from experiments.data.dataset import PairedImageDataset, make_loader
    train = PairedImageDataset("biosr_dataset", "train")
    for wf, gt in make_loader(train, batch_size=64): ...   # [64, 1, 128, 128] each, in [-1, 1]
"""
