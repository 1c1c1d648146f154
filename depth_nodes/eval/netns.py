"""Two "hosts" on one machine for the network-partition fault: the root network namespace and one
``ip netns`` namespace joined by a veth pair, whose link the harness takes down and up again.

Needs the ``ip`` tool and root (CAP_NET_ADMIN); :func:`partition_unavailable_reason` says why not
otherwise. DDS must then talk over UDP between the two (shared memory would bypass the cut) and
discover across the link: :meth:`Partition.dds_env`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

#: /30 subnet of the veth link: root side .1, namespace side .2.
SUBNET = "10.213.77"


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip"] + (["netns", "exec", netns, "ip"] if netns else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")


def partition_unavailable_reason() -> str | None:
    """None when a network namespace can be made here, else why not (for a skipped table row)."""
    if shutil.which("ip") is None:
        return "the ip tool (iproute2) is not installed"
    if os.geteuid() != 0:
        return "not root: ip netns needs CAP_SYS_ADMIN and CAP_NET_ADMIN"
    probe = f"dn_probe_{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        _ip("netns", "del", probe)
    except (RuntimeError, OSError, subprocess.TimeoutExpired):
        pass
    return None


@dataclass
class Partition:
    """A namespace ``name`` linked to the root namespace by veth ``host_if`` <-> ``ns_if``."""

    name: str
    host_if: str
    ns_if: str

    @classmethod
    def create(cls) -> Partition:
        tag = os.getpid() % 100000
        p = cls(f"dn_host_b_{tag}", f"dnb{tag}h", f"dnb{tag}n")
        _ip("netns", "add", p.name)
        try:
            _ip("link", "add", p.host_if, "type", "veth", "peer", "name", p.ns_if)
            _ip("link", "set", p.ns_if, "netns", p.name)
            _ip("addr", "add", f"{SUBNET}.1/30", "dev", p.host_if)
            _ip("link", "set", p.host_if, "up", "multicast", "on")
            _ip("addr", "add", f"{SUBNET}.2/30", "dev", p.ns_if, netns=p.name)
            _ip("link", "set", p.ns_if, "up", "multicast", "on", netns=p.name)
            _ip("link", "set", "lo", "up", netns=p.name)
            _ip("route", "add", "default", "via", f"{SUBNET}.1", netns=p.name)
        except Exception:
            p.destroy()
            raise
        return p

    def exec_prefix(self) -> list[str]:
        """argv prefix that runs a command on the namespace host."""
        return ["ip", "netns", "exec", self.name]

    @staticmethod
    def dds_env() -> dict[str, str]:
        """Environment for every participant: UDP only, discovery across the link (static peers)."""
        return {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
                "ROS_STATIC_PEERS": f"{SUBNET}.1;{SUBNET}.2"}

    def cut(self) -> None:
        _ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def destroy(self) -> None:
        """Remove the namespace (its veth end, and with it the pair, goes too)."""
        for args in (("netns", "del", self.name), ("link", "del", self.host_if)):
            try:
                _ip(*args)
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                pass
