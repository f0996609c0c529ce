"""Detector: media file -> faces -> batched scores -> aggregated :class:`MediaResult`.

The CLI, the web service and the Python API all call this one class::

    from mesonet import Detector
    detector = Detector()                      # the bundled default model
    result = detector.predict("clip.mp4")      # MediaResult
    for result in detector.predict_many(["a.jpg", "folder/"]):  # streams, one per file
        print(result.path, result.label, result.fake_probability)

It puts together stages that each do one job and can be used alone:

- :mod:`mesonet.pipeline.read`: media into frames (images decoded in threads one batch
  ahead, video frames sampled and decoded in a background thread);
- :mod:`mesonet.pipeline.faces`: faces found and aligned into crops (on video, detection
  every ``redetect_s`` and interpolation between);
- :mod:`mesonet.pipeline.score`: crops scored by the model, in batches;
- :mod:`mesonet.pipeline.records`: the record of each file (video tracks and their rules,
  labels, verdicts, errors);
- :mod:`mesonet.pipeline.detector`: the :class:`Detector` wiring them under its settings.
"""

from __future__ import annotations

from mesonet.pipeline.detector import Detector
from mesonet.pipeline.faces import CROP_SIZE, FACE_MODES, FaceFinder, FrameFaces, interpolate_faces
from mesonet.pipeline.read import PREFETCH_FRAMES, prefetch
from mesonet.pipeline.records import Records
from mesonet.pipeline.score import to_batch

__all__ = [
    "CROP_SIZE",
    "FACE_MODES",
    "PREFETCH_FRAMES",
    "Detector",
    "FaceFinder",
    "FrameFaces",
    "Records",
    "interpolate_faces",
    "prefetch",
    "to_batch",
]
