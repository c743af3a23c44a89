"""Step 2, items: records -> the day's items, with duplicates and quarantined records kept apart (parse, dedupe)."""
