"""The tables of a dataset: their contract, checks, importers, storage, journal, campaigns' exposures and privacy."""
