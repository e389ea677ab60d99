"""Parsers turn one line (or one header block) of a real log format into canonical MessageTrace events."""
