"""Control sources (signals, control file; cluster and API later) and how they combine."""
