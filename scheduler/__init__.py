"""Pure library: offers, job requirements, matching, scoring, bid strategy, capacity, reasons."""
