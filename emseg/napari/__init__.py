"""napari plugin (npe2, manifest ``napari.yaml``; install ``emseg[napari]``): a reader
that opens emseg's outputs as layers, and a widget that segments an image layer.

Both return napari's layer-data tuples ``(data, keywords, layer_type)`` and import
neither napari nor Qt, so they run (and are tested) without a display. Nothing here is
imported by the rest of emseg; ``import emseg`` never loads it.
"""

from .._shared.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "get_reader": "_reader",
        "read_outputs": "_reader",
        "segment_image": "_widget",
    },
)
