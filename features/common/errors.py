"""Errors a user can cause, with messages that say what is wrong and what to do."""


class DataError(Exception):
    """Input that cannot be used at all (unreadable file, missing column, unknown dataset).

    The CLI prints the message and exits with code 2; rows that are merely broken are quarantined instead.
    """
