"""Reading and making images. Paired microscopy data in the BioSR layout: strict pairing and checks,
normalisation, cache, loader; also the one TIF reader (``images``), prediction TIFs (``tif_io``, OME-TIFF
metadata in ``ome_tiff``), the generated data sets (``synthetic``, ``biosr_sim``, ``widefield``, ``writer``)
and the BioSR download (``biosr_download``).

    from experiments.data import PairedImageDataset, make_loader, list_test_levels
    train = PairedImageDataset("biosr_dataset", "train")
    for wf, gt in make_loader(train, batch_size=64): ...   # [64, 1, 128, 128] each, in [-1, 1]
"""

from experiments.data.augment import dihedral
from experiments.data.dataset import PairedImageDataset, make_loader
from experiments.data.images import InputError, Reduce, read_image
from experiments.data.layout import DatasetError, Split, list_test_levels, resolve_root

__all__ = [
    "DatasetError",
    "InputError",
    "PairedImageDataset",
    "Reduce",
    "Split",
    "dihedral",
    "list_test_levels",
    "make_loader",
    "read_image",
    "resolve_root",
]
