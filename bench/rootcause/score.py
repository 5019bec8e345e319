"""Scoring diagnoses against the injected faults.

Per component, summed over trials (micro-averaged), with T the truly faulty components:

- strict: the predicted components are every suspect of every diagnosis; a suspect in T is
  a true positive, any other a false positive, a member of T never named a false negative.
  An equivalence class of three with one faulty member scores one hit and two misses.
- lenient: a diagnosis is one prediction; it is right when its class contains a faulty
  component (credited to every faulty member), wrong otherwise; recall is the share of T
  inside right classes.

Ranking (diagnoses in the order the method ranked them, by confidence for ours): top-k is
right when one of the first k diagnoses is right (lenient); trials without faults do not
count. Kind and slice scope: over every (diagnosis, fault) pair where the diagnosis's class
contains one of the fault's components, the share with the fault's kind, and with exactly
the fault's slices. False alarms: healthy epochs with any diagnosis, per 1,000.
The kinds of the diagnoses made on healthy epochs are counted too (`false_alarm_kinds`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from analyzer.rootcause.model import Diagnosis
from bench._common import percentile
from bench.rootcause.faults import Truth


@dataclass
class Tally:
    trials: int = 0
    strict_tp: int = 0
    strict_fp: int = 0
    strict_fn: int = 0
    lenient_right: int = 0
    lenient_wrong: int = 0
    lenient_found: int = 0
    lenient_missed: int = 0
    ranked_trials: int = 0
    top1: int = 0
    top3: int = 0
    kind_pairs: int = 0
    kind_right: int = 0
    slice_right: int = 0
    healthy_trials: int = 0
    healthy_alarms: int = 0
    healthy_alarm_kinds: list[str] = field(default_factory=list)  # every diagnosis made on a healthy epoch
    seconds: list[float] = field(default_factory=list)

    def add(self, truths: list[Truth], diagnoses: list[Diagnosis], seconds: float) -> None:
        self.trials += 1
        self.seconds.append(seconds)
        faulty = set().union(*(t.components for t in truths)) if truths else set()
        named = {s for d in diagnoses for s in d.suspects}
        self.strict_tp += len(named & faulty)
        self.strict_fp += len(named - faulty)
        self.strict_fn += len(faulty - named)
        right = [d for d in diagnoses if faulty.intersection(d.suspects)]
        self.lenient_right += len(right)
        self.lenient_wrong += len(diagnoses) - len(right)
        credited = {s for d in right for s in d.suspects} & faulty
        self.lenient_found += len(credited)
        self.lenient_missed += len(faulty - credited)
        if truths:
            self.ranked_trials += 1
            self.top1 += any(faulty.intersection(d.suspects) for d in diagnoses[:1])
            self.top3 += any(faulty.intersection(d.suspects) for d in diagnoses[:3])
            for truth in truths:
                for d in diagnoses:
                    if truth.components.intersection(d.suspects):
                        self.kind_pairs += 1
                        self.kind_right += d.kind == truth.kind
                        self.slice_right += frozenset(d.slices) == truth.slices
        else:
            self.healthy_trials += 1
            self.healthy_alarms += bool(diagnoses)
            self.healthy_alarm_kinds += [d.kind for d in diagnoses]

    def merge(self, other: Tally) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(other, name)
            if isinstance(value, list):
                getattr(self, name).extend(value)
            else:
                setattr(self, name, getattr(self, name) + value)

    def summary(self) -> dict:
        strict_p = _share(self.strict_tp, self.strict_tp + self.strict_fp)
        strict_r = _share(self.strict_tp, self.strict_tp + self.strict_fn)
        lenient_p = _share(self.lenient_right, self.lenient_right + self.lenient_wrong)
        lenient_r = _share(self.lenient_found, self.lenient_found + self.lenient_missed)
        ordered = self.seconds
        return {
            "trials": self.trials,
            "strict": {"precision": strict_p, "recall": strict_r, "f1": _f1(strict_p, strict_r)},
            "lenient": {"precision": lenient_p, "recall": lenient_r, "f1": _f1(lenient_p, lenient_r)},
            "top1": _share(self.top1, self.ranked_trials),
            "top3": _share(self.top3, self.ranked_trials),
            "kind_accuracy": _share(self.kind_right, self.kind_pairs),
            "slice_accuracy": _share(self.slice_right, self.kind_pairs),
            "healthy_epochs": self.healthy_trials,
            "false_alarms_per_1000_healthy": (
                1000.0 * self.healthy_alarms / self.healthy_trials if self.healthy_trials else None
            ),
            "false_alarm_kinds": dict(sorted(Counter(self.healthy_alarm_kinds).items())),
            "seconds_median": percentile(ordered, 50) if ordered else None,
            "seconds_p95": percentile(ordered, 95) if ordered else None,
        }


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None and recall is None:
        return None
    precision = 1.0 if precision is None else precision  # nothing predicted, nothing wrong
    recall = 1.0 if recall is None else recall  # nothing to find, nothing missed
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0
