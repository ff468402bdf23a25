"""Results: the judged-answer schema and its one loader, blind labels, and the statistics every report uses."""
