"""Write a small H.264 video whose frames are huge: the decoder bomb of issue 16, defect 2.

    python tools/big_frame_video.py /tmp/big9984.mp4              # 9984 x 9984, 20 frames
    /usr/bin/time -f "%e s, %M KB" mesonet predict /tmp/big9984.mp4 -f jsonl

Black frames at the highest compression: ~300 KB on disk, 100 MP a frame once decoded.
Encoding takes about a minute and ~2 GB (libx264, through PyAV).
"""

from __future__ import annotations

import argparse

import av
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the .mp4 to write")
    parser.add_argument("--side", type=int, default=9984, help="frame width and height")
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()
    black = np.zeros((args.side, args.side, 3), np.uint8)
    with av.open(args.out, "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = args.side
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "51"}
        for _ in range(args.frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(black, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


if __name__ == "__main__":
    main()
