"""The token that makes "charge before noise" structural.

Noise can only be drawn against a :class:`Charge`: the ledger creates one when it durably reserves
a loss, and every draw consumes part of it. A draw that would exceed the reserved loss is a bug and
raises before any noise exists. Once a draw happened, the charge can no longer be refunded.

>>> from dplogs.privacy.loss import PrivacyLoss
>>> c = Charge.for_audit(PrivacyLoss(epsilon=1.0))
>>> c.consume(PrivacyLoss(epsilon=0.4)); c.noise_drawn
True
>>> c.consume(PrivacyLoss(epsilon=0.7))
Traceback (most recent call last):
...
dplogs.errors.InternalError: draw of PrivacyLoss(epsilon=0.7, delta=0.0, rho=0.0) exceeds what is left of the reserved charge PrivacyLoss(epsilon=0.6, delta=0.0, rho=0.0) (this is a bug in dplogs)
"""

from __future__ import annotations

import threading

from dplogs.errors import InternalError
from dplogs.privacy.loss import PrivacyLoss


class Charge:
    """A reserved privacy loss that noise draws consume. Created by the ledger (``reserve``)."""

    def __init__(self, reserved: PrivacyLoss, *, entry_id: str | None, audit_only: bool = False) -> None:
        self.reserved = reserved
        self.entry_id = entry_id
        self.audit_only = audit_only
        self._left = reserved
        self._drawn = False
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def for_audit(cls, loss: PrivacyLoss) -> Charge:
        """An unledgered charge for the empirical auditor and tests. Values drawn under it must
        never leave the process: they are not releases."""
        return cls(loss, entry_id=None, audit_only=True)

    @property
    def noise_drawn(self) -> bool:
        return self._drawn

    @property
    def left(self) -> PrivacyLoss:
        return self._left

    def consume(self, loss: PrivacyLoss) -> None:
        """Account for one noise draw of ``loss``; call before drawing."""
        with self._lock:
            if self._closed:
                raise InternalError("noise drawn against a charge that was already committed or refunded")
            if not self._left.covers(loss):
                raise InternalError(
                    f"draw of {loss} exceeds what is left of the reserved charge {self._left}"
                )
            self._left = PrivacyLoss(
                epsilon=max(self._left.epsilon - loss.epsilon, 0.0),
                delta=max(self._left.delta - loss.delta, 0.0),
                rho=max(self._left.rho - loss.rho, 0.0),
            )
            self._drawn = True

    def close(self) -> None:
        """Called by the ledger on commit or refund: no draw may follow."""
        with self._lock:
            self._closed = True
