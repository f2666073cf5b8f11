"""Rating engine: facility tariffs, number classification and exact quotes. Knows nothing of Asterisk."""

from rating.catalog import Catalog, load_catalog
from rating.errors import NumberRefused, RatingError, TariffError, UnknownFacility
from rating.facility import Facility
from rating.quote import Destination, Quote
from rating.tariff import CallClass

__all__ = [
    "CallClass",
    "Catalog",
    "Destination",
    "Facility",
    "NumberRefused",
    "Quote",
    "RatingError",
    "TariffError",
    "UnknownFacility",
    "load_catalog",
]
