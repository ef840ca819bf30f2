"""Widgets: charts, gauges, the progress panel and the event log."""
