"""Step 1, landing: list the landing locations (listing) and read each file's records (formats, readers, feeds,
mail)."""
