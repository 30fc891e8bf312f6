"""Files in and out: images (PNG, JPEG, BMP, TIFF), medical volumes (NIfTI, DICOM),
tables (CSV, TSV, NPY) and the atomic writers every output goes through. Fits nothing."""

from .._shared.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Image": "images",
        "read_image": "images",
        "read_channels": "images",
        "read_mask": "images",
        "atomic_output": "atomic",
        "check_writable": "atomic",
        "write_png": "png",
        "write_json": "jsonfile",
        "write_tiff_stack": "tiff_write",
        "write_hyperstack": "tiff_write",
        "read_nifti": "medical",
        "write_nifti": "medical",
        "write_itksnap_labels": "medical",
        "read_dicom_folder": "medical",
        "Table": "tables",
        "read_table": "tables",
    },
)
