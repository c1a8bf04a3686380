"""One module per section of the parity report; each returns a list of report.Row."""
