"""A history checker for the fault tests: what clients saw versus DESIGN §8's invariants.

A `History` is a record of one run, made by the load generator (or by hand in
unit tests), plain data that round-trips through JSON:

* `sends`: every logical send (one client message id, however many attempts)
  with its outcome: `ok` with the acknowledged seq, `error` (the last
  attempt got an error frame) or `unknown` (no answer: timeout, closed
  connection), and when it started and ended;
* `deliveries`: every entry each subscriber received, in arrival order,
  never de-duplicated (room, seq, kind, sender, text);
* `subscriptions`: per subscriber and room, the first seq it asked for
  (`since + 1`) and whether it stayed subscribed to the end (`complete`);
* `histories`: final reads of each room's history (`history` requests from a
  fresh client), by source name.

`check(history)` returns a `Report` listing, each as a human sentence:

* **lost**: an acknowledged message missing from a final history, stored at a
  seq other than the acknowledged one, or never delivered to a subscriber
  that was subscribed throughout; or an entry delivered at a seq past the end
  of a final history (delivered, then gone);
* **unexpected**: a message delivered or stored that nobody sent;
* **duplicated**: the same entry delivered twice to one subscriber, one
  message stored under two seqs, or a re-send of an acknowledged id
  acknowledged with another seq;
* **out_of_order**: a subscriber saw a seq lower than one it had seen;
* **gaps**: a subscriber's seqs did not rise by exactly 1 (from the first it
  asked for to the room's final last seq), or a history has a hole;
* **divergence**: two sources (subscribers, histories) disagree about the
  entry at one seq.

Sends whose outcome is `error` or `unknown` may or may not have been stored
(an unanswered request can still commit); either is fine, twice is not.

`recovery(history, t_fault)` measures, per room, the time from a fault to
the first acknowledgement of a send started after it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

EntryKey = tuple[str, str, str]
"""What identifies an entry's content: (kind, sender, text); presence has text ""."""


@dataclasses.dataclass(slots=True)
class Send:
    """One logical send: a client's message id, through every retry, and how it ended."""

    room: str
    client: str
    msg_id: str
    text: str
    t_start: float
    outcome: str = "unknown"
    """"ok" (acknowledged), "error" (last attempt got an error frame) or "unknown"."""
    seq: int | None = None
    """The acknowledged seq when outcome is "ok"."""
    t_end: float | None = None
    """When the ack (or the final error) came."""
    attempts: int = 1
    errors: list[str] = dataclasses.field(default_factory=list)
    """Error codes / exception names of failed attempts, in order."""
    reacks: list[int] = dataclasses.field(default_factory=list)
    """Seqs acknowledged to deliberate re-sends of this (already acked) id, later on."""

    @property
    def key(self) -> EntryKey:
        """The entry this send should produce."""
        return ("message", self.client, self.text)


@dataclasses.dataclass(slots=True)
class Delivery:
    """One entry as a subscriber received it."""

    subscriber: str
    room: str
    seq: int
    kind: str
    """"message", "join" or "leave"."""
    sender: str
    text: str = ""
    t: float = 0.0

    @property
    def key(self) -> EntryKey:
        """The entry's content."""
        return (self.kind, self.sender, self.text)


@dataclasses.dataclass(slots=True)
class Subscription:
    """A subscriber's interest in a room: every seq from `from_seq` on (to the end if complete)."""

    subscriber: str
    room: str
    from_seq: int = 1
    complete: bool = True
    """True when it was subscribed to the end of the run (and drained)."""


@dataclasses.dataclass(slots=True)
class HistEntry:
    """One entry of a final history read."""

    seq: int
    kind: str
    sender: str
    text: str = ""

    @property
    def key(self) -> EntryKey:
        """The entry's content."""
        return (self.kind, self.sender, self.text)


@dataclasses.dataclass
class History:
    """Everything one run recorded; see the module docstring."""

    sends: list[Send] = dataclasses.field(default_factory=list)
    deliveries: list[Delivery] = dataclasses.field(default_factory=list)
    subscriptions: list[Subscription] = dataclasses.field(default_factory=list)
    histories: dict[str, dict[str, list[HistEntry]]] = dataclasses.field(default_factory=dict)
    """Source name -> room -> entries, oldest first."""

    def to_json(self) -> dict[str, Any]:
        """Plain data for json.dump."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> History:
        """The inverse of to_json()."""
        return cls(
            sends=[Send(**s) for s in data.get("sends", [])],
            deliveries=[Delivery(**d) for d in data.get("deliveries", [])],
            subscriptions=[Subscription(**s) for s in data.get("subscriptions", [])],
            histories={
                source: {room: [HistEntry(**e) for e in entries] for room, entries in rooms.items()}
                for source, rooms in data.get("histories", {}).items()
            },
        )

    def save(self, path: Path) -> None:
        """Write as JSON to `path`."""
        path.write_text(json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: Path) -> History:
        """Read a history save() wrote."""
        return cls.from_json(json.loads(path.read_text()))

    @property
    def rooms(self) -> list[str]:
        """Every room that appears anywhere in the record, sorted."""
        names = {s.room for s in self.sends} | {d.room for d in self.deliveries}
        names |= {s.room for s in self.subscriptions}
        for rooms in self.histories.values():
            names |= set(rooms)
        return sorted(names)


@dataclasses.dataclass
class Report:
    """What check() found; `ok` when every anomaly list is empty."""

    lost: list[str] = dataclasses.field(default_factory=list)
    unexpected: list[str] = dataclasses.field(default_factory=list)
    duplicated: list[str] = dataclasses.field(default_factory=list)
    out_of_order: list[str] = dataclasses.field(default_factory=list)
    gaps: list[str] = dataclasses.field(default_factory=list)
    divergence: list[str] = dataclasses.field(default_factory=list)
    sent: int = 0
    acked: int = 0
    errors: int = 0
    unknown: int = 0
    retried: int = 0
    resent: int = 0
    """Deliberate re-sends of acked ids that were acknowledged (each must repeat the seq)."""
    delivered: int = 0
    stored: int = 0
    """Entries in the longest final history (all rooms)."""
    ack_p50: float = 0.0
    """Median seconds from a send's first attempt to its ack."""
    ack_p99: float = 0.0
    """99th percentile of the same."""

    ANOMALIES = ("lost", "unexpected", "duplicated", "out_of_order", "gaps", "divergence")

    @property
    def ok(self) -> bool:
        """True when no invariant was violated."""
        return not any(getattr(self, name) for name in self.ANOMALIES)

    def counts(self) -> dict[str, int]:
        """Anomaly name -> how many."""
        return {name: len(getattr(self, name)) for name in self.ANOMALIES}

    def summary(self) -> str:
        """One line: the totals and the anomaly counts."""
        anomalies = " ".join(f"{k}={v}" for k, v in self.counts().items())
        return (
            f"sent={self.sent} acked={self.acked} errors={self.errors} unknown={self.unknown} "
            f"retried={self.retried} resent={self.resent} delivered={self.delivered} "
            f"stored={self.stored} ack_p50={self.ack_p50 * 1000:.0f}ms "
            f"ack_p99={self.ack_p99 * 1000:.0f}ms {anomalies}"
        )

    def details(self, limit: int = 20) -> str:
        """The first `limit` findings of each kind, for an assertion message."""
        lines = [self.summary()]
        for name in self.ANOMALIES:
            items = getattr(self, name)
            for item in items[:limit]:
                lines.append(f"  {name}: {item}")
            if len(items) > limit:
                lines.append(f"  {name}: ... and {len(items) - limit} more")
        return "\n".join(lines)


def _describe(key: EntryKey) -> str:
    kind, sender, text = key
    return f"{kind} from {sender}" + (f" {text!r}" if text else "")


def check(history: History) -> Report:
    """Check `history` against the invariants; see the module docstring."""
    report = Report()
    sends = history.sends
    report.sent = len(sends)
    report.acked = sum(1 for s in sends if s.outcome == "ok")
    report.errors = sum(1 for s in sends if s.outcome == "error")
    report.unknown = sum(1 for s in sends if s.outcome == "unknown")
    report.retried = sum(1 for s in sends if s.attempts > 1)
    report.resent = sum(len(s.reacks) for s in sends)
    latencies = sorted(s.t_end - s.t_start for s in sends if s.outcome == "ok" and s.t_end)
    if latencies:
        report.ack_p50 = latencies[len(latencies) // 2]
        report.ack_p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    report.delivered = len(history.deliveries)
    sent_keys: dict[tuple[str, EntryKey], Send] = {(s.room, s.key): s for s in sends}

    # Every source's view: source -> room -> seq -> keys seen there.
    views: dict[str, dict[str, dict[int, list[EntryKey]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    _check_streams(history, report, views)
    final_last: dict[str, int] = {}
    for source, rooms in sorted(history.histories.items()):
        for room, entries in sorted(rooms.items()):
            seqs = [e.seq for e in entries]
            expected = list(range(1, len(entries) + 1))
            if seqs != expected:
                report.gaps.append(f"history {source} of {room}: seqs {_ranges(seqs)}")
            for entry in entries:
                views[f"history:{source}"][room][entry.seq].append(entry.key)
            if entries:
                final_last[room] = max(final_last.get(room, 0), entries[-1].seq)
        report.stored = max(report.stored, sum(len(entries) for entries in rooms.values()))

    # Divergence: one seq, different content, across (or within) sources.
    canonical: dict[str, dict[int, EntryKey]] = defaultdict(dict)
    for room in history.rooms:
        by_seq: dict[int, dict[EntryKey, list[str]]] = defaultdict(lambda: defaultdict(list))
        for source, rooms in views.items():
            for seq, keys in rooms.get(room, {}).items():
                for key in set(keys):
                    by_seq[seq][key].append(source)
        for seq in sorted(by_seq):
            variants = by_seq[seq]
            if len(variants) > 1:
                described = "; ".join(
                    f"{_describe(k)} at {sorted(set(v))}" for k, v in sorted(variants.items())
                )
                report.divergence.append(f"{room} seq {seq}: {described}")
            # The majority view is the canonical one, for the checks below.
            canonical[room][seq] = max(variants.items(), key=lambda kv: len(kv[1]))[0]

    # One message under two seqs, in any source's view (a retry stored twice).
    twice: dict[tuple[str, EntryKey, tuple[int, ...]], list[str]] = defaultdict(list)
    for source, rooms in sorted(views.items()):
        for room, seq_keys in rooms.items():
            at: dict[EntryKey, list[int]] = defaultdict(list)
            for seq, keys in seq_keys.items():
                for key in keys:
                    at[key].append(seq)
            for key, seqs in at.items():
                if key[0] == "message" and len(seqs) > 1:
                    twice[(room, key, tuple(sorted(seqs)))].append(source)
    for (room, key, seqs), sources in sorted(twice.items()):
        report.duplicated.append(
            f"{room}: {_describe(key)} at seqs {list(seqs)} in {', '.join(sources)}"
        )
    # A re-send of an acknowledged id must get the first seq back (DESIGN §5, §8 (3)).
    for send in sends:
        for seq in send.reacks:
            if seq != send.seq:
                report.duplicated.append(
                    f"{send.room}: {send.client}'s {send.msg_id} acked as seq {send.seq}, "
                    f"re-sent and acked as seq {seq}"
                )
    # Messages nobody sent.
    for room, entries in canonical.items():
        where: dict[EntryKey, list[int]] = defaultdict(list)
        for seq, key in entries.items():
            where[key].append(seq)
        for key, seqs in sorted(where.items()):
            if key[0] == "message" and (room, key) not in sent_keys:
                report.unexpected.append(f"{room} seqs {sorted(seqs)}: {_describe(key)} never sent")

    # Acknowledged messages: in every history at their seq, delivered to every full subscriber.
    delivered_to: dict[tuple[str, str], set[int]] = defaultdict(set)
    for d in history.deliveries:
        delivered_to[(d.subscriber, d.room)].add(d.seq)
    for send in sends:
        if send.outcome != "ok" or send.seq is None:
            continue
        for source, rooms in sorted(history.histories.items()):
            if send.room not in rooms:
                continue
            at = views[f"history:{source}"][send.room].get(send.seq, [])
            if send.key not in at:
                found = [
                    seq
                    for seq, keys in views[f"history:{source}"][send.room].items()
                    if send.key in keys
                ]
                where_now = f"stored at {found}" if found else "missing"
                report.lost.append(
                    f"{send.room}: {send.client}'s {send.msg_id} acked as seq {send.seq}, "
                    f"{where_now} in history {source}"
                )
        for sub in history.subscriptions:
            if sub.room != send.room or not sub.complete or send.seq < sub.from_seq:
                continue
            if send.seq not in delivered_to[(sub.subscriber, sub.room)]:
                report.lost.append(
                    f"{send.room}: {send.client}'s {send.msg_id} (acked seq {send.seq}) "
                    f"never delivered to {sub.subscriber}"
                )

    # Delivered entries past the end of a final history were delivered, then lost.
    for source, rooms in sorted(history.histories.items()):
        for room, entries in sorted(rooms.items()):
            last = entries[-1].seq if entries else 0
            past = sorted({(d.seq, d.key) for d in history.deliveries
                           if d.room == room and d.seq > last})  # fmt: skip
            for seq, key in past:
                report.lost.append(
                    f"{room} seq {seq} ({_describe(key)}) was delivered but history {source} "
                    f"ends at seq {last}"
                )
    # Full subscribers must have reached the end of the room.
    for sub in history.subscriptions:
        last = final_last.get(sub.room)
        if not sub.complete or last is None:
            continue
        seen = delivered_to[(sub.subscriber, sub.room)]
        top = max(seen, default=sub.from_seq - 1)
        if top < last:
            report.gaps.append(
                f"{sub.subscriber} in {sub.room}: saw up to seq {top}, the room reached {last}"
            )
    return report


def _check_streams(
    history: History,
    report: Report,
    views: dict[str, dict[str, dict[int, list[EntryKey]]]],
) -> None:
    """Per subscriber and room: order, gaps, repeats; fill `views` with what each saw."""
    streams: dict[tuple[str, str], list[Delivery]] = defaultdict(list)
    for d in history.deliveries:
        streams[(d.subscriber, d.room)].append(d)
    start = {(s.subscriber, s.room): s.from_seq for s in history.subscriptions}
    sent_keys = {(s.room, s.key) for s in history.sends}
    for (subscriber, room), stream in sorted(streams.items()):
        expect = start.get((subscriber, room), stream[0].seq)
        seen: set[int] = set()
        high = expect - 1
        for d in stream:
            views[f"subscriber:{subscriber}"][room][d.seq].append(d.key)
            if d.seq in seen:
                report.duplicated.append(
                    f"{subscriber} in {room}: seq {d.seq} ({_describe(d.key)}) delivered again"
                )
            elif d.seq < high:
                report.out_of_order.append(f"{subscriber} in {room}: seq {d.seq} after seq {high}")
            elif d.seq > high + 1:
                report.gaps.append(
                    f"{subscriber} in {room}: seq {d.seq} after seq {high} "
                    f"(missing {high + 1}..{d.seq - 1})"
                )
            seen.add(d.seq)
            high = max(high, d.seq)
            if d.kind == "message" and (room, d.key) not in sent_keys:
                report.unexpected.append(
                    f"{subscriber} in {room}: seq {d.seq} {_describe(d.key)} never sent"
                )
    for keys in views.values():
        for seqs in keys.values():
            for seq, at in seqs.items():
                counts = Counter(at)
                # A repeat of the same entry is reported above; keep one copy per source.
                seqs[seq] = list(counts)


def _ranges(seqs: Iterable[int]) -> str:
    """Compact "1-5,7,9-10" for a list of seqs (in the given order)."""
    out: list[str] = []
    run: list[int] = []
    for seq in seqs:
        if run and seq == run[-1] + 1:
            run.append(seq)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [seq]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def recovery(
    history: History,
    t_fault: float,
    rooms: Iterable[str] | None = None,
    clients: Iterable[str] | None = None,
) -> dict[str, float | None]:
    """Per room, seconds from `t_fault` to the first ack of a send started at or after it.

    With `clients`, only their sends count (e.g. the clients of a killed
    gateway). None for a room where no such send was acknowledged.
    """
    names = list(rooms) if rooms is not None else history.rooms
    who = set(clients) if clients is not None else None
    out: dict[str, float | None] = {}
    for room in names:
        acks = [
            s.t_end
            for s in history.sends
            if s.room == room and s.outcome == "ok" and s.t_end is not None and s.t_start >= t_fault
            and (who is None or s.client in who)
        ]  # fmt: skip
        out[room] = (min(acks) - t_fault) if acks else None
    return out


def longest_ack_gap(
    history: History, start: float, end: float, rooms: Iterable[str] | None = None
) -> dict[str, float]:
    """Per room, the longest time within [start, end] with no ack: unavailability under churn."""
    names = list(rooms) if rooms is not None else history.rooms
    out: dict[str, float] = {}
    for room in names:
        times = sorted(
            s.t_end
            for s in history.sends
            if s.room == room and s.outcome == "ok" and s.t_end is not None
            and start <= s.t_end <= end
        )  # fmt: skip
        points = [start, *times, end]
        out[room] = max(b - a for a, b in itertools.pairwise(points))
    return out
