"""Serving: the model runtime (serving/models: kinds, families, the registry and champions, tiers, batch
inference), the online store (serving/online: the snapshot's rows, members' fresh records, events folded in),
the BentoML service (service.py) over the serving state and its plain request functions (state.py), member
scoring per request (members.py), request coalescing, the prediction log, campaign plans (campaigns.py and
`campaign plan`: campaign_cli.py) and the Bento build."""
