"""Regulatory rate caps (rating/data/caps.toml) and the compliance check of tariff versions."""

from __future__ import annotations

import datetime as dt
import importlib.resources
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from rating.errors import TariffError
from rating.facility import Facility
from rating.tariff import TariffVersion, instant
from rating.tomlfields import Table, read_toml


@dataclass(frozen=True, slots=True)
class CapTier:
    id: str
    facility_type: str
    adp_min: int | None
    adp_max: int | None
    cap: Decimal | None
    additive: Decimal | None     # facility-cost additive per minute (regimes that have one)

    def fits(self, facility: Facility) -> bool:
        if facility.kind != self.facility_type:
            return False
        if self.facility_type == "prison" and self.adp_min is None and self.adp_max is None:
            return True
        adp = facility.adp if facility.adp is not None else 0
        lo = self.adp_min if self.adp_min is not None else 0
        return lo <= adp and (self.adp_max is None or adp <= self.adp_max)

    @property
    def limit(self) -> Decimal:
        assert self.cap is not None
        return self.cap + (self.additive or 0)


@dataclass(frozen=True)
class Regime:
    id: str
    title: str
    source: str
    effective: dt.date
    compliance: dt.date | None
    per_call_fees_allowed: bool
    ancillary_fees_allowed: bool
    international_termination_additive: bool
    facility_cost_additive: bool
    tiers: tuple[CapTier, ...]
    notes: str

    @property
    def binding_from(self) -> dt.date:
        return self.compliance or self.effective

    def missing(self) -> list[str]:
        """Names of the numbers an operator still has to fill in."""
        out = []
        for tier in self.tiers:
            if tier.cap is None:
                out.append(f"{tier.id}.cap_per_minute")
            if self.facility_cost_additive and tier.additive is None:
                out.append(f"{tier.id}.facility_cost_additive")
            if tier.facility_type == "jail" and tier.adp_min is None:
                out.append(f"{tier.id}.adp_min")
        return out

    @property
    def complete(self) -> bool:
        return not self.missing()

    def tier_for(self, facility: Facility) -> CapTier | None:
        return next((t for t in self.tiers if t.fits(facility)), None)


@dataclass(frozen=True)
class Finding:
    level: str           # "error" (refused) | "overridden" (accepted by cap_override) | "warning" | "info"
    message: str
    field: str = ""      # the tariff field at fault, for errors


def default_caps_path() -> Path:
    return Path(str(importlib.resources.files("rating.data").joinpath("caps.toml")))


def load_caps(path: Path | None = None) -> tuple[Regime, ...]:
    path = path or default_caps_path()
    root = Table(read_toml(path), path)
    root.int("schema", 1, lo=1, hi=1)
    regimes = []
    for r in root.table_list("regime"):
        effective = r.raw("effective")
        compliance = r.raw("compliance", None)
        for key, value in (("effective", effective), ("compliance", compliance)):
            if value is not None and (not isinstance(value, dt.date) or isinstance(value, dt.datetime)):
                raise r.error(key, "must be a TOML date like 2024-11-19")
        has_additive = r.bool("facility_cost_additive")
        tiers = []
        for t in r.table_list("tier"):
            tiers.append(CapTier(
                id=t.str("id"),
                facility_type=t.str("facility_type", choices=("prison", "jail")),
                adp_min=t.int("adp_min", None, lo=0),
                adp_max=t.int("adp_max", None, lo=0),
                cap=t.decimal("cap_per_minute", None, places=6, hi=Decimal(10)),
                additive=t.decimal("facility_cost_additive", None, places=6, hi=Decimal(10)),
            ))
            t.finish()
        regime = Regime(
            id=r.str("id"), title=r.str("title"), source=r.str("source"), effective=effective,
            compliance=compliance, per_call_fees_allowed=r.bool("per_call_fees_allowed"),
            ancillary_fees_allowed=r.bool("ancillary_fees_allowed"),
            international_termination_additive=r.bool("international_termination_additive"),
            facility_cost_additive=has_additive, tiers=tuple(tiers), notes=r.str("notes", ""),
        )
        r.finish()
        if regime.complete:
            _check_coverage(regime, r)
        regimes.append(regime)
    root.finish()
    regimes.sort(key=lambda g: g.binding_from)
    return tuple(regimes)


def _check_coverage(regime: Regime, r: Table) -> None:
    """A regime with numbers must put every facility in exactly one tier."""
    prisons = [t for t in regime.tiers if t.facility_type == "prison"]
    if len(prisons) != 1:
        raise r.error("tier", f"{regime.id}: needs exactly one prison tier")
    jails = sorted((t for t in regime.tiers if t.facility_type == "jail"), key=lambda t: t.adp_min or 0)
    expect = 0
    for tier in jails:
        if tier.adp_min != expect:
            raise r.error("tier", f"{regime.id}: jail tier {tier.id} starts at ADP {tier.adp_min}, "
                                  f"expected {expect}")
        if tier.adp_max is None:
            if tier is not jails[-1]:
                raise r.error("tier", f"{regime.id}: only the largest jail tier may be open-ended")
            return
        expect = tier.adp_max + 1
    raise r.error("tier", f"{regime.id}: jail tiers must cover every ADP (the largest tier needs no adp_max)")


def regimes_during(regimes: tuple[Regime, ...], start: float, end: float | None, tz: object) -> list[Regime]:
    """Regimes binding at some instant of [start, end)."""
    out = []
    for i, regime in enumerate(regimes):
        begins = instant(regime.binding_from, tz)  # type: ignore[arg-type]
        ends = instant(regimes[i + 1].binding_from, tz) if i + 1 < len(regimes) else None  # type: ignore[arg-type]
        if (end is None or begins < end) and (ends is None or start < ends):
            out.append(regime)
    return out


def numbers_for(regimes: tuple[Regime, ...], regime: Regime) -> Regime | None:
    """The regime whose numbers are used for `regime`: itself, or the latest earlier complete one."""
    if regime.complete:
        return regime
    earlier = [g for g in regimes if g.binding_from < regime.binding_from and g.complete]
    return earlier[-1] if earlier else None


def check_version(regimes: tuple[Regime, ...], version: TariffVersion, facility: Facility,
                  start: float, end: float | None) -> list[Finding]:
    """Findings for one tariff version as used by one facility during [start, end)."""
    findings: list[Finding] = []
    where = f"{version.label} ({version.file}) at {facility.id}"
    binding = regimes_during(regimes, start, end, facility.tz)
    if not binding:
        findings.append(Finding("info", f"{where}: no caps regime in force during this version; not checked"))
    violations: list[tuple[str, str]] = []
    for regime in binding:
        used = numbers_for(regimes, regime)
        if used is None:
            findings.append(Finding("warning", f"{where}: {regime.id} has no numbers and no earlier regime "
                                               "has; caps NOT checked"))
            continue
        if used is not regime:
            missing = regime.missing()
            source = regime.source.split(" - ")[0]
            findings.append(Finding(
                "warning",
                f"caps regime {regime.id} (binding from {regime.binding_from}) lacks {len(missing)} numbers "
                f"({', '.join(missing[:2])}, ...): tariffs are checked against {used.id} instead; "
                f"fill in rating/data/caps.toml from {source}",
            ))
        tier = used.tier_for(facility)
        if tier is None:
            problem = f"{used.id} has no tier for a {facility.kind} with ADP {facility.adp}"
            violations.append(("rates", problem))
            continue
        violations.extend(_violations(version, regime, used, tier))
    for field, problem in violations:
        if version.cap_override is not None:
            o = version.cap_override
            findings.append(Finding("overridden", f"{where}: {problem} - ACCEPTED under cap_override "
                                                  f"by {o.approved_by}: {o.reason}", field))
        else:
            findings.append(Finding("error", f"{where}: {problem}", field))
    return findings


def _violations(version: TariffVersion, rules: Regime, used: Regime, tier: CapTier) -> list[tuple[str, str]]:
    out = []
    provider_pct = sum((t.percent for t in version.taxes if not t.mandated), Decimal(0))
    cap = tier.limit
    label = f"{used.id} tier {tier.id} cap ${cap}/min"
    for name, terms in version.all_terms():
        charged = terms.rate * (1 + provider_pct / 100)
        limit = cap
        if name.startswith("international") and rules.international_termination_additive:
            limit = cap + terms.termination_cost
        if charged > limit:
            extra = f" + termination ${terms.termination_cost}" if limit != cap else ""
            fee = f" (incl. {provider_pct}% provider fees)" if provider_pct else ""
            field = name if name.startswith("international") else f"rates.{name}"
            out.append((field, f"{field} ${charged.normalize()}/min{fee} exceeds {label}{extra}"))
    if version.connect_fee > 0 and not rules.per_call_fees_allowed:
        out.append(("connect_fee", f"connect_fee ${version.connect_fee} is a per-call fee, "
                                   f"prohibited under {rules.id}"))
    for i, tax in enumerate(version.taxes):
        if tax.mandated:
            continue
        field = f"taxes[{i}]"
        if tax.per_call > 0 and not rules.per_call_fees_allowed:
            out.append((field, f"{field} '{tax.name}' is a provider per-call fee (mandated = false), "
                               f"prohibited under {rules.id}"))
        if tax.percent > 0 and not rules.ancillary_fees_allowed:
            out.append((field, f"{field} '{tax.name}' is a provider ancillary charge (mandated = false), "
                               f"prohibited under {rules.id}"))
    return out


def raise_errors(findings: list[Finding], file: str) -> None:
    errors = [f for f in findings if f.level == "error"]
    if errors:
        problems = "; ".join(f.message for f in errors)
        raise TariffError(file, errors[0].field, f"above the caps in force: {problems} (see [cap_override])")
