"""Data contract, importers, synthetic community data, validation, and the feature and label builders."""
