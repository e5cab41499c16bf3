"""What ``test``, ``compare`` and ``report`` compute from predictions: intervals, calibration, paired comparisons."""
