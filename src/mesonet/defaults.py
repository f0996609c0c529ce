"""Defaults the command line shows and the library uses, in a module that imports nothing,
so that ``mesonet --help`` and argument errors load no inference library."""

MIN_FACE_PX = 40.0
"""Faces whose box's larger side is under this many source pixels are not judged."""
MIN_SHARPNESS = 0.10
"""Faces whose sharpness (:func:`mesonet.judge.sharpness`) is under this are not judged."""
TRACK_SHARE = 0.25
"""Default share of the analysed frames a track must cover to decide the video."""
TRACK_SIZE = 0.5
"""Default: a deciding track's faces are at least this fraction of the largest one's size."""
