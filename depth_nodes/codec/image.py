"""sensor_msgs/Image <-> numpy, without ROS (duck-typed messages).

Pixel layouts follow the ROS ``sensor_msgs/image_encodings`` names. Arrays are
(H, W) for single-channel encodings and (H, W, C) otherwise, in the channel
order of the encoding (``bgr8`` stays BGR; use :func:`image_to_rgb` for RGB).
Depth follows REP-118: ``32FC1`` metres, ``16UC1``/``mono16`` millimetres, and
:func:`depth_to_metres` returns float32 metres with NaN for "no return".
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from depth_nodes.camera import MAX_IMAGE_SIDE
from depth_nodes.codec.buffer import NATIVE_ORDER, as_byte_buffer, byteorder_char, get_bool, get_str, get_uint


@dataclass(frozen=True)
class PixelFormat:
    """Memory layout of one encoding: numpy scalar kind/size and channel count."""

    kind: str  # numpy kind: "u" unsigned, "i" signed, "f" float
    itemsize: int  # bytes per channel
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.itemsize * self.channels

    def dtype(self, order: str = "=") -> np.dtype:
        """Scalar dtype with byte order ``order`` ("<", ">" or "=")."""
        return np.dtype(f"{order if self.itemsize > 1 else '|'}{self.kind}{self.itemsize}")


_NAMED = {
    "rgb8": PixelFormat("u", 1, 3), "bgr8": PixelFormat("u", 1, 3),
    "rgba8": PixelFormat("u", 1, 4), "bgra8": PixelFormat("u", 1, 4),
    "rgb16": PixelFormat("u", 2, 3), "bgr16": PixelFormat("u", 2, 3),
    "rgba16": PixelFormat("u", 2, 4), "bgra16": PixelFormat("u", 2, 4),
    "mono8": PixelFormat("u", 1, 1), "mono16": PixelFormat("u", 2, 1),
}
for _pattern in ("rggb", "bggr", "gbrg", "grbg"):
    _NAMED[f"bayer_{_pattern}8"] = PixelFormat("u", 1, 1)
    _NAMED[f"bayer_{_pattern}16"] = PixelFormat("u", 2, 1)

#: OpenCV-style generic encodings: 8UC3, 16SC1, 32FC1, 64FC2 ...
_CV_TYPE = re.compile(r"^(8|16|32|64)(U|S|F)C([1-4])$")
_CV_VALID = {("8", "U"), ("8", "S"), ("16", "U"), ("16", "S"), ("32", "S"), ("32", "F"), ("64", "F")}
_CV_KIND = {"U": "u", "S": "i", "F": "f"}

#: Depth encodings and their scale to metres (REP-118).
DEPTH_SCALE_TO_METRES = {"32FC1": 1.0, "16UC1": 1e-3, "mono16": 1e-3}


def pixel_format(encoding: str) -> PixelFormat:
    """Layout of a ROS image encoding; ValueError for unsupported ones."""
    if not isinstance(encoding, str):
        raise ValueError(f"encoding must be a str, got {type(encoding).__name__}")
    fmt = _NAMED.get(encoding)
    if fmt is not None:
        return fmt
    m = _CV_TYPE.match(encoding)
    if m and (m.group(1), m.group(2)) in _CV_VALID:
        return PixelFormat(_CV_KIND[m.group(2)], int(m.group(1)) // 8, int(m.group(3)))
    raise ValueError(f"unsupported image encoding {encoding!r} "
                     f"(supported: {', '.join(sorted(_NAMED))}, and <8|16|32|64><U|S|F>C<1-4>)")


def _check_side(name: str, value: int, max_side: int) -> None:
    if not 0 < value <= max_side:
        raise ValueError(f"image {name}={value} outside 1..{max_side}")


def image_to_array(msg, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """Pixels of an Image message as (H, W) or (H, W, C) array of the encoding's dtype.

    Honours row padding (``step > width * bytes_per_pixel``) and ``is_bigendian``.
    When the data is in native byte order the result is a zero-copy view of
    ``msg.data`` (possibly read-only and non-contiguous); copy it before
    mutating or keeping it beyond the message's lifetime. Trailing bytes after
    ``step * height`` are ignored (as cv_bridge does); shorter data is rejected.
    """
    owner = "Image"
    encoding = get_str(msg, "encoding", owner=owner)
    fmt = pixel_format(encoding)
    height = get_uint(msg, "height", owner=owner)
    width = get_uint(msg, "width", owner=owner)
    _check_side("height", height, max_side)
    _check_side("width", width, max_side)
    step = get_uint(msg, "step", owner=owner)
    bigendian = get_bool(msg, "is_bigendian", owner=owner)
    row_bytes = width * fmt.bytes_per_pixel
    if step < row_bytes:
        raise ValueError(f"Image.step={step} < width*bytes_per_pixel={width}*{fmt.bytes_per_pixel}={row_bytes} "
                         f"for encoding {encoding!r}")
    buf = as_byte_buffer(getattr(msg, "data", None), f"{owner}.data")
    if buf.size < step * height:
        raise ValueError(f"Image.data has {buf.size} bytes, need step*height={step}*{height}={step * height}")
    order = byteorder_char(bigendian)
    dtype = fmt.dtype(order)
    shape = (height, width, fmt.channels) if fmt.channels > 1 else (height, width)
    strides = (step, fmt.bytes_per_pixel, fmt.itemsize)[: len(shape)]
    view = np.ndarray(shape, dtype=dtype, buffer=buf, offset=0, strides=strides)
    if fmt.itemsize > 1 and order != NATIVE_ORDER:
        return view.astype(dtype.newbyteorder("="))
    return view


def image_to_rgb(msg, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """A colour/mono 8-bit Image as a new uint8 (H, W, 3) RGB array."""
    arr = image_to_array(msg, max_side)
    encoding = msg.encoding
    if encoding in ("rgb8", "8UC3"):
        rgb = arr
    elif encoding in ("bgr8", "bgra8"):
        rgb = arr[..., 2::-1]
    elif encoding == "rgba8":
        rgb = arr[..., :3]
    elif encoding in ("mono8", "8UC1"):
        rgb = np.repeat(arr[..., None], 3, axis=2)
    else:
        raise ValueError(f"image_to_rgb needs an 8-bit colour or mono encoding, got {encoding!r}")
    return np.array(rgb, dtype=np.uint8, order="C")


def depth_to_metres(msg_or_array, encoding: str | None = None, max_side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """Depth image -> new float32 (H, W) metres with NaN for no return (REP-118).

    Accepts an Image message (``32FC1`` metres, ``16UC1``/``mono16`` millimetres)
    or an array with ``encoding`` (inferred from dtype when omitted: uint16 is
    millimetres, float32 metres). Zero millimetres, and non-finite or <= 0
    metres, become NaN.
    """
    if hasattr(msg_or_array, "encoding") and hasattr(msg_or_array, "data"):
        encoding = msg_or_array.encoding
        arr = image_to_array(msg_or_array, max_side)
    else:
        arr = np.asarray(msg_or_array)
        if encoding is None:
            encoding = {np.dtype(np.uint16): "16UC1", np.dtype(np.float32): "32FC1"}.get(arr.dtype.newbyteorder("="))
            if encoding is None:
                raise ValueError(f"depth array dtype {arr.dtype} is neither uint16 (mm) nor float32 (m); "
                                 "pass encoding")
    if encoding not in DEPTH_SCALE_TO_METRES:
        raise ValueError(f"depth encoding must be one of {sorted(DEPTH_SCALE_TO_METRES)}, got {encoding!r}")
    fmt = pixel_format(encoding)
    if arr.ndim != 2 or arr.dtype.kind != fmt.kind or arr.dtype.itemsize != fmt.itemsize:
        raise ValueError(f"depth array for {encoding} must be (H, W) {fmt.dtype()}, got {arr.shape} {arr.dtype}")
    if fmt.kind == "u":
        out = arr.astype(np.float32)
        out *= np.float32(DEPTH_SCALE_TO_METRES[encoding])
        out[arr == 0] = np.nan
        return out
    out = np.array(arr, dtype=np.float32, copy=True)
    out[~((out > 0) & np.isfinite(out))] = np.nan
    return out


def array_to_image_fields(array, encoding: str, max_side: int = MAX_IMAGE_SIDE) -> dict:
    """Image message fields for an array: height, width, encoding, is_bigendian, step, data.

    ``array`` must be (H, W) or (H, W, 1) for single-channel encodings and
    (H, W, C) otherwise, with exactly the encoding's dtype kind and size (no
    silent casts: float64 for ``32FC1`` is rejected). ``data`` is a 1-D uint8
    array in native byte order, sharing memory with ``array`` when it is
    C-contiguous and native; rows are unpadded (``step = width * bpp``).
    """
    fmt = pixel_format(encoding)
    arr = np.asarray(array)
    if fmt.channels == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    want_ndim = 2 if fmt.channels == 1 else 3
    if arr.ndim != want_ndim or (want_ndim == 3 and arr.shape[2] != fmt.channels):
        want = "(H, W)" if fmt.channels == 1 else f"(H, W, {fmt.channels})"
        raise ValueError(f"array for encoding {encoding!r} must have shape {want}, got {arr.shape}")
    if arr.dtype.kind != fmt.kind or arr.dtype.itemsize != fmt.itemsize:
        raise ValueError(f"array dtype {arr.dtype} does not match encoding {encoding!r} (needs {fmt.dtype()})")
    height, width = int(arr.shape[0]), int(arr.shape[1])
    _check_side("height", height, max_side)
    _check_side("width", width, max_side)
    native = fmt.dtype("=")
    arr = np.ascontiguousarray(arr, dtype=native)
    return {
        "height": height,
        "width": width,
        "encoding": encoding,
        "is_bigendian": int(NATIVE_ORDER == ">"),
        "step": width * fmt.bytes_per_pixel,
        "data": arr.reshape(-1).view(np.uint8),
    }
