"""Shared parts of the DGN-AM Studio dashboard: state, pickers, result cards, run display, formatting.
The dashboard only calls `dgnam_engine`; no model code lives here."""
