"""The cache benchmark's printed figures: ratios of wall and search time, fill against raw forward."""

from tune.cli.bench import Arm, report, search_seconds


def test_the_report_divides_the_off_arm_by_the_on_arm_and_counts_the_fill_in_the_search():
    off = Arm("off", 900.0, 1900.0, 0, {"search_seconds": 800.0, "best_val_accuracy": 1.0, "test_accuracy": 0.99})
    on = Arm(
        "on",
        150.0,
        2000.0,
        0,
        {
            "search_seconds": 30.0,
            "activation_fill_seconds": 70.0,
            "activation_fill_images_per_second": 27.0,
            "best_val_accuracy": 1.0,
            "test_accuracy": 0.98,
        },
    )
    assert search_seconds(off) == 800.0 and search_seconds(on) == 100.0
    lines = report("fruits4-4x3", [off, on], {"float32": (30.0, 27.0)}, "val_accuracy")
    assert "speed-up (off / on): 6.00x" in lines
    assert "search speed-up (off / on): 8.00x" in lines
    assert "on: test accuracy 0.9800" in lines and "off: peak RSS 1900 MB" in lines
    assert any(line.startswith("on: cache filling 27.0 images/s") and "(90% and 100%)" in line for line in lines)


def test_an_arm_without_a_recorded_search_time_prints_no_search_ratio():
    failed = Arm("off", 10.0, 500.0, 2, {})
    lines = report("quick", [failed, Arm("on", 5.0, 500.0, 0, {"search_seconds": 1.0})], {}, "val_accuracy")
    assert not any("search" in line for line in lines) and "off: no best trial" in lines


def test_the_report_says_whether_both_arms_drew_the_same_trials():
    draws = [{"head_width": "128", "learning_rate": "0.001"}, {"head_width": "512", "learning_rate": "0.01"}]
    same = report("quick", [Arm("off", 9.0, 1.0, 0, draws=draws), Arm("on", 3.0, 1.0, 0, draws=list(draws))], {}, "x")
    assert "trials drawn: the same 2 in both arms" in same
    other = [draws[0], {**draws[1], "learning_rate": "0.02"}]
    lines = report("quick", [Arm("off", 9.0, 1.0, 0, draws=draws), Arm("on", 3.0, 1.0, 0, draws=other)], {}, "x")
    assert any(line.startswith("trials drawn: not the same") for line in lines)
