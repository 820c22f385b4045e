"""Built-in demo data: realistic labelled logs of a small cluster, generated, seeded and deterministic.

Lines use the BGL layout (``Label Epoch Date Node Time NodeRepeat Type Component Level Content``) so the ``bgl``
format reads them. Six subsystems (memory, network, storage, kernel, job scheduler, hardware monitor) emit
pure-normal, pure-anomaly and *mixed* message types: the same template is normal or anomalous depending on a
parameter value or a word (``link state ... down``). Anomalies come in bursts, and some failure types appear only in
the late part of the log, so a chronological split leaves them unseen in training.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Callable, Iterator

Render = Callable[[random.Random], tuple[str, str | None]]
"""Returns (content, alert category or None for normal)."""


@dataclass(frozen=True)
class MessageType:
    subsystem: str
    component: str
    level: str
    weight: float  # relative frequency among background messages; 0 = only in bursts
    render: Render
    late_only: bool = False  # a new failure type: appears only after ``new_failures_from``


def _hex(rng: random.Random, digits: int = 8) -> str:
    return "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(digits))


def _ip(rng: random.Random) -> str:
    return f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _path(rng: random.Random) -> str:
    return rng.choice(["/home", "/scratch", "/gpfs/projects", "/p/gb1"]) + f"/{rng.choice(['alice', 'bob', 'qcd', 'md'])}{rng.randint(1, 40)}/run{rng.randint(1, 9)}"


def _ddr(rng):
    count = rng.choice([1, 1, 1, 2, 3, 5, 8]) if rng.random() < 0.93 else rng.randint(40, 400)
    text = f"{count} ddr error(s) detected and corrected on rank 0, symbol {rng.randint(0, 71)}, bit {rng.randint(0, 7)}"
    return text, ("KERNDDR" if count >= 20 else None)


def _link(rng):
    state = "down" if rng.random() < 0.08 else "up"
    return f"link state on port {rng.randint(0, 11)} changed to {state}", ("NETLINK" if state == "down" else None)


def _lustre(rng):
    ms = rng.randint(2, 900) if rng.random() < 0.92 else rng.randint(6000, 90000)
    return f"lustre: write to {_path(rng)} took {ms} ms", ("FSSLOW" if ms >= 5000 else None)


def _chdir(rng):
    reason = "Permission denied" if rng.random() < 0.3 else "No such file or directory"
    anomaly = reason == "Permission denied"
    return f"ciod: LOGIN chdir({_path(rng)}) failed: {reason}", ("APPCHDIR" if anomaly else None)


def _job_exit(rng):
    status = 0 if rng.random() < 0.9 else rng.choice([1, 134, 137, 139])
    return f"job {rng.randint(10000, 99999)} exited with status {status}", ("APPSEV" if status else None)


def _fan(rng):
    rpm = rng.randint(3200, 6400) if rng.random() < 0.94 else rng.randint(0, 600)
    return f"fan module {rng.randint(0, 5)} speed {rpm} rpm", ("MONFAN" if rpm < 1000 else None)


def _power(rng):
    state = "FAULT" if rng.random() < 0.1 else "OK"
    return f"power module status {state} on node card {rng.randint(0, 15)}", ("MONPOW" if state == "FAULT" else None)


def _const(text: str, category: str | None = None) -> Render:
    return lambda rng: (text, category)


MESSAGE_TYPES: tuple[MessageType, ...] = (
    # memory
    MessageType("memory", "KERNEL", "INFO", 30, _const("instruction cache parity error corrected")),
    MessageType("memory", "KERNEL", "INFO", 8, _ddr),
    MessageType("memory", "KERNEL", "INFO", 6, lambda r: (f"CE sym {r.randint(0, 31)}, at {_hex(r)}, mask {_hex(r, 2)}", None)),
    MessageType("memory", "KERNEL", "FATAL", 0, lambda r: (f"machine check interrupt (bit={_hex(r, 2)}): L2 dcache unit data parity error", "KERNMC")),
    MessageType("memory", "KERNEL", "FATAL", 0, _const("data TLB error interrupt", "KERNDTLB")),
    # network
    MessageType("network", "KERNEL", "INFO", 12, lambda r: (f"torus receiver {r.choice(['x+', 'x-', 'y+', 'y-', 'z+', 'z-'])} input pipe error(s) (dcr {_hex(r, 3)}) detected and corrected", None)),
    MessageType("network", "KERNEL", "INFO", 5, _link),
    MessageType("network", "APP", "FATAL", 0, lambda r: (f"ciod: Error reading message prefix on CioStream socket to {_ip(r)}:{r.randint(30000, 40000)}, Link has been severed", "APPREAD")),
    MessageType("network", "KERNEL", "FATAL", 0, lambda r: (f"Error receiving packet on tree network, expecting type {r.randint(50, 60)} instead of type {r.randint(0, 9)} (softheader={_hex(r)} {_hex(r)})", "KERNRECV"), late_only=True),
    # storage
    MessageType("storage", "APP", "INFO", 6, lambda r: (f"NFS mount of {_path(r)} from {_ip(r)} succeeded", None)),
    MessageType("storage", "APP", "INFO", 5, _lustre),
    MessageType("storage", "APP", "FATAL", 3, _chdir),
    MessageType("storage", "KERNEL", "FATAL", 0, lambda r: (f"fsck: block bitmap differences on device sd{r.choice('abcd')}: +{r.randint(1000, 99999)}", "FSCORRUPT"), late_only=True),
    # kernel
    MessageType("kernel", "KERNEL", "INFO", 10, lambda r: (f"generating core.{r.randint(100, 9999)}", None)),
    MessageType("kernel", "KERNEL", "INFO", 4, lambda r: (f"total of {r.randint(1, 40)} ddr error(s) detected and corrected over {r.randint(60, 900)} seconds", None)),
    MessageType("kernel", "KERNEL", "FATAL", 0, lambda r: (f"kernel panic: {r.choice(['Attempted to kill init', 'Out of memory and no killable processes', 'Fatal exception in interrupt'])}", "KERNPAN")),
    # job scheduler
    MessageType("scheduler", "MMCS", "INFO", 8, lambda r: (f"job {r.randint(10000, 99999)} started on partition R{r.randint(0, 7)}{r.randint(0, 7)}-M{r.randint(0, 1)} with {r.choice([32, 64, 128, 512])} nodes", None)),
    MessageType("scheduler", "MMCS", "INFO", 7, _job_exit),
    MessageType("scheduler", "APP", "FATAL", 0, lambda r: (f"ciod: failed to read message prefix on control stream (CioStream socket to {_ip(r)}:{r.randint(30000, 40000)}", "APPREAD")),
    # hardware monitor
    MessageType("hardware", "MONITOR", "INFO", 4, _fan),
    MessageType("hardware", "MONITOR", "INFO", 3, _power),
    MessageType("hardware", "MONITOR", "WARNING", 3, lambda r: (f"temperature sensor {r.randint(0, 9)} reads {r.randint(28, 52)} C", None)),
    MessageType("hardware", "HARDWARE", "SEVERE", 0, lambda r: (f"Power Good signal deactivated: R{r.randint(0, 7)}{r.randint(0, 7)}-M{r.randint(0, 1)}-N{r.choice('0123456789ABCDEF')}. A service action may be required.", "MONPGOOD"), late_only=True),
)


def _node(rng: random.Random) -> str:
    return f"R{rng.randint(0, 7)}{rng.randint(0, 7)}-M{rng.randint(0, 1)}-N{rng.choice('0123456789ABCDEF')}-C:J{rng.randint(2, 17):02d}-U{rng.choice(['01', '11'])}"


def _format_line(category: str | None, when: dt.datetime, node: str, msg: MessageType, content: str) -> str:
    epoch = int(when.timestamp())
    return (
        f"{category or '-'} {epoch} {when:%Y.%m.%d} {node} {when:%Y-%m-%d-%H.%M.%S.%f} {node} RAS "
        f"{msg.component} {msg.level} {content}"
    )


def generate(n_lines: int = 20_000, seed: int = 0, burst_rate: float = 0.0012,
             new_failures_from: float = 0.8) -> Iterator[str]:
    """Yield ``n_lines`` labelled lines in time order.

    ``burst_rate`` is the chance that a line starts an anomaly burst (5–60 lines of one failure type within
    seconds). Failure types marked ``late_only`` start only after the fraction ``new_failures_from`` of the lines.
    """
    if n_lines < 0:
        raise ValueError(f"n_lines must be >= 0, got {n_lines}")
    if not 0.0 <= new_failures_from <= 1.0:
        raise ValueError(f"new_failures_from must be within [0, 1], got {new_failures_from}")
    rng = random.Random(seed)
    background = [m for m in MESSAGE_TYPES if m.weight > 0]
    weights = [m.weight for m in background]
    burst_types = [m for m in MESSAGE_TYPES if m.weight == 0]
    when = dt.datetime(2005, 6, 3, 15, 42, 59, tzinfo=dt.timezone.utc)
    burst: list[MessageType] = []
    burst_nodes: list[str] = []
    late_start = int(n_lines * new_failures_from)
    # Every new failure type shows up at least once, however short the log: one burst each, spread over the late part.
    late_types = [m for m in burst_types if m.late_only]
    late_span = (n_lines - late_start) / len(late_types)
    scheduled = [(late_start + int((j + 0.5) * late_span), m) for j, m in enumerate(late_types)]
    for index in range(n_lines):
        if scheduled and index >= scheduled[0][0] and not burst:
            burst = [scheduled.pop(0)[1]] * rng.randint(5, 60)
            burst_nodes = [_node(rng) for _ in range(rng.randint(1, 8))]
        if burst:
            msg = burst.pop()
            node = rng.choice(burst_nodes)
            when += dt.timedelta(microseconds=rng.randint(1_000, 2_000_000))
        else:
            late = index >= late_start
            if rng.random() < burst_rate * (3 if late else 1):
                # Late bursts favour the new failure types, as in real incidents that first show up late.
                eligible = [m for m in burst_types if late or not m.late_only]
                if late:
                    eligible += [m for m in eligible if m.late_only] * 2
                failure = rng.choice(eligible)
                burst = [failure] * rng.randint(5, 60)
                burst_nodes = [_node(rng) for _ in range(rng.randint(1, 8))]
                msg = burst.pop()
                node = rng.choice(burst_nodes)
            else:
                msg = rng.choices(background, weights)[0]
                node = _node(rng)
            when += dt.timedelta(microseconds=rng.randint(50_000, 120_000_000))
        content, category = msg.render(rng)
        yield _format_line(category, when, node, msg, content)
