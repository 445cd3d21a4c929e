"""The dream stage and the proposals queue it stages its text in."""
