"""Bag -> synchronised frames: :class:`BagSource` + :class:`StreamDecoder` + :class:`FrameAssembler`.

This is the input side of bag replay: iterate :class:`BagFrames` to get one
:class:`~depth_nodes.eval.sync.Frame` per key image with decoded arrays, then
feed the depth / mapping / planning core objects. Latched one-shot topics
(``world_spec``, ``rig``) are read with :func:`first_payload`.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import closing
from typing import Any

from tqdm import tqdm

from depth_nodes.eval.bagio import BagSource
from depth_nodes.eval.decode import StreamDecoder, decode_message
from depth_nodes.eval.sync import Frame, FrameAssembler, SyncConfig

#: Roles the frame assembler consumes besides the key image and its camera info.
SYNC_ROLES = ("right", "right_info", "radar", "odom", "gt_depth", "gt_odom")


class BagFrames:
    """Iterable of frames from a bag; ``stats`` (after iterating) counts frames and drops.

    Args:
        source: an opened :class:`BagSource` (role remaps already applied).
        config: matching tolerances and key role (``image`` mono, ``left`` stereo).
        progress: show a tqdm bar on stderr over the bag's messages.

    Raises:
        ValueError: the bag lacks the key image role (message lists the bag's topics).
    """

    def __init__(self, source: BagSource, config: SyncConfig | None = None, *, progress: bool = False) -> None:
        self.source = source
        self.config = config or SyncConfig()
        self.source.require([self.config.key_role])
        wanted = (self.config.key_role, self.config.info_role) + SYNC_ROLES
        self.roles = [r for r in wanted if r in source.roles]
        self.progress = progress
        self.stats: dict[str, Any] = {}

    def __iter__(self) -> Iterator[Frame]:
        decoder = StreamDecoder()
        assembler = FrameAssembler(self.config)
        counts = {t.topic: t.count for t in self.source.info().topics}
        total = sum(counts.get(self.source.roles[r], 0) for r in self.roles)
        with tqdm(total=total, desc="replay", unit="msg", file=sys.stderr, disable=not self.progress) as bar:
            for role, stamp_ns, payload in decoder(self.source.messages(self.roles)):
                bar.update(1)
                yield from assembler.push(role, stamp_ns, payload)
            yield from assembler.flush()
        self.stats = {**assembler.stats, "decode_errors": dict(decoder.errors), "roles": list(self.roles)}


def first_payload(source: BagSource, role: str) -> Any | None:
    """Decoded first message of ``role`` (e.g. ``world_spec``), or None when the bag lacks the role."""
    if role not in source.roles:
        return None
    with closing(source.messages([role])) as items:
        for _, _, _, msg in items:
            return decode_message(role, msg)
    return None
