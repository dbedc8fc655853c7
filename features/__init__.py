"""The data: what a dataset is and how its features are built, for every other package to read.

- The contract and its checks: contract.py, validation.py, readers.py, importers.py (and online_retail.py), the
  tables on disk (store.py), a dataset at a glance (describe.py).
- Data made here: the synthetic community (synthetic.py); events posted to the service, checked by the contract
  and kept in the dataset's journal until ingested (events.py); campaigns' exposures, their keyed split and each
  exposed member's outcomes (campaigns.py); keyed pseudonyms (pseudonyms.py); a member's export and deletion
  (privacy.py).
- Features and labels: the declared schema (schema.py), point-in-time expressions (point_in_time.py,
  interactions.py), snapshots on disk (snapshots.py), on DuckDB or Spark (engines.py).
- Shared plumbing: the state home (home.py), typed configs (config.py), errors users can fix (errors.py),
  progress lines (progress.py), and what every command group shares (cli_kit.py); the `data`, `features` and
  `privacy` commands (cli.py, features_cli.py, privacy_cli.py).
"""
