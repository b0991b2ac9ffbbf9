"""Ground truth against attribution: the verdict on each simulated letter.

The truth of a letter is known from the plan: the visitor who wrote it and
the moment they were shown the address they wrote to; their session at that
moment (the tracker's own session, read back) is the source that truly
brought the enquiry. Attribution's lead says which visitor and source it
credits. Per letter:

- correct visitor: the lead's visitor is the writer;
- correct source: the lead's channel, source and campaign are the truth's
  (also when a wrong visitor happened to come the same way);
- wrong: the lead credits another visitor (a wrong source when that
  visitor's source differs);
- unknown: the lead credits no visitor (the original address was shown, the
  pool was exhausted, or no lease was found).
"""

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mailbox_sync.models import Letter
from tracker.models import Session, Visitor

CORRECT = "correct"
WRONG = "wrong"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Truth:
    letter: int  # index in the plan's letters
    visitor: int  # index in the plan's visitors
    vid: str
    shown_at: float  # minute the address written to was shown
    address: str


@dataclass(frozen=True)
class LetterVerdict:
    letter: int
    visitor: int
    credited: int | None  # the visitor the lead credits (plan index), None: no visitor
    verdict: str  # CORRECT, WRONG or UNKNOWN (by visitor)
    source_ok: bool
    match_kind: str


@dataclass
class Verdicts:
    letters: int = 0
    correct_visitor: int = 0
    correct_source: int = 0
    wrong_visitor: int = 0
    wrong_source: int = 0
    unknown: int = 0
    exhaustions: int = 0
    taken_over: int = 0
    requests: int = 0
    seconds: float = 0.0
    details: list[LetterVerdict] = field(default_factory=list)

    @property
    def visitor_accuracy(self) -> float:
        """Share of letters credited to the visitor who wrote them (1.0 without letters)."""
        return self.correct_visitor / self.letters if self.letters else 1.0

    @property
    def source_accuracy(self) -> float:
        return self.correct_source / self.letters if self.letters else 1.0


def _source(channel: str, source: str, campaign: str) -> tuple[str, str, str]:
    return channel, source, campaign


def judge(site, vids: list[str | None], truths: list[Truth], letter_ids: list[int], start: datetime) -> Verdicts:
    """Compare each letter's lead with its truth (inside the simulation's
    transaction). `vids`: the visitor id each planned visitor was given."""
    ids_by_vid = dict(Visitor.objects.filter(site=site).values_list("vid", "id"))
    index_by_id = {ids_by_vid[vid]: index for index, vid in enumerate(vids) if vid in ids_by_vid}
    writers = [ids_by_vid[t.vid] for t in truths if t.vid in ids_by_vid]
    sessions = defaultdict(list)
    rows = Session.objects.filter(visitor_id__in=writers).order_by("visitor_id", "started_at", "id")
    for visitor_id, started, channel, source, campaign in rows.values_list(
        "visitor_id", "started_at", "channel", "source", "utm_campaign"
    ):
        sessions[visitor_id].append((started, _source(channel, source, campaign)))
    leads = {
        letter_id: (visitor_id, _source(channel or "", source or "", campaign or ""), kind or "")
        for letter_id, visitor_id, channel, source, campaign, kind in Letter.objects.filter(
            id__in=letter_ids
        ).values_list("id", "lead__visitor_id", "lead__channel", "lead__source", "lead__campaign", "lead__match_kind")
    }
    verdicts = Verdicts(letters=len(truths))
    for truth, letter_id in zip(truths, letter_ids, strict=True):
        visitor_id = ids_by_vid.get(truth.vid)
        own = sessions.get(visitor_id, [])
        shown = start + timedelta(minutes=truth.shown_at)
        position = bisect.bisect_right([s[0] for s in own], shown) - 1
        true_source = own[position][1] if own and position >= 0 else None
        credited_id, credited_source, kind = leads.get(letter_id, (None, None, ""))
        if credited_id is None:
            verdict, source_ok = UNKNOWN, False
            verdicts.unknown += 1
        else:
            verdict = CORRECT if credited_id == visitor_id else WRONG
            source_ok = credited_source == true_source
            if verdict == CORRECT:
                verdicts.correct_visitor += 1
            else:
                verdicts.wrong_visitor += 1
            if not source_ok:
                verdicts.wrong_source += 1
        if source_ok:
            verdicts.correct_source += 1
        verdicts.details.append(
            LetterVerdict(truth.letter, truth.visitor, index_by_id.get(credited_id), verdict, source_ok, kind)
        )
    return verdicts
