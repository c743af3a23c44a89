"""Step 6, publishing: the sheet's tabs and rows (export), the local workbook and the Google Sheets client (sheets)."""
