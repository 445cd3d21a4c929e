"""Infrastructure every stage shares: paths, atomic files and time, the ledger."""
