"""The data and what is built from it, in three packages, each importing only those before it:

- `features.common`: the floor every package stands on: the state home (home.py), errors users can fix
  (errors.py), progress lines (progress.py), the settings read from the environment (settings.py), typed YAML
  configs (config.py), stated samples (sampling.py) and what every command group shares (cli_kit.py);
- `features.dataset`: the tables of a dataset: the contract and its checks (contract.py, validation.py), readers
  and importers (readers.py, importers.py, online_retail.py), the tables on disk (store.py), the synthetic
  community (synthetic.py), events posted to the service (events.py), campaigns' exposures (campaigns.py), keyed
  pseudonyms and a member's export and deletion (pseudonyms.py, privacy.py), a dataset at a glance (describe.py),
  and the `data` and `privacy` commands;
- `features.pipelines`: the features built from those tables: the declared schema (schema.py), point-in-time
  expressions (point_in_time.py), the item sources and their interaction matrices (interactions.py), campaign
  outcomes (outcomes.py), snapshots on disk (snapshots.py), on DuckDB or Spark (engines.py), and the `features`
  commands.
"""
