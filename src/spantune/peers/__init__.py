"""Peer correctors (not spantune models) behind the same Corrector protocol, for comparison in reports."""
