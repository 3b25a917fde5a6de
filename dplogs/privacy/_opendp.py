"""The parts of OpenDP dplogs uses, under the names ``opendp.prelude`` gives them (``dp.m``,
``dp.c``, ``dp.atom_domain``, ...). Not the prelude itself: it also imports OpenDP's extras (its
sklearn, numpy and polars integrations), ~60 ms of CPU in every command that plans a release."""

from opendp import combinators as c
from opendp import measurements as m
from opendp.domains import atom_domain, map_domain, vector_domain
from opendp.metrics import absolute_distance, l01inf_distance, l02inf_distance, l1_distance, l2_distance
from opendp.mod import Measurement, OpenDPException, enable_features

__all__ = [
    "Measurement", "OpenDPException", "absolute_distance", "atom_domain", "c", "enable_features", "l01inf_distance",
    "l02inf_distance", "l1_distance", "l2_distance", "m", "map_domain", "vector_domain",
]
