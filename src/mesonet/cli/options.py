"""The options several commands share, declared once, and the checks of their values."""

from __future__ import annotations

from typing import Annotated

import typer

# Options shared by the commands that run the detector.
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Bundled model name or .safetensors path (default: the bundled default model).",
        metavar="NAME|FILE",
    ),
]
BackendOption = Annotated[
    str,
    typer.Option(
        help="Inference engine: auto (int8 where the model's card records an AUC change "
        "within 0.005, as the default's does; else the fastest exact one installed), "
        "openvino (exact fp32), torch, onnx, openvino-bf16 or openvino-int8 (faster, not "
        "exact).",
        metavar="ENGINE",
    ),
]
ThresholdOption = Annotated[
    float | None,
    typer.Option(
        help="Label fake when fake_probability >= T (default: the model card's threshold).",
        metavar="T",
    ),
]
FramesOption = Annotated[
    int, typer.Option(help="Frames sampled evenly from each video.", metavar="N")
]
FpsOption = Annotated[
    float | None,
    typer.Option(help="Sample F frames per second of video instead of --frames.", metavar="F"),
]
FacesOption = Annotated[
    str,
    typer.Option(
        help="detect: find and align faces (MTCNN). none: each image is already a face crop.",
        metavar="[detect|none]",
    ),
]
AggregateOption = Annotated[
    str,
    typer.Option(
        help="Video score per face track: mean (paper), vote (authors' code) or confident.",
        metavar="[mean|vote|confident]",
    ),
]
VideoModelOption = Annotated[
    str | None,
    typer.Option(
        "--video-model",
        help="A video model (bundled name or .safetensors): each face track with 24 "
        "consecutive analysed frames also gets a temporal_probability, combined with the "
        "frame score by --video-rule; adds two runs of consecutive frames to each video's "
        "analysed frames. Images are unaffected.",
        metavar="NAME|FILE",
    ),
]
VideoRuleOption = Annotated[
    str,
    typer.Option(
        "--video-rule",
        help="With --video-model, a track's score: frames (frame evidence only), temporal "
        "(the video model's where it has a window) or mean (both, in log-odds from their "
        "own thresholds).",
        metavar="[frames|temporal|mean]",
    ),
]
TrustOption = Annotated[
    bool,
    typer.Option(
        "--trust-unverified",
        help="Load weights whose model card carries no sha256 (refused otherwise); records "
        "then name the model '<name> (unverified)'.",
    ),
]
MaxFrameOption = Annotated[
    float,
    typer.Option(
        help="Refuse videos whose frames are over this many megapixels (from the header, "
        "before decoding; 8.3 fits 4K).",
        metavar="MP",
    ),
]
MaxSecondsOption = Annotated[
    float,
    typer.Option(
        help="Stop a file's analysis after this many seconds (an error record).",
        metavar="SECONDS",
    ),
]
MaxMemoryOption = Annotated[
    float,
    typer.Option(
        help="Stop a file's analysis once it needs this much memory (an error record).",
        metavar="MB",
    ),
]


TrackShareOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        metavar="SHARE",
        help="A face track decides a video only when it covers at least this share of the "
        "analysed frames (the longest track when none does); shorter tracks are still reported.",
    ),
]
TrackSizeOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        metavar="FRACTION",
        help="A face track decides a video only when its faces are at least this fraction of "
        "the size of the largest track covering enough frames (a small face in the background "
        "never decides; 0 turns this off).",
    ),
]
LimitOption = Annotated[
    int | None,
    typer.Option(
        help="Analyse at most N images and at most N videos, in the order listed.", metavar="N"
    ),
]
EvalLimitOption = Annotated[
    int | None,
    typer.Option(
        help="Evaluate at most N images and at most N videos in all (as predict's --limit), "
        "taken alternately from real/ and fake/.",
        metavar="N",
    ),
]
ILimitOption = Annotated[int | None, typer.Option(help="Analyse at most N images.", metavar="N")]
VLimitOption = Annotated[int | None, typer.Option(help="Analyse at most N videos.", metavar="N")]
RecursiveOption = Annotated[
    bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")
]


def input_limits(limit: int | None, ilimit: int | None, vlimit: int | None):
    """The --limit, --ilimit and --vlimit counts, each checked to be at least 1."""
    from mesonet.inputs import Limits

    for value, name in ((limit, "--limit"), (ilimit, "--ilimit"), (vlimit, "--vlimit")):
        if value is not None and value < 1:
            raise typer.BadParameter("must be at least 1", param_hint=name)
    return Limits(limit=limit, ilimit=ilimit, vlimit=vlimit)


def analysis_limits(max_frame_mp: float, max_seconds: float, max_memory_mb: float):
    """The limits of one file's analysis, each option checked to be positive."""
    from mesonet.budget import AnalysisLimits

    for value, name in (
        (max_frame_mp, "--max-frame-mp"),
        (max_seconds, "--max-seconds"),
        (max_memory_mb, "--max-memory-mb"),
    ):
        if not value > 0:
            raise typer.BadParameter("must be positive", param_hint=name)
    return AnalysisLimits.from_options(max_frame_mp, max_seconds, max_memory_mb)


# Which faces may decide (mesonet.judge) and how an image's faces make its score.
JudgePxOption = Annotated[
    float,
    typer.Option(
        "--judge-px",
        min=0.0,
        metavar="PX",
        help="Faces smaller than this (the larger side of the box, source pixels) are "
        "reported but do not decide; a file with no face left is uncertain (0: judge all).",
    ),
]
JudgeSharpnessOption = Annotated[
    float,
    typer.Option(
        "--judge-sharpness",
        min=0.0,
        max=1.0,
        metavar="S",
        help="Faces less sharp than this (the share of detail finer than a 48 px face; "
        "about 0.2 for a sharp face) are reported but do not decide (0: judge all).",
    ),
]
ImageRuleOption = Annotated[
    str,
    typer.Option(
        "--image-rule",
        metavar="[max|largest|weighted]",
        help="An image's score from its judged faces: their log-odds weighted by face size "
        "and detector confidence (weighted, the default: the best on the real-world dev "
        "set), the most suspicious face's (max) or the largest face's (largest).",
    ),
]
