"""The statement's balance-over-time chart as server-side SVG: no script, readable by a screen reader
(its title and description say the first and last balance), integer coordinates from integer cents."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from holders.history import Event
from ledger.money import fmt_cents

W, H, PAD = 600, 200, 8


def points(events: Sequence[Event], balance_now: int) -> list[tuple[int, int]]:
    """(ms, balance after) oldest first, from the newest-first events and today's posted balance, with
    the balance before the oldest event as the first point."""
    out, balance = [], balance_now
    for e in events:
        out.append((e.ts_ms, balance))
        balance -= e.amount
    if events:
        out.append((events[-1].ts_ms, balance))
    return out[::-1]


def svg(series: list[tuple[int, int]], title: str) -> Markup:
    if len(series) < 2:
        return Markup("")
    t0, t1 = series[0][0], max(series[-1][0], series[0][0] + 1)
    low, high = min(0, *(b for _, b in series)), max(1, *(b for _, b in series))
    x = [PAD + (ts - t0) * (W - 2 * PAD) // (t1 - t0) for ts, _ in series]
    y = [H - PAD - (b - low) * (H - 2 * PAD) // (high - low) for _, b in series]
    path = [f"{x[0]},{y[0]}"]
    for i in range(1, len(series)):          # a step: the balance holds until the next event
        path += [f"{x[i]},{y[i - 1]}", f"{x[i]},{y[i]}"]
    desc = f"from {fmt_cents(series[0][1])} to {fmt_cents(series[-1][1])}, highest {fmt_cents(high)}"
    zero = H - PAD - (0 - low) * (H - 2 * PAD) // (high - low)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="chart-t chart-d" '
        f'preserveAspectRatio="none"><title id="chart-t">{escape(title)}</title>'
        f'<desc id="chart-d">{escape(desc)}</desc>'
        f'<line x1="{PAD}" y1="{zero}" x2="{W - PAD}" y2="{zero}" class="axis"/>'
        f'<polyline points="{" ".join(path)}" class="line"/></svg>')
