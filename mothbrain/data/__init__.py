"""Turning stored documents into training data: cleaning, samples, dedup, concepts, the data set."""
