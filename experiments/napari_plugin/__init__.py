"""The napari plugin (npe2 manifest ``napari.yaml``): a dock widget that super-resolves an image layer with a
checkpoint or a Model Zoo package (:mod:`experiments.napari_plugin.widget`). Needs the ``[napari]`` extra."""
