"""The service's online store: what it holds of members between snapshot builds, and nothing else does.

- `table.py`: the latest snapshot's rows, laid out once beside it as memory-mapped arrays, and the folding of new
  events into a row by the feature schema's online rules.
- `records.py`: a fresh record per member with events since the snapshot (row, new item interactions, the keys
  of the events folded in), its shape and how new events merge into it, kept in the process or in Redis.
- `store.py`: the store as the service uses it: events posted (checked by the data contract, made durable in
  the dataset's journal, folded), followed from other workers, replayed at start, and members' current rows.

The journal itself is the dataset's (features/dataset/events.py): `data ingest`, `features build` and `privacy forget`
read it too.
"""
