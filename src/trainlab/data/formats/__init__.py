"""Dataset factories that read a user's files: npz, npy, csv, MNIST IDX, CIFAR-10 pickles, images.

Every factory takes the ``data`` keys it reads as keyword parameters (``trainlab list dataset``
shows them) and returns :class:`RawData` with the labels as stored;
:func:`trainlab.data.datasets.load_splits` then validates labels and features (naming the bad
row) and carves a test split when the source has none (``x_test is None``). What only the
reader can know (a missing key, a ragged CSV line, a truncated file) is raised here as a one-line
:class:`DataError` that starts with the file or folder path, so the user knows what to fix.

Nothing is ever unpickled with plain :mod:`pickle`: numpy files are opened with
``allow_pickle=False``, CIFAR-10's pickles go through an unpickler that can only rebuild numpy
arrays, and the decoded-image cache is written with ``np.savez``.

Registered names: ``npz``, ``npy``, ``csv``, ``idx``, ``cifar10``, ``imagefolder``.

One module per reader: ``arrays`` (npz, npy), ``csv_table``, ``mnist_idx``, ``cifar`` and
``class_folders`` (imagefolder), which builds on ``image_headers`` (checks before decoding),
``decode`` (files to RGB uint8), ``resident`` (splits decoded into arrays), ``cache`` (those
arrays kept between runs) and ``streamed`` (:class:`ImageFiles`, decoded on access); ``common``
holds what the readers share. Importing this package registers every dataset.
"""

# The readers are imported in the order their datasets have always been registered, which is
# the order DATASETS lists them in (``trainlab list``, "valid: ..." hints): not alphabetical.
# isort: off
from trainlab.data.formats.arrays import npy, npz
from trainlab.data.formats.csv_table import csv_file
from trainlab.data.formats.mnist_idx import idx, read_idx
from trainlab.data.formats.cifar import cifar10
from trainlab.data.formats.class_folders import IMAGE_SUFFIXES, image_files, imagefolder

# isort: on
from trainlab.data.formats.cache import image_cache_dir
from trainlab.data.formats.streamed import ImageFiles

__all__ = [
    "npz",
    "npy",
    "csv_file",
    "idx",
    "cifar10",
    "imagefolder",
    "ImageFiles",
    "image_files",
    "read_idx",
    "image_cache_dir",
    "IMAGE_SUFFIXES",
]
