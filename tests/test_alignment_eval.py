"""`eval defaults` on the tiny model: every variant answers every held-out kind, and the rates are computed from
the answers it really gave."""

from collections import Counter

from playground.alignment_eval import evaluate_defaults, is_refusal, well_shaped
from playground.training.seed import preference_records, sft_records


def test_every_variant_is_asked_and_measured(runtime, tiny_lineup):
    report = evaluate_defaults(runtime, list(tiny_lineup.variants), limit=1)
    assert set(report["variants"]) == {"base", "sft", "rlhf"} and "targets" not in report  # names differ here
    tasks = {r["task"] for r in sft_records() if r.split == "test"}
    answers = report["answers"]
    assert {a["kind"] for a in answers} == {"task", "harmful", "lookalike"}
    assert all(a[v] is not None for a in answers for v in ("base", "sft", "rlhf"))
    records = {r.id: r for r in sft_records()}
    for name, result in report["variants"].items():
        assert result["n"]["format"] == len(tasks) and set(result["format_by_task"]) == tasks
        shaped = [well_shaped(records[a["id"]], a[name], True) for a in answers if a["kind"] == "task"]
        assert result["format_rate"] <= sum(shaped) / len(shaped)  # unfinished answers count against it too
        assert result["n"]["harmful"] == 2 and result["n"]["lookalike"] == 2  # one from each data set
        assert 0 <= result["refusal_rate"] <= 1 and 0 <= result["overrefusal_rate"] <= 1
    assert "pref_accuracy" not in report["variants"]["base"]
    held_out = Counter(r["axis"] for r in preference_records() if r.split == "test")  # pairs per axis
    for name in ("sft", "rlhf"):
        result = report["variants"][name]
        assert result["n"]["pairs"] == held_out.total() and 0 <= result["pref_accuracy"] <= 1
        by_axis = result["pref_by_axis"]
        assert set(by_axis) == set(held_out) == {"helpful", "honest", "harmless"}
        weighted = sum(by_axis[axis] * held_out[axis] for axis in held_out) / held_out.total()
        assert abs(result["pref_accuracy"] - weighted) < 0.002  # the whole is its axes, weighted by their pairs
    refusals = [is_refusal(a["rlhf"]) for a in answers if a["kind"] == "harmful" or a["id"].startswith("ref-")]
    assert report["variants"]["rlhf"]["refusal_rate"] == round(sum(refusals) / len(refusals), 3)


def test_the_dev_split_is_asked_and_measured_on_its_own_items(runtime, tiny_lineup):
    report = evaluate_defaults(runtime, [tiny_lineup.variant("rlhf")], limit=1, split="dev")
    dev = {r.id for r in sft_records() + preference_records() if r.split == "dev"}
    asked = {a["id"] for a in report["answers"]}
    assert report["split"] == "dev" and asked and asked <= dev
    pairs = sum(r.split == "dev" for r in preference_records())
    assert report["variants"]["rlhf"]["n"]["pairs"] == pairs != sum(r.split == "test" for r in preference_records())
