"""Beside the flow: the setup check (doctor), failure alerts (alerts) and the workbook summary (summary)."""
