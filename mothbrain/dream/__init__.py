"""The dream stage: the new adapter free-associates on wiki pages and recent material into the proposals queue."""
