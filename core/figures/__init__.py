"""Plotly figures and the offline report, from finished numbers."""
