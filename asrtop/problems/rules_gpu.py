"""PURE: GPU rules over the agents' NVML facts: hot, throttled (clock event reasons), ECC errors.

A reading the agent does not have (None: no NVML, no ECC, an older agent) never fires: absent is not zero.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

from asrtop.agentstatus import GpuReading
from asrtop.fleet import FleetSnapshot
from asrtop.problems.engine import Rule, RuleContext
from asrtop.problems.model import Finding, Severity
from asrtop.problems.state_facts import clear_after, down_for, gpu_for, live, per_snapshot

# NVML clock event reasons (the agent's names: nvmlClocksEventReason* in snake case) that mean the GPU runs
# slower than it should. Not gpu_idle, applications_clocks_setting, sync_boost, display_clock_setting (a
# setting or no work), nor sw_power_cap (a busy GPU at its power limit: normal under full load).
SLOWDOWN_REASONS = {
    "hw_slowdown": "hardware slowdown",
    "hw_thermal_slowdown": "too hot",
    "sw_thermal_slowdown": "too hot",
    "hw_power_brake_slowdown": "power brake",
}


class _GpuFacts(NamedTuple):
    """The nodes a GPU rule could fire on, from one pass over the live nodes per snapshot (1,000 nodes are
    judged every refresh; most have no GPU near any threshold): (node, hottest known temperature, its GPUs)
    for nodes whose temperature is known, and (node, GPUs) for those with a slowdown reason / an ECC count."""

    temperatures: tuple[tuple[str, float, tuple[GpuReading, ...]], ...]
    slowed: tuple[tuple[str, tuple[GpuReading, ...]], ...]
    ecc: tuple[tuple[str, tuple[GpuReading, ...]], ...]


@per_snapshot
def _gpu_facts(snap: FleetSnapshot) -> _GpuFacts:
    temperatures, slowed, ecc = [], [], []
    for n, st in live(snap):
        gpus = st.gpus
        if not gpus:
            continue
        hottest = None
        slow = errors = False
        for g in gpus:
            t = g.temperature_celsius
            if t is not None and (hottest is None or t > hottest):
                hottest = t
            if g.clock_event_reasons and not slow:
                slow = any(r in SLOWDOWN_REASONS for r in g.clock_event_reasons)
            if g.ecc_errors_uncorrected_volatile or g.ecc_errors_corrected_volatile:
                errors = True
        if hottest is not None:
            temperatures.append((n.name, hottest, gpus))
        if slow:
            slowed.append((n.name, gpus))
        if errors:
            ecc.append((n.name, gpus))
    return _GpuFacts(tuple(temperatures), tuple(slowed), tuple(ecc))


def find_hot(ctx: RuleContext) -> Iterator[Finding]:
    warning, critical = ctx.settings.gpu_temp_warning, ctx.settings.gpu_temp_critical
    for node, hottest, gpus in _gpu_facts(ctx.snapshot).temperatures:
        if hottest < warning:
            continue
        hot = [g for g in gpus if g.temperature_celsius is not None and g.temperature_celsius >= warning]
        if not hot:
            continue
        hot.sort(key=lambda g: -g.temperature_celsius)
        worst = hot[0].temperature_celsius >= critical
        limit = f"critical from {critical:g} °C" if worst else f"warning from {warning:g} °C"
        at = ", ".join(f"GPU {g.index} at {g.temperature_celsius:.0f} °C" for g in hot)
        yield Finding("gpu-hot", node, Severity.CRITICAL if worst else Severity.WARNING, f"has {at} ({limit})",
                      f"asrtop drain {node}" if worst else None)


def find_throttled(ctx: RuleContext) -> Iterator[Finding]:
    for node, gpus in _gpu_facts(ctx.snapshot).slowed:
        parts = []
        for g in gpus:
            slow = [r for r in g.clock_event_reasons or () if r in SLOWDOWN_REASONS]
            if slow:
                why = ", ".join(dict.fromkeys(SLOWDOWN_REASONS[r] for r in slow))
                parts.append(f"GPU {g.index} by {', '.join(slow)} ({why})")
        if parts:
            yield Finding("gpu-throttled", node, Severity.WARNING, f"has its clocks slowed down: {'; '.join(parts)}")


def find_ecc(ctx: RuleContext) -> Iterator[Finding]:
    for node, gpus in _gpu_facts(ctx.snapshot).ecc:
        bad = [(g.index, g.ecc_errors_uncorrected_volatile) for g in gpus if g.ecc_errors_uncorrected_volatile]
        fixed = [(g.index, g.ecc_errors_corrected_volatile) for g in gpus if g.ecc_errors_corrected_volatile]
        if bad:
            yield Finding("gpu-ecc", node, Severity.CRITICAL, f"has uncorrected ECC errors: {_counts(bad)} since "
                          "the driver loaded (its results may be wrong)", f"asrtop drain {node}")
        elif fixed:
            yield Finding("gpu-ecc", node, Severity.WARNING,
                          f"has corrected ECC errors: {_counts(fixed)} since the driver loaded")


def _counts(per_gpu: list[tuple[int, int | None]]) -> str:
    return ", ".join(f"{n} on GPU {i}" for i, n in per_gpu)


GPU_RULES = (
    Rule("gpu-hot", "GPU hot", find_hot, gpu_for, clear_after),
    Rule("gpu-throttled", "GPU throttled", find_throttled, gpu_for, clear_after),
    Rule("gpu-ecc", "GPU ECC errors", find_ecc, down_for, clear_after),
)
