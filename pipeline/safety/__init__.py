"""Site safety: detections, the hard-hat rule, zones, worker status over time, and alerts."""
