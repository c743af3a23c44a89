"""Beside the flow, the tools users run: the setup check (doctor) and the workbook summary (summary)."""
