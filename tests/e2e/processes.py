"""What a run's processes are and where they listen, read from /proc (Linux)."""
from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time
from pathlib import Path


def descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(proc.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in parents.get(pid, []):
            found.append(child)
            todo.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def process_name(pid: int) -> str:
    """The program's file name, or a Ray worker's title (e.g. "raylet", "ray::RolloutActor")."""
    words = command_line(pid).split()
    return words[0].rsplit("/", 1)[-1] if words else ""


def actor_pid(driver: int, actor: str) -> int | None:
    """The process of the Ray actor class `actor` (e.g. "RolloutActor") under `driver`."""
    for pid in descendants(driver):
        if command_line(pid).startswith(f"ray::{actor}"):
            return pid
    return None


def _listening_sockets() -> dict[int, tuple[str, int]]:
    """Socket inode -> (address, port) of every listening TCP socket, IPv4 and IPv6."""
    found = {}
    for family, table in ((socket.AF_INET, "/proc/net/tcp"), (socket.AF_INET6, "/proc/net/tcp6")):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_address, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_address)
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is host-order
            found[int(fields[9])] = (socket.inet_ntop(family, raw), int(hex_port, 16))
    return found


def listening(pids: list[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket the processes `pids` listen on."""
    sockets = _listening_sockets()
    out = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in sockets:
                out.append((pid, *sockets[int(target[8:-1])]))
    return out


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def wait_for(condition, driver: subprocess.Popen, what: str, timeout: float = 300) -> None:
    """Poll `condition` until it holds; fail naming `what` if the run ends or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, f"the run ended before {what}: {driver.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"the run stalled before {what}"
        time.sleep(0.2)
