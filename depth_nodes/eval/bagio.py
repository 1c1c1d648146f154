"""rosbag2 input/output for evaluation: role-mapped reading and CDR writing.

A bag is a rosbag2 directory (``metadata.yaml`` + storage files) or a single
``.mcap`` / ``.db3`` file; both MCAP and sqlite3 storages are read through
:class:`rosbags.rosbag2.Reader`. Messages are deserialised with the ROS 2
Kilted type store, extended with the message definitions stored in the bag
itself, so bags carrying custom types do not stop a replay: a topic whose type
cannot be resolved is skipped with one warning.

Topics are addressed by *role* (``image``, ``radar``, ``odom`` ...) so a bag
recorded with other topic names works through a remap (``topics={"image":
"/drone1/cam/image"}``). A role's topic matches a bag topic with or without a
leading ``/`` and under any namespace prefix (``camera/image_raw`` matches
``/drone1/camera/image_raw``).

Times are integer nanoseconds. :meth:`BagSource.messages` reports the header
stamp when the message has a set (non-zero) one and the bag's log (receive)
time otherwise.
"""
from __future__ import annotations

import heapq
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.interfaces import (
    Connection,
    MessageDefinitionFormat,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import StoragePlugin
from rosbags.rosbag2.errors import ReaderError, WriterError
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.base import TypesysError
from rosbags.typesys.store import Typestore

from depth_nodes.codec.stamp import stamp_to_ns
from depth_nodes.bagmsg import build_message

try:  # rosbags raises SerdeError for malformed CDR payloads
    from rosbags.serde import SerdeError
except ImportError:  # pragma: no cover - older rosbags
    SerdeError = ValueError  # type: ignore[assignment,misc]

LOG = logging.getLogger(__name__)

#: Role -> topic names recorded by ``depth-nodes sim`` and used by the nodes.
DEFAULT_TOPICS: dict[str, str] = {
    "image": "camera/image_raw",
    "camera_info": "camera/camera_info",
    "radar": "radar/points",
    "odom": "odom",
    "left": "stereo/left/image_rect",
    "left_info": "stereo/left/camera_info",
    "right": "stereo/right/image_rect",
    "right_info": "stereo/right/camera_info",
    "gt_depth": "ground_truth/depth",
    "gt_odom": "ground_truth/odom",
    "world_spec": "sim/world_spec",
    "rig": "sim/rig",
}

#: Roles that carry simulator ground truth.
GROUND_TRUTH_ROLES = ("gt_depth", "gt_odom")

#: Default reorder window: messages are released in header-stamp order once the
#: bag's log time has moved this far past them (bounded buffering).
DEFAULT_REORDER_WINDOW_NS = 500_000_000

_SUFFIXES = (".mcap", ".db3")
_IDL_SEPARATOR = "=" * 80 + "\n"

#: QoS for latched topics (world description, rig): reliable, transient local, depth 1.
LATCHED_QOS = Qos(
    QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
    QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False,
)


def _strip(topic: str) -> str:
    return topic.strip().strip("/")


def match_topic(wanted: str, available) -> str | None:
    """The bag topic that ``wanted`` names, or None.

    An exact match (ignoring a leading ``/``) wins; otherwise a unique bag topic
    that ends with ``/<wanted>`` (a namespace prefix). Several namespaced
    matches raise ValueError listing them.
    """
    key = _strip(wanted)
    if not key:
        raise ValueError(f"topic name must be non-empty, got {wanted!r}")
    exact = [t for t in available if _strip(t) == key]
    if exact:
        return exact[0]
    nested = sorted(t for t in available if _strip(t).endswith("/" + key))
    if len(nested) > 1:
        raise ValueError(f"topic {wanted!r} is ambiguous in this bag: matches {nested}; "
                         "pass the full topic name in the role remap")
    return nested[0] if nested else None


def header_stamp_ns(msg) -> int | None:
    """``msg.header.stamp`` in integer nanoseconds, or None without a header or with an unset (zero) stamp."""
    header = getattr(msg, "header", None)
    if header is None:
        return None
    try:
        stamp = stamp_to_ns(header)
    except ValueError:
        return None
    return stamp if stamp > 0 else None


def _resolve_bag_path(path: Path) -> Path:
    """The path ``rosbags`` should open: a bag directory or a single storage file."""
    if not path.exists():
        raise FileNotFoundError(f"bag path {str(path)!r} does not exist")
    if path.is_dir():
        if (path / "metadata.yaml").exists():
            return path
        files = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES)
        if len(files) == 1:  # a folder holding one storage file but no metadata.yaml
            return files[0]
        raise ValueError(f"{str(path)!r} is not a rosbag2 bag: no metadata.yaml and "
                         f"{len(files)} .mcap/.db3 files (expected exactly one)")
    if path.suffix not in _SUFFIXES:
        raise ValueError(f"{str(path)!r} is not a rosbag2 bag: expected a directory with "
                         f"metadata.yaml or a file ending in {'/'.join(_SUFFIXES)}")
    return path


def _types_from_definition(connection: Connection) -> dict:
    """Parse the message definition a bag stores for ``connection`` (may be empty)."""
    fmt, text = connection.msgdef.format, connection.msgdef.data
    if fmt == MessageDefinitionFormat.MSG and text:
        return dict(get_types_from_msg(text, connection.msgtype))
    if fmt == MessageDefinitionFormat.IDL and text:
        typs: dict = {}
        if text.startswith(_IDL_SEPARATOR + "IDL: "):
            for block in text.split(_IDL_SEPARATOR)[1:]:
                typs.update(get_types_from_idl(block.split("\n", 1)[1]))
        else:
            typs.update(get_types_from_idl(text))
        return typs
    return {}


@dataclass(frozen=True)
class TopicSummary:
    """One topic of a bag: type, message count and the role it plays (if any)."""

    topic: str
    msgtype: str
    count: int
    role: str | None = None


@dataclass(frozen=True)
class BagInfo:
    """Summary of a bag. Times in integer nanoseconds (bag log time)."""

    path: str
    storage: str
    start_ns: int
    end_ns: int
    message_count: int
    topics: list[TopicSummary]
    roles: dict[str, str]
    ros_distro: str | None = None

    @property
    def duration_s(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e9

    @property
    def has_ground_truth(self) -> bool:
        return any(r in self.roles for r in GROUND_TRUTH_ROLES)

    def as_dict(self) -> dict:
        """JSON-ready summary with unit-suffixed keys."""
        return {
            "path": self.path, "storage": self.storage, "ros_distro": self.ros_distro,
            "start_ns": self.start_ns, "end_ns": self.end_ns, "duration_s": self.duration_s,
            "message_count": self.message_count, "has_ground_truth": self.has_ground_truth,
            "roles": dict(self.roles),
            "topics": [{"topic": t.topic, "msgtype": t.msgtype, "count": t.count, "role": t.role}
                       for t in self.topics],
        }


@dataclass(order=True)
class _Pending:
    stamp_ns: int
    seq: int
    item: tuple = field(compare=False)


class BagSource:
    """Read a rosbag2 bag by role.

    Args:
        path: bag directory, or a single ``.mcap`` / ``.db3`` file.
        topics: role -> topic overrides merged over :data:`DEFAULT_TOPICS`; a value of
            None removes a role. Extra roles may be added.
        reorder_window_ns: how far (bag log time) a message may be held back so that
            :meth:`messages` yields in header-stamp order; 0 yields in log order.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the path is not a readable bag, or ``topics`` is malformed.
    """

    def __init__(self, path, topics: Mapping[str, str | None] | None = None,
                 *, reorder_window_ns: int = DEFAULT_REORDER_WINDOW_NS) -> None:
        self.path = _resolve_bag_path(Path(path))
        if not isinstance(reorder_window_ns, int) or reorder_window_ns < 0:
            raise ValueError(f"reorder_window_ns must be an int >= 0, got {reorder_window_ns!r}")
        self.reorder_window_ns = reorder_window_ns
        wanted: dict[str, str | None] = dict(DEFAULT_TOPICS)
        if topics is not None:
            if not isinstance(topics, Mapping):
                raise ValueError(f"topics must be a dict role -> topic, got {type(topics).__name__}")
            for role, topic in topics.items():
                if not isinstance(role, str) or not role:
                    raise ValueError(f"topics: role names must be non-empty str, got {role!r}")
                if topic is not None and (not isinstance(topic, str) or not _strip(topic)):
                    raise ValueError(f"topics[{role!r}] must be a topic name or None, got {topic!r}")
                wanted[role] = topic
        self.wanted_topics = {r: t for r, t in wanted.items() if t is not None}
        self._typestore = get_typestore(Stores.ROS2_KILTED)
        self._skipped_types: set[str] = set()
        try:
            with self._reader() as reader:
                self._connections = list(reader.connections)
                self._meta = (reader.start_time, reader.end_time, reader.message_count,
                              reader.ros_distro)
                self._storage = self._storage_name()
        except (ReaderError, sqlite3.DatabaseError) as exc:
            raise ValueError(f"{str(path)!r} is not a readable rosbag2 bag: {exc}") from None
        self._bag_topics = sorted({c.topic for c in self._connections})
        self._register_bag_types()
        readable = sorted({c.topic for c in self._connections if c.msgtype not in self._skipped_types})
        self.roles: dict[str, str] = {}
        self._unresolved: dict[str, str] = {}
        for role, topic in self.wanted_topics.items():
            try:
                found = match_topic(topic, self._bag_topics)
            except ValueError as exc:
                if topics is not None and role in topics:  # the user named it: say so now
                    raise
                self._unresolved[role] = str(exc)
                continue
            if found is not None and found not in readable:
                self._unresolved[role] = f"topic {found!r} has an unknown message type"
            elif found is not None:
                self.roles[role] = found

    # -- opening ---------------------------------------------------------------------------
    def _reader(self) -> Reader:
        return Reader(self.path)

    def _storage_name(self) -> str:
        files = [self.path] if self.path.is_file() else sorted(self.path.iterdir())
        names = {".mcap": "mcap", ".db3": "sqlite3"}
        found = sorted({names[p.suffix] for p in files if p.suffix in names})
        return "+".join(found) if found else "unknown"

    def _register_bag_types(self) -> None:
        """Add types the Kilted store lacks from the bag's own definitions; skip the rest."""
        for conn in self._connections:
            if conn.msgtype in self._typestore.fielddefs or conn.msgtype in self._skipped_types:
                continue
            try:
                typs = _types_from_definition(conn)
                missing = {k: v for k, v in typs.items() if k not in self._typestore.fielddefs}
                if missing:
                    self._typestore.register(missing)
            except (TypesysError, ValueError, IndexError) as exc:
                LOG.warning("bag %s: cannot parse definition of %s (%s)", self.path, conn.msgtype, exc)
            if conn.msgtype not in self._typestore.fielddefs:
                self._skipped_types.add(conn.msgtype)
                LOG.warning("bag %s: unknown message type %s on topic %s; skipping it",
                            self.path, conn.msgtype, conn.topic)

    # -- metadata --------------------------------------------------------------------------
    @property
    def bag_topics(self) -> list[str]:
        """All topic names in the bag, sorted."""
        return list(self._bag_topics)

    @property
    def typestore(self) -> Typestore:
        """The type store used for deserialisation (Kilted + the bag's own types)."""
        return self._typestore

    def info(self) -> BagInfo:
        """Duration, start/end, storage and per-topic counts/types/roles."""
        role_of = {t: r for r, t in self.roles.items()}
        counts: dict[str, int] = {}
        types: dict[str, set] = {}
        for c in self._connections:
            counts[c.topic] = counts.get(c.topic, 0) + c.msgcount
            types.setdefault(c.topic, set()).add(c.msgtype)
        topics = [TopicSummary(t, "|".join(sorted(types[t])), counts[t], role_of.get(t))
                  for t in self._bag_topics]
        start, end, count, distro = self._meta
        if count == 0:
            start = end = 0
        return BagInfo(str(self.path), self._storage, int(start), int(end), int(count), topics,
                       dict(self.roles), distro)

    def require(self, roles) -> dict[str, str]:
        """Role -> bag topic for ``roles``; ValueError naming the missing ones and the bag's topics."""
        roles = [roles] if isinstance(roles, str) else list(roles)
        missing = [r for r in roles if r not in self.roles]
        if missing:
            detail = ", ".join(
                f"{r} ({self._unresolved[r]})" if r in self._unresolved
                else f"{r} (looked for {self.wanted_topics[r]!r})" if r in self.wanted_topics
                else f"{r} (no topic mapped)" for r in missing)
            raise ValueError(f"bag {str(self.path)!r} has no topic for role(s) {detail}; "
                             f"bag topics: {self._bag_topics}; remap with topics={{role: topic}}")
        return {r: self.roles[r] for r in roles}

    # -- messages --------------------------------------------------------------------------
    def messages(self, roles=None, *, start_ns: int | None = None,
                 stop_ns: int | None = None) -> Iterator[tuple[str, str, int, object]]:
        """Yield ``(role, topic, stamp_ns, msg)`` in time order.

        ``stamp_ns`` is the header stamp when the message has one, else the log time.
        Messages are held at most ``reorder_window_ns`` of log time to put them in
        stamp order; one arriving later than that is yielded at once (order is then
        only approximate for it). Undecodable messages are skipped with one warning
        per topic. ``roles`` defaults to every role present in the bag; requested
        roles that are absent raise ValueError.
        """
        selected = self.require(roles) if roles is not None else dict(self.roles)
        role_of: dict[str, list[str]] = {}
        for role, topic in selected.items():
            role_of.setdefault(topic, []).append(role)
        heap: list[_Pending] = []
        seq = 0
        warned: set[str] = set()
        with self._reader() as reader:
            conns = [c for c in reader.connections
                     if c.topic in role_of and c.msgtype not in self._skipped_types]
            if not conns:
                return
            for conn, log_ns, raw in reader.messages(conns, start=start_ns, stop=stop_ns):
                try:
                    msg = self._typestore.deserialize_cdr(raw, conn.msgtype)
                except (SerdeError, ValueError, IndexError, KeyError, AssertionError) as exc:
                    if conn.topic not in warned:
                        warned.add(conn.topic)
                        LOG.warning("bag %s: skipping undecodable %s message(s) on %s: %s",
                                    self.path, conn.msgtype, conn.topic, exc)
                    continue
                stamp = header_stamp_ns(msg)
                stamp = int(log_ns) if stamp is None else stamp
                for role in role_of[conn.topic]:
                    heapq.heappush(heap, _Pending(stamp, seq, (role, conn.topic, stamp, msg)))
                    seq += 1
                release = int(log_ns) - self.reorder_window_ns
                while heap and heap[0].stamp_ns <= release:
                    yield heapq.heappop(heap).item
            while heap:
                yield heapq.heappop(heap).item

    @property
    def topic_types(self) -> dict[str, str]:
        """Bag topic -> message type (``pkg/msg/Name``) for every topic whose type is known."""
        return {c.topic: c.msgtype for c in self._connections if c.msgtype not in self._skipped_types}

    def raw_messages(self, topics=None, *, start_ns: int | None = None,
                     stop_ns: int | None = None) -> Iterator[tuple[str, str, int, bytes]]:
        """Yield ``(topic, msgtype, log_ns, cdr_bytes)`` in log-time order, undecoded.

        The serialised payload as stored (the fastest, bit-exact path for replay).
        ``topics`` (bag topic names, default all with a known type) must exist in the bag.
        """
        known = self.topic_types
        wanted = set(known) if topics is None else {t for t in topics}
        missing = sorted(wanted - set(known))
        if missing:
            raise ValueError(f"bag {str(self.path)!r} has no readable topic(s) {missing}; "
                             f"bag topics: {self._bag_topics}")
        with self._reader() as reader:
            conns = [c for c in reader.connections if c.topic in wanted and c.msgtype not in self._skipped_types]
            if not conns:
                return
            for conn, log_ns, raw in reader.messages(conns, start=start_ns, stop=stop_ns):
                yield conn.topic, conn.msgtype, int(log_ns), bytes(raw)

    def __repr__(self) -> str:
        return f"BagSource({str(self.path)!r}, roles={self.roles})"


_STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagSink:
    """Write a rosbag2 bag (MCAP or sqlite3) with CDR-serialised messages.

    Messages are ``rosbags`` message objects: build them with
    ``sink.typestore.types["sensor_msgs/msg/Image"](...)``. Use as a context
    manager; the bag is finalised (``metadata.yaml`` written) on exit.

    Args:
        path: the bag directory to create (must not exist).
        storage: ``"mcap"`` (default) or ``"sqlite3"``.
    """

    def __init__(self, path, storage: str = "mcap") -> None:
        if storage not in _STORAGES:
            raise ValueError(f"storage must be one of {sorted(_STORAGES)}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise ValueError(f"bag path {str(self.path)!r} already exists; refusing to overwrite")
        self.storage = storage
        self.typestore: Typestore = get_typestore(Stores.ROS2_KILTED)
        self._writer: Writer | None = None
        self._connections: dict[str, tuple[Connection, str]] = {}
        self.counts: dict[str, int] = {}

    def open(self) -> BagSink:
        if self._writer is not None:
            raise ValueError(f"bag {str(self.path)!r} is already open")
        writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=_STORAGES[self.storage])
        writer.open()
        self._writer = writer
        return self

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def __enter__(self) -> BagSink:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _need_open(self) -> Writer:
        if self._writer is None:
            raise ValueError(f"bag {str(self.path)!r} is not open (use `with BagSink(...) as sink:`)")
        return self._writer

    def add_topic(self, topic: str, msgtype: str, *, msgdef: str | None = None,
                  latched: bool = False) -> None:
        """Declare ``topic`` carrying ``msgtype`` (e.g. ``sensor_msgs/msg/Image``).

        ``msgdef`` (``.msg`` text) registers a custom type. ``latched`` records a
        reliable/transient-local QoS so ``ros2 bag play`` republishes it latched.
        """
        writer = self._need_open()
        if not isinstance(topic, str) or not _strip(topic):
            raise ValueError(f"topic must be a non-empty str, got {topic!r}")
        if topic in self._connections:
            raise ValueError(f"topic {topic!r} was already added as {self._connections[topic][1]}")
        if msgdef is not None and msgtype not in self.typestore.fielddefs:
            try:
                self.typestore.register(get_types_from_msg(msgdef, msgtype))
            except TypesysError as exc:
                raise ValueError(f"msgdef for {msgtype!r} does not parse: {exc}") from None
        if msgtype not in self.typestore.fielddefs:
            raise ValueError(f"unknown message type {msgtype!r} for topic {topic!r}; pass msgdef=")
        qos = [LATCHED_QOS] if latched else []
        try:
            conn = writer.add_connection(topic, msgtype, typestore=self.typestore,
                                         offered_qos_profiles=qos)
        except WriterError as exc:
            raise ValueError(f"cannot add topic {topic!r}: {exc}") from None
        self._connections[topic] = (conn, msgtype)
        self.counts[topic] = 0

    def message(self, msgtype: str, fields: Mapping | None = None, *, stamp_ns: int | None = None,
                frame_id: str | None = None):
        """Build a ``msgtype`` message from a field dict (see :func:`~depth_nodes.bagmsg.build_message`)."""
        return build_message(self.typestore, msgtype, fields, stamp_ns=stamp_ns, frame_id=frame_id)

    def write_fields(self, topic: str, stamp_ns: int, fields: Mapping, *, frame_id: str | None = None) -> None:
        """Build the topic's message from ``fields`` with header stamp ``stamp_ns`` and write it then."""
        if topic not in self._connections:
            raise ValueError(f"topic {topic!r} was not added; added: {sorted(self._connections)}")
        msgtype = self._connections[topic][1]
        has_header = "header" in dict(self.typestore.fielddefs[msgtype][1])
        msg = self.message(msgtype, fields, stamp_ns=stamp_ns if has_header else None,
                           frame_id=frame_id if has_header else None)
        self.write(topic, stamp_ns, msg)

    def write_raw(self, topic: str, stamp_ns: int, data: bytes) -> None:
        """Write an already CDR-serialised message (e.g. from ``rclpy.serialization``) at log time ``stamp_ns``."""
        writer = self._need_open()
        if topic not in self._connections:
            raise ValueError(f"topic {topic!r} was not added; added: {sorted(self._connections)}")
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, int) or stamp_ns < 0:
            raise ValueError(f"stamp_ns must be an int >= 0 (nanoseconds), got {stamp_ns!r}")
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < 4:
            raise ValueError(f"data for {topic!r} must be CDR bytes (>= 4 byte header), got {type(data).__name__}")
        writer.write(self._connections[topic][0], stamp_ns, bytes(data))
        self.counts[topic] += 1

    def write(self, topic: str, stamp_ns: int, msg) -> None:
        """Serialise ``msg`` (CDR) and write it at log time ``stamp_ns`` (int ns >= 0)."""
        writer = self._need_open()
        if topic not in self._connections:
            raise ValueError(f"topic {topic!r} was not added; added: {sorted(self._connections)}")
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, int) or stamp_ns < 0:
            raise ValueError(f"stamp_ns must be an int >= 0 (nanoseconds), got {stamp_ns!r}")
        conn, msgtype = self._connections[topic]
        try:
            data = self.typestore.serialize_cdr(msg, msgtype)
        except (AttributeError, TypeError, ValueError, KeyError, SerdeError) as exc:
            raise ValueError(f"cannot serialise message for {topic!r} as {msgtype}: {exc}") from None
        writer.write(conn, stamp_ns, data)
        self.counts[topic] += 1
