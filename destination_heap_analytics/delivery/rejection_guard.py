"""Stop a sync in which Heap refuses most of what it is sent, and only such a sync.

Isolating a refused item costs requests (a batch is split in halves until the item stands
alone), which is right for a few bad rows among good ones. When Heap refuses nearly everything
(a wrong mapping, an app Heap will not take data for), isolating every item would cost about two
requests per record, only to skip them all and report success. The guard ends such a sync after
a bounded number of requests.

**The evidence must represent the data, not the order in which Heap judged it.** Splitting a
batch judges its refused items first (they are the ones split further), so counting records as
they are judged reads "10 of the last 10 refused" from a batch whose only bad rows are its first
ten. The guard therefore never counts the items of a batch one by one while the batch is being
split. The evidence is, batch by batch, in the order Heap answered each batch's first request:

- a batch Heap accepted: all its records accepted;
- a batch Heap refused and that has been split to the end: exactly its refused records;
- a batch still being split: its records at the refused share estimated from *probes*, single
  items at spread, pseudo-random positions that are sent before the split (`probe_positions`),
  pooled over every batch being split, and never below the refusals already found in it.

A probe is a random sample, so where the bad rows sit in a batch (at its head, interleaved) does
not change the estimate, and one probe per stratum means a run of bad rows can hit at most the
probes of the strata it spans. The estimate counts ASSUMED_ACCEPTED_PROBES imaginary accepted
probes, so a handful of refused probes never sets it alone: it reaches half only once at least
that many probes more were refused than accepted.

**The rule.** The sync stops when, among the last RECENT_RECORDS records of that evidence
(sync-wide, every stream and API type, an entry cut by the window counting in proportion), at
least half are refused, at least MIN_REFUSED records were refused on their own (probes and split
items, in the window or in a batch still being split), and at least MIN_JUDGED records have been
judged. Each report that tips the balance raises HeapRefusesMost in the thread that made it, and
every other thread stops before its next request (`check`).

**Its bounds.** When Heap refuses everything, the sync stops after the first request of each
batch in flight and about MIN_REFUSED probes, or MIN_JUDGED records for the smallest batches:
at worst MIN_JUDGED answered single-record requests plus 15 more in flight (batch size 1, 16
requests at once), 45 in all, under the 50 promised for any batch size, concurrency and number of
streams. A sync that turns bad stops once half the window is refused, about RECENT_RECORDS / 2
refused records later (a batch whose probes are mostly refused is sent item by item, so about
one request per record). A few bad rows never stop a sync wherever they sit in a batch; the
exception is the very start, where the first records judged are all the evidence there is:
telling a run of bad rows there from a sync Heap refuses entirely would take more than 50
requests at batch size 1.

**Why probes, and not breadth-first splitting** (accepted halves first): that would make the
order of judgement less biased but not unbiased, it would deliver the items of a batch out of
input order (which last-write-wins properties cannot take), and it still costs about two requests
per record before the first single refusal when everything is refused. Probes cost a fixed number
and leave the order alone: a probe is the first item of its key in the batch, and the rest keeps
its order.

**Settling.** A refusal can help stop the sync while it is among the recent records. Until then
the states after its batch are held (`settled`), so a stopped sync never emits a state past the
refusals that stopped it. Only records whose evidence is final (accepted, or their batch split
to the end) move a refusal out: batches still being split would otherwise push the first bad
rows of a sync turning bad out of the window just before their own probes stop it. The count is
sync-wide, so a refusal settles as other streams' records are judged, even when its own stream
sends nothing more.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

RECENT_RECORDS = 1000
"""How many of the most recently judged records the rule looks at (one full batch)."""
MIN_REFUSED = 10
"""Records refused on their own needed before the rule can fire: a handful is never enough."""
MIN_JUDGED = 30
"""Records judged before the rule can fire: with small batches, a run of bad rows at the very
start must be at least half of this long to stop a sync (and 30 records at batch size 1 still
leave room for 16 requests in flight within 50 requests)."""
PROBES = 20
"""Single-item probes sent for each refused batch before it is split (all items of a smaller
batch): 2% of a full batch, enough for the estimate to tell 5% from 50%."""
ASSUMED_ACCEPTED_PROBES = 5
"""Imaginary accepted probes in the estimate, so that it needs several refused probes to rise."""


class HeapRefusesMost(Exception):
    """Heap refused at least half of the recent records; the sync must fail.

    `probes` (refused, sent) when the share was estimated for batches still being split."""

    def __init__(
        self,
        refused: int,
        judged: int,
        last_reason: str,
        probes: tuple[int, int] | None = None,
    ) -> None:
        if probes is None:
            what = f"Heap refused {refused} of the last {judged} records it judged ("
        else:
            what = (
                f"Heap refused at least half of the last {judged} records it judged, as estimated "
                f"from {probes[1]} records sent alone at spread positions, {probes[0]} of them "
                "refused ("
            )
        super().__init__(
            f"{what}last refusal: {last_reason}). When most records are refused, the cause is "
            "the mapping or the app_id rather than a few bad rows, so the sync stops instead of "
            "skipping them all"
        )
        self.refused = refused
        self.judged = judged


def probe_positions(
    items: list[dict], ordering_key: Callable[[dict], str] | None, seed: int, count: int = PROBES
) -> list[int]:
    """Which items of a refused batch to send alone first: one pseudo-random item in each of
    `count` equal strata, in a pseudo-random order (seeded, so a rerun probes the same rows).

    With an ordering key (last write wins), only the first item of each key may be probed: a
    probe must not overtake an earlier item of its key in the batch.
    """
    if ordering_key is None:
        eligible = list(range(len(items)))
    else:
        seen: set[str] = set()
        eligible = []
        for index, item in enumerate(items):
            key = ordering_key(item)
            if key not in seen:
                seen.add(key)
                eligible.append(index)
    rng = random.Random(seed)
    if len(eligible) <= count:
        chosen = eligible
    else:
        size = len(eligible)
        chosen = [
            eligible[rng.randrange(s * size // count, (s + 1) * size // count)]
            for s in range(count)
        ]
    rng.shuffle(chosen)
    return chosen


@dataclass(eq=False)
class _Entry:
    """One batch in the evidence: `end` is the guard's record count after it was judged."""

    end: int
    records: int
    refused: int = 0
    """Refused on their own so far (all of them once the batch is no longer splitting)."""
    probes: int = 0
    refused_probes: int = 0
    splitting: bool = False
    in_window: bool = True
    """False once RECENT_RECORDS more records have been judged after it."""
    final_at: int = 0
    """The guard's count of records with final evidence once this batch's evidence was final."""


class Judgement:
    """A refused batch's handle on the guard while the sending thread probes and splits it."""

    def __init__(self, guard: RejectionGuard, entry: _Entry) -> None:
        self._guard = guard
        self._entry = entry

    @property
    def mostly_refused(self) -> bool:
        """Were at least half of this batch's probes refused?"""
        entry = self._entry
        return entry.probes > 0 and 2 * entry.refused_probes >= entry.probes

    def probed(self, refused: bool, reason: str | None = None) -> None:
        """A probe's answer (`reason` when Heap refused it)."""
        self._guard._probed(self._entry, refused, reason)

    def refused_alone(self, reason: str) -> None:
        """An item of the batch, split down to itself, was refused."""
        self._guard._refused_alone(self._entry, reason)

    def finished(self) -> int | None:
        """Every item is delivered or refused: the exact counts replace the estimate. Returns
        the position for `RejectionGuard.settled`, or None when nothing was refused."""
        return self._guard._finished(self._entry)


class RejectionGuard:
    """One per sync, shared by every sending thread; every change holds the lock."""

    def __init__(
        self,
        recent: int = RECENT_RECORDS,
        min_refused: int = MIN_REFUSED,
        min_judged: int = MIN_JUDGED,
        assumed_accepted: int = ASSUMED_ACCEPTED_PROBES,
    ) -> None:
        self._recent = recent
        self._min_refused = min_refused
        self._min_judged = min_judged
        self._assumed_accepted = assumed_accepted
        self._judged = 0
        """Records judged since the start: the position of the evidence."""
        self._final = 0
        """Records whose evidence is final (accepted, or their batch split to the end): the
        position of a refusal for `settled`."""
        self._entries: deque[_Entry] = deque()  # at least partly in the window, oldest first
        self._exact_records = 0  # sums over the exact entries in `_entries`
        self._exact_refused = 0
        self._splitting: set[_Entry] = set()
        self._probes = 0  # pooled over `_splitting`
        self._refused_probes = 0
        self._last_reason = ""
        self._tripped: HeapRefusesMost | None = None
        self._lock = threading.Lock()

    # -- what the sending threads report -----------------------------------------------------
    # Each report below raises HeapRefusesMost once the guard has tripped, so that the thread
    # whose report tipped the balance fails its batch even when it has nothing more to send.

    def accepted(self, records: int) -> None:
        """Heap accepted a whole batch (enough records judged can complete the evidence)."""
        with self._lock:
            entry = self._add(records)
            self._exact_records += entry.records
            self._final += records
            self._evaluate()
        self.check()

    def refused(self, records: int, reason: str) -> Judgement:
        """Heap refused a whole batch: it counts at the estimated share until it is split. A
        batch of one record is a refusal on its own, exact at once."""
        with self._lock:
            self._last_reason = reason
            entry = self._add(records)
            if records == 1:
                entry.refused = 1
                self._exact_records += 1
                self._exact_refused += 1
                self._final += 1
                entry.final_at = self._final
            else:
                entry.splitting = True
                self._splitting.add(entry)
            self._evaluate()
        self.check()
        return Judgement(self, entry)

    def check(self) -> None:
        """Raises once tripped, so every sending thread stops before its next request."""
        if self._tripped is not None:
            raise self._tripped

    def settled(self, position: int) -> bool:
        """Have RECENT_RECORDS records with final evidence been judged after the refusal at
        `position`, so that it can no longer help trip the guard? Batches still being split do
        not count: they may yet turn out to be the failure it belongs to. (Read without the
        lock: a stale answer only holds a state a little longer.)"""
        return self._final - position >= self._recent

    # -- a splitting batch, through its Judgement ---------------------------------------------
    def _probed(self, entry: _Entry, refused: bool, reason: str | None) -> None:
        with self._lock:
            entry.probes += 1
            self._probes += 1
            if refused:
                entry.refused_probes += 1
                self._refused_probes += 1
                self._count_refusal(entry, reason or "")
            self._evaluate()
        self.check()

    def _refused_alone(self, entry: _Entry, reason: str) -> None:
        with self._lock:
            self._count_refusal(entry, reason)
            self._evaluate()
        self.check()

    def _finished(self, entry: _Entry) -> int | None:
        with self._lock:
            if entry.splitting:
                entry.splitting = False
                self._splitting.discard(entry)
                self._probes -= entry.probes
                self._refused_probes -= entry.refused_probes
                if entry.in_window:
                    self._exact_records += entry.records
                    self._exact_refused += entry.refused
                self._final += entry.records
                entry.final_at = self._final
                self._evaluate()
        self.check()
        return entry.final_at if entry.refused else None

    # -- the rule ----------------------------------------------------------------------------
    def _count_refusal(self, entry: _Entry, reason: str) -> None:
        entry.refused += 1
        self._last_reason = reason

    def _add(self, records: int) -> _Entry:
        self._judged += records
        entry = _Entry(self._judged, records)
        self._entries.append(entry)
        start = self._judged - self._recent
        entries = self._entries
        while entries[0].end <= start:
            gone = entries.popleft()
            gone.in_window = False
            if not gone.splitting:
                self._exact_records -= gone.records
                self._exact_refused -= gone.refused
        return entry

    def _evaluate(self) -> None:
        """Trip when the recent evidence is at least half refused (see the module docstring).
        Exact fractions, so that a tie is a tie."""
        if self._tripped is not None:
            return
        start = self._judged - self._recent
        records, refused = Fraction(self._exact_records), Fraction(self._exact_refused)
        oldest = self._entries[0]
        cut = start - (oldest.end - oldest.records)
        if cut > 0 and not oldest.splitting:  # the window cuts the oldest exact entry
            records -= cut
            refused -= Fraction(oldest.refused * cut, oldest.records)
        on_own = refused
        share = Fraction(self._refused_probes, self._probes + self._assumed_accepted)
        estimated = False
        for entry in self._splitting:
            on_own += entry.refused  # the newest evidence, wherever the window cuts
            if entry.in_window:
                inside = Fraction(min(entry.records, entry.end - start), entry.records)
                records += entry.records * inside
                estimate = entry.records * share
                estimated |= estimate > entry.refused
                refused += max(entry.refused, estimate) * inside
        if records >= self._min_judged and on_own >= self._min_refused and 2 * refused >= records:
            probes = (self._refused_probes, self._probes) if estimated else None
            self._tripped = HeapRefusesMost(
                round(refused), round(records), self._last_reason, probes
            )
