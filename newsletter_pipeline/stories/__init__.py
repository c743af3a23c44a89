"""Step 5, stories: a day's clusters matched to the stories of earlier days (tracking)."""
