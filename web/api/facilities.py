"""Facilities: search, AdvancePay availability, published rates per call type, taxes, the FCC caps in
force. Public: a family checks availability before it signs up."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from rating.caps import Regime
from rating.catalog import Catalog
from rating.errors import RatingError
from rating.facility import Facility
from rating.tariff import TariffVersion
from web.deps import services
from web.problems import ApiProblem, responses
from web.schemas import CallRate, CapRegime, FacilityDetail, FacilitySummary, Money, Rate, TaxOut
from web.services import Services

router = APIRouter(tags=["facilities"])


def _in_force(catalog: Catalog, fac: Facility, now: dt.datetime) -> TariffVersion | None:
    try:
        return catalog.version_at(fac.id, now)
    except RatingError:
        return None


def _summary(catalog: Catalog, fac: Facility, now: dt.datetime) -> FacilitySummary:
    return FacilitySummary(id=fac.id, name=fac.name, state=fac.state, kind=fac.kind,
                           advancepay=_in_force(catalog, fac, now) is not None)


def _regime(regimes: tuple[Regime, ...], fac: Facility, today: dt.date) -> CapRegime | None:
    """The regime in force today: the latest complete one whose effective date has come (an incomplete
    one is not enforced: the catalog checks tariffs against the one before it)."""
    started = [r for r in regimes if r.effective <= today and r.complete]
    if not started:
        return None
    regime = max(started, key=lambda r: r.effective)
    tier = regime.tier_for(fac)
    cap = Rate.of(tier.limit, "/min") if tier is not None and tier.cap is not None else None
    return CapRegime(id=regime.id, title=regime.title, effective=regime.effective.isoformat(),
                     binding_from=regime.binding_from.isoformat(), tier=tier.id if tier else None,
                     cap_per_minute=cap)


@router.get("/facilities", response_model=list[FacilitySummary], responses=responses(422),
            summary="Search facilities by name and state")
async def search(svc: Annotated[Services, Depends(services)],
                 q: Annotated[str, Query(max_length=100, description="part of the name or id")] = "",
                 state: Annotated[str, Query(max_length=2, description="two-letter state")] = ""
                 ) -> list[FacilitySummary]:
    now = dt.datetime.now(dt.UTC)
    needle, st = q.strip().lower(), state.strip().upper()
    return [_summary(svc.catalog, f, now) for f in sorted(svc.catalog.facilities, key=lambda f: f.name)
            if (not needle or needle in f.name.lower() or needle in f.id.lower())
            and (not st or f.state == st)]


@router.get("/facilities/{facility_id}", response_model=FacilityDetail, responses=responses(404, 422),
            summary="Rates, taxes, caps and deposit limits of one facility")
async def detail(facility_id: str, svc: Annotated[Services, Depends(services)]) -> FacilityDetail:
    try:
        fac = svc.catalog.facility(facility_id)
    except RatingError:
        raise ApiProblem(404, f"there is no facility {facility_id[:40]!r}") from None
    now = dt.datetime.now(dt.UTC)
    version = _in_force(svc.catalog, fac, now)
    rates = [] if version is None else [
        CallRate(call_type=name, per_minute=Rate.of(terms.rate, "/min")) for name, terms in
        [(c.value, t) for c, t in version.domestic.items()] + [("international", version.international)]]
    taxes = [] if version is None else [
        TaxOut(name=t.name, percent=f"{t.percent.normalize():f}", per_call=Rate.of(t.per_call),
               mandated=t.mandated) for t in version.taxes]
    cfg = svc.config
    return FacilityDetail(
        **_summary(svc.catalog, fac, now).model_dump(), time_zone=fac.tz.key,
        billing_increment_seconds=version.increment if version else 60,
        connect_fee=Rate.of(version.connect_fee if version else Decimal(0)),
        rates=rates, taxes=taxes, cap_regime=_regime(svc.catalog.regimes, fac, now.date()),
        deposit_min=Money.of(cfg.deposit_min_cents), deposit_max=Money.of(cfg.deposit_max_cents))
