"""Pure rules of patchgate: no I/O, no clock. Time always comes in as an argument (event time)."""
